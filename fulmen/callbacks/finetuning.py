"""BaseFinetuning / BackboneFinetuning: freeze parts of a model, unfreeze them later with their own lr.

Lightning's callbacks (``pl.callbacks.BaseFinetuning``, ``pl.callbacks.BackboneFinetuning``).
``freeze_before_training`` runs in ``setup`` (before ``configure_optimizers``, so the optimizer
can filter on ``requires_grad``); ``finetune_function`` runs at every training epoch start and
may add param groups. The groups an optimizer gained are kept in the callback's state by
parameter *name*, so a resumed run rebuilds them in ``on_fit_start``, before the optimizer's
saved state (which has those groups) is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import Module, ModuleDict
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from fulmen.core.callback import Callback
from fulmen.errors import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer

log = logging.getLogger(__name__)
Modules = Module | Iterable[Module | Iterable]


def multiplicative(epoch: int) -> float:
    """BackboneFinetuning's default ``lambda_func``: the backbone lr doubles every epoch."""
    return 2.0


class BaseFinetuning(Callback):
    """Base of finetuning callbacks: override ``freeze_before_training`` and ``finetune_function``.

    The optimizer should take only trainable parameters
    (``Adam(filter(lambda p: p.requires_grad, self.parameters()))``); ``unfreeze_and_add_param_group``
    then adds the unfrozen ones as a new param group.
    """

    def __init__(self) -> None:
        self._internal_optimizer_metadata: dict[int, list[dict[str, Any]]] = {}
        self._restarting = False

    def state_dict(self) -> dict[str, Any]:
        return {"internal_optimizer_metadata": self._internal_optimizer_metadata}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restarting = True
        if "internal_optimizer_metadata" in state_dict:
            self._internal_optimizer_metadata = state_dict["internal_optimizer_metadata"]
        else:  # files of older Lightning versions hold the metadata itself
            self._internal_optimizer_metadata = state_dict

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._restarting:
            return
        if self._internal_optimizer_metadata:
            named_parameters = dict(pl_module.named_parameters())
            for opt_idx, optimizer in enumerate(trainer.optimizers):
                if opt_idx in self._internal_optimizer_metadata:
                    configured = len(optimizer.param_groups)
                    optimizer.param_groups = self._apply_mapping_to_param_groups(
                        self._internal_optimizer_metadata[opt_idx], named_parameters
                    )
                    self._unfreeze_added_groups(pl_module, optimizer.param_groups[configured:])
        self._restarting = False

    def _unfreeze_added_groups(self, pl_module: LightningModule, groups: list[dict[str, Any]]) -> None:
        """The groups this callback added before the checkpoint train again after a resume.

        Deliberately unlike Lightning 2.6, which rebuilds the groups but leaves their parameters
        as ``freeze_before_training`` left them (``requires_grad=False``): a resumed run would
        silently stop training them, and fulmen's resume must continue the run exactly.
        """
        added = {id(param) for group in groups for param in group["params"]}
        for module in self.flatten_modules(pl_module):
            own = list(module.parameters(recurse=False))
            if any(id(param) in added for param in own):
                if isinstance(module, _BatchNorm):
                    module.track_running_stats = True
                for param in own:
                    if id(param) in added:
                        param.requires_grad = True

    @staticmethod
    def flatten_modules(modules: Modules) -> list[Module]:
        """The leaf modules of ``modules`` plus the parents that hold parameters themselves."""
        if isinstance(modules, ModuleDict):
            modules = modules.values()
        if isinstance(modules, Iterable):
            flat: list[Module] = []
            for module in modules:
                flat.extend(BaseFinetuning.flatten_modules(module))
            candidates: Iterable[Module] = flat
        else:
            candidates = modules.modules()
        return [m for m in candidates if not list(m.children()) or m._parameters]

    @staticmethod
    def filter_params(modules: Modules, train_bn: bool = True, requires_grad: bool = True) -> Generator:
        """The parameters of ``modules`` whose ``requires_grad`` is ``requires_grad`` (BatchNorm's
        skipped unless ``train_bn``)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and not train_bn:
                continue
            for param in module.parameters(recurse=False):
                if param.requires_grad == requires_grad:
                    yield param

    @staticmethod
    def make_trainable(modules: Modules) -> None:
        """Unfreeze the parameters of ``modules`` (BatchNorm tracks running stats again)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm):
                module.track_running_stats = True
            for param in module.parameters(recurse=False):
                param.requires_grad = True

    @staticmethod
    def freeze_module(module: Module) -> None:
        """Freeze ``module``'s own parameters (a BatchNorm also stops tracking running stats)."""
        if isinstance(module, _BatchNorm):
            module.track_running_stats = False
        for param in module.parameters(recurse=False):
            param.requires_grad = False

    @staticmethod
    def freeze(modules: Modules, train_bn: bool = True) -> None:
        """Freeze ``modules``; with ``train_bn`` their BatchNorm layers stay trainable."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and train_bn:
                BaseFinetuning.make_trainable(module)
            else:
                BaseFinetuning.freeze_module(module)

    @staticmethod
    def filter_on_optimizer(optimizer: Optimizer, params: Iterable) -> list:
        """``params`` without those already in one of ``optimizer``'s groups (warning if there were any)."""
        out_params, removed = [], []
        for param in params:
            if not any(torch.equal(p, param) for group in optimizer.param_groups for p in group["params"]):
                out_params.append(param)
            else:
                removed.append(param)
        if removed:
            rank_zero_warn(
                "The provided params to be frozen already exist within another group of this optimizer."
                " Those parameters will be skipped.\n"
                "HINT: Did you init your optimizer in `configure_optimizer` as such:\n"
                f" {type(optimizer)}(filter(lambda p: p.requires_grad, self.parameters()), ...) ",
            )
        return out_params

    @staticmethod
    def unfreeze_and_add_param_group(
        modules: Modules,
        optimizer: Optimizer,
        lr: float | None = None,
        initial_denom_lr: float = 10.0,
        train_bn: bool = True,
    ) -> None:
        """Unfreeze ``modules`` and add their parameters to ``optimizer`` as a new group, with ``lr``
        (default: the first group's lr / ``initial_denom_lr``)."""
        BaseFinetuning.make_trainable(modules)
        params_lr = optimizer.param_groups[0]["lr"] if lr is None else float(lr)
        denom_lr = initial_denom_lr if lr is None else 1.0
        params = BaseFinetuning.filter_params(modules, train_bn=train_bn, requires_grad=True)
        params = BaseFinetuning.filter_on_optimizer(optimizer, params)
        if params:
            optimizer.add_param_group({"params": params, "lr": params_lr / denom_lr})

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.freeze_before_training(pl_module)

    @staticmethod
    def _apply_mapping_to_param_groups(param_groups: list[dict[str, Any]], mapping: dict) -> list[dict[str, Any]]:
        output = []
        for group in param_groups:
            group_state = {k: v for k, v in group.items() if k != "params"}
            group_state["params"] = [mapping[p] for p in group["params"]]
            output.append(group_state)
        return output

    def _store(self, pl_module: LightningModule, opt_idx: int, num_param_groups: int,
               current_param_groups: list[dict[str, Any]]) -> None:  # fmt: skip
        mapping = {p: n for n, p in pl_module.named_parameters()}
        if opt_idx not in self._internal_optimizer_metadata:
            self._internal_optimizer_metadata[opt_idx] = self._apply_mapping_to_param_groups(
                current_param_groups, mapping
            )
        elif num_param_groups != len(current_param_groups):
            self._internal_optimizer_metadata[opt_idx].extend(
                self._apply_mapping_to_param_groups(current_param_groups[num_param_groups:], mapping)
            )

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for opt_idx, optimizer in enumerate(trainer.optimizers):
            num_param_groups = len(optimizer.param_groups)
            self.finetune_function(pl_module, trainer.current_epoch, optimizer)
            self._store(pl_module, opt_idx, num_param_groups, optimizer.param_groups)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        """Override: unfreeze what should train from ``epoch`` on (called at every epoch start)."""
        raise NotImplementedError(
            f"{type(self).__name__} must override finetune_function(pl_module, epoch, optimizer): it unfreezes "
            "what trains from `epoch` on (e.g. self.unfreeze_and_add_param_group(pl_module.backbone, optimizer))."
        )

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        """Override: freeze what should not train at first (called in ``setup``)."""
        raise NotImplementedError(
            f"{type(self).__name__} must override freeze_before_training(pl_module): it freezes what should not "
            "train at first (e.g. self.freeze(pl_module.backbone))."
        )


class BackboneFinetuning(BaseFinetuning):
    """Train ``pl_module.backbone`` from ``unfreeze_backbone_at_epoch`` on, its lr growing by
    ``lambda_func(epoch + 1)`` per epoch (capped at the model's lr when ``should_align``)."""

    def __init__(
        self,
        unfreeze_backbone_at_epoch: int = 10,
        lambda_func: Callable = multiplicative,
        backbone_initial_ratio_lr: float = 10e-2,
        backbone_initial_lr: float | None = None,
        should_align: bool = True,
        initial_denom_lr: float = 10.0,
        train_bn: bool = True,
        verbose: bool = False,
        rounding: int = 12,
    ) -> None:
        super().__init__()
        self.unfreeze_backbone_at_epoch = unfreeze_backbone_at_epoch
        self.lambda_func = lambda_func
        self.backbone_initial_ratio_lr = backbone_initial_ratio_lr
        self.backbone_initial_lr = backbone_initial_lr
        self.should_align = should_align
        self.initial_denom_lr = initial_denom_lr
        self.train_bn = train_bn
        self.verbose = verbose
        self.rounding = rounding
        self.previous_backbone_lr: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "internal_optimizer_metadata": self._internal_optimizer_metadata,
            "previous_backbone_lr": self.previous_backbone_lr,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.previous_backbone_lr = state_dict["previous_backbone_lr"]
        super().load_state_dict(state_dict)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not (hasattr(pl_module, "backbone") and isinstance(pl_module.backbone, Module)):
            raise MisconfigurationException(
                "The LightningModule should have a nn.Module `backbone` attribute\n"
                f"HINT: {type(pl_module).__name__}.backbone is not an nn.Module; assign the part to finetune to "
                "`self.backbone` in __init__, or subclass BaseFinetuning to name other modules."
            )
        if self._restarting and self.previous_backbone_lr is not None:
            self.make_trainable(pl_module.backbone)  # unfrozen before the checkpoint: as unfreezing left it
        super().on_fit_start(trainer, pl_module)

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        self.freeze(pl_module.backbone)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        if epoch == self.unfreeze_backbone_at_epoch:
            current_lr = optimizer.param_groups[0]["lr"]
            initial_backbone_lr = (
                self.backbone_initial_lr
                if self.backbone_initial_lr is not None
                else current_lr * self.backbone_initial_ratio_lr
            )
            self.previous_backbone_lr = initial_backbone_lr
            self.unfreeze_and_add_param_group(
                pl_module.backbone, optimizer, initial_backbone_lr,
                train_bn=self.train_bn, initial_denom_lr=self.initial_denom_lr,
            )  # fmt: skip
            self._report(current_lr, initial_backbone_lr)
        elif epoch > self.unfreeze_backbone_at_epoch:
            assert self.previous_backbone_lr is not None
            current_lr = optimizer.param_groups[0]["lr"]
            next_lr = self.lambda_func(epoch + 1) * self.previous_backbone_lr
            next_lr = current_lr if (self.should_align and next_lr > current_lr) else next_lr
            optimizer.param_groups[-1]["lr"] = next_lr
            self.previous_backbone_lr = next_lr
            self._report(current_lr, next_lr)

    def _report(self, current_lr: float, backbone_lr: float) -> None:
        if self.verbose:
            log.info(f"Current lr: {round(current_lr, self.rounding)}, Backbone lr: {round(backbone_lr, self.rounding)}")
