"""StochasticWeightAveraging: average the weights of the last epochs, as Lightning's callback does.

From epoch ``swa_start`` on, the optimizer's scheduler is swapped for torch's ``SWALR`` (annealing
to ``swa_lrs``) and, at each epoch start, a copy of the module takes the running average of
its weights. At the end the averages go into the module. A model with BatchNorm gets one more
epoch (``max_epochs + 1``, visible as Lightning shows it) that runs the training steps with no
backward and no weight change, only to recompute the running statistics for the averaged
weights (what ``torch.optim.swa_utils.update_bn`` does, through the user's own
``training_step``). The averaged copy, its count and SWALR's state are in checkpoints, so a
resumed run continues the same average.

The training loop knows nothing of SWA: the callback uses the Trainer's public settings
(``max_epochs``, ``accumulate_grad_batches``, ``lr_scheduler_configs``) and
``optimization.skip_backward`` (Lightning's ``fit_loop._skip_backward``).
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import SWALR

from fulmen.core.callback import Callback
from fulmen.errors import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer

_AVG_FN = Callable[[Tensor, Tensor, Tensor], Tensor]


def _check_arguments(swa_lrs: Any, swa_epoch_start: Any, avg_fn: Any, device: Any) -> None:
    """Lightning's checks and words, each with a HINT."""
    if (isinstance(swa_epoch_start, int) and swa_epoch_start < 1) or (
        isinstance(swa_epoch_start, float) and not 0 <= swa_epoch_start <= 1
    ):
        raise MisconfigurationException(
            "swa_epoch_start should be a >0 integer or a float between 0 and 1."
            f"\nHINT: got {swa_epoch_start!r}; an int is the 1-based epoch SWA starts at, a float the fraction "
            "of max_epochs."
        )
    wrong_type = not isinstance(swa_lrs, (float, list))
    wrong_float = isinstance(swa_lrs, float) and swa_lrs <= 0
    wrong_list = isinstance(swa_lrs, list) and not all(isinstance(lr, float) and lr > 0 for lr in swa_lrs)
    if wrong_type or wrong_float or wrong_list:
        raise MisconfigurationException(
            "The `swa_lrs` should a positive float, or a list of positive floats"
            f"\nHINT: got {swa_lrs!r}; write e.g. swa_lrs=0.05 (an int such as 1 is refused: write 1.0)."
        )
    if avg_fn is not None and not callable(avg_fn):
        raise MisconfigurationException("The `avg_fn` should be callable.")
    if device is not None and not isinstance(device, (torch.device, str)):
        raise MisconfigurationException(f"device is expected to be a torch.device or a str. Found {device}")


class StochasticWeightAveraging(Callback):
    """Stochastic Weight Averaging (Izmailov et al., 2018) on ``torch.optim.swa_utils``.

    ``swa_lrs``: the SWA learning rate, one float for every param group or a list per group.
    ``swa_epoch_start``: int, the (1-based) epoch SWA starts at; float, that fraction of ``max_epochs``.
    ``annealing_epochs`` / ``annealing_strategy``: how SWALR anneals to ``swa_lrs`` ("cos" or "linear").
    ``avg_fn``: ``avg_fn(averaged, current, n_averaged)``; default: the equal-weight running mean.
    ``device``: where the averaged copy lives (default CPU; None: the module's device).
    Supports one optimizer and at most one scheduler, like Lightning.
    """

    def __init__(
        self,
        swa_lrs: float | list[float],
        swa_epoch_start: int | float = 0.8,
        annealing_epochs: int = 10,
        annealing_strategy: Literal["cos", "linear"] = "cos",
        avg_fn: _AVG_FN | None = None,
        device: torch.device | str | None = torch.device("cpu"),  # noqa: B008 (Lightning's default)
    ) -> None:
        _check_arguments(swa_lrs, swa_epoch_start, avg_fn, device)
        self.n_averaged: Tensor | None = None
        self._swa_epoch_start = swa_epoch_start
        self._swa_lrs = swa_lrs
        self._annealing_epochs = annealing_epochs
        self._annealing_strategy = annealing_strategy
        self._avg_fn = avg_fn or self.avg_fn
        self._device = device
        self._model_contains_batch_norm: bool | None = None
        self._average_model: LightningModule | None = None
        self._initialized = False
        self._swa_scheduler: Any = None
        self._scheduler_state: dict | None = None
        self._init_n_averaged = 0
        self._latest_update_epoch = -1
        self._accumulate_grad_batches = 1
        self.momenta: dict[nn.modules.batchnorm._BatchNorm, float | None] = {}
        self._max_epochs: int = -1

    @classmethod
    def at_optimizer_lrs(cls) -> StochasticWeightAveraging:
        """Lightning 1.x's ``Trainer(stochastic_weight_avg=True)``: SWA with the defaults, its
        learning rates those the optimizer's param groups have when SWA starts (``swa_lrs=None``
        then; Lightning 2 requires them)."""
        callback = cls(swa_lrs=1.0)
        callback._swa_lrs = None  # type: ignore[assignment]
        return callback

    @property
    def swa_start(self) -> int:
        """The first SWA epoch, 0-based (known from ``on_fit_start``)."""
        assert isinstance(self._swa_epoch_start, int)
        return max(self._swa_epoch_start - 1, 0)

    @property
    def swa_end(self) -> int:
        """The last SWA epoch, 0-based (``inf`` without an epoch limit)."""
        if self._max_epochs == -1:
            return float("inf")  # type: ignore[return-value]
        return self._max_epochs - 1

    @staticmethod
    def pl_module_contains_batch_norm(pl_module: LightningModule) -> bool:
        """Whether the module has BatchNorm layers (they get the statistics epoch)."""
        return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in pl_module.modules())

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._average_model = deepcopy(pl_module)  # before the module moves to its device

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise MisconfigurationException(
                "SWA currently works with 1 `optimizer`.\nHINT: configure_optimizers returned "
                f"{len(trainer.optimizers)}; average with a callback of your own when several optimizers train."
            )
        if len(trainer.lr_scheduler_configs) > 1:
            raise MisconfigurationException("SWA currently not supported for more than 1 `lr_scheduler`.")
        max_epochs = trainer.max_epochs
        assert max_epochs is not None
        if isinstance(self._swa_epoch_start, float):
            if max_epochs == -1:
                raise MisconfigurationException(
                    "SWA with `swa_epoch_start` as a float is not supported when `max_epochs=-1`. "
                    "Please provide `swa_epoch_start` as an integer."
                )
            self._swa_epoch_start = int(max_epochs * self._swa_epoch_start)
        self._model_contains_batch_norm = self.pl_module_contains_batch_norm(pl_module)
        self._max_epochs = max_epochs
        if self._model_contains_batch_norm and max_epochs != -1:
            trainer.max_epochs = max_epochs + 1  # the statistics epoch
        if self._scheduler_state is not None:
            # resuming an SWA phase: SWALR takes the user's scheduler's place now, so that the
            # checkpoint's scheduler state (SWALR's) is loaded into it by the restore that follows
            self._initialize(trainer, pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch
        if not self._initialized and self.swa_start <= epoch <= self.swa_end:
            self._initialize(trainer, pl_module)
            if epoch != self.swa_start:
                rank_zero_warn(
                    "SWA is initializing after swa_start without any checkpoint data. "
                    "This may be caused by loading a checkpoint from an older version of PyTorch Lightning."
                )
        if self.swa_start <= epoch <= self.swa_end and epoch > self._latest_update_epoch:
            assert self.n_averaged is not None and self._average_model is not None
            self.update_parameters(self._average_model, pl_module, self.n_averaged, self._avg_fn)
            self._latest_update_epoch = epoch
        if self._max_epochs != -1 and epoch == self.swa_end + 1:
            self._start_batch_norm_epoch(trainer, pl_module)

    def _initialize(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Move the averaged copy to its device and swap the scheduler for SWALR."""
        self._initialized = True
        assert self._average_model is not None
        self._average_model = self._average_model.to(self._device or pl_module.device)
        optimizer = trainer.optimizers[0]
        if self._swa_lrs is None:  # at_optimizer_lrs
            self._swa_lrs = [group["lr"] for group in optimizer.param_groups]
        if isinstance(self._swa_lrs, float):
            self._swa_lrs = [self._swa_lrs] * len(optimizer.param_groups)
        for lr, group in zip(self._swa_lrs, optimizer.param_groups):
            group["initial_lr"] = lr
        self._swa_scheduler = SWALR(
            optimizer,
            swa_lr=self._swa_lrs,  # type: ignore[arg-type]
            anneal_epochs=self._annealing_epochs,
            anneal_strategy=self._annealing_strategy,
            last_epoch=trainer.max_epochs if self._annealing_strategy == "cos" else -1,
        )
        if self._scheduler_state is not None:
            self._swa_scheduler.load_state_dict(self._scheduler_state)
        self._install_scheduler(trainer)
        if self.n_averaged is None:
            self.n_averaged = torch.tensor(self._init_n_averaged, dtype=torch.long, device=pl_module.device)

    def _install_scheduler(self, trainer: Trainer) -> None:
        from fulmen.runtime.optim import LRSchedulerConfig  # the Trainer's scheduler entries (Lightning's type)

        swa_config = LRSchedulerConfig(self._swa_scheduler)
        configs = trainer.lr_scheduler_configs
        if configs:
            current = configs[0]
            if current.interval != "epoch" or current.frequency != 1:
                rank_zero_warn(f"SWA is currently only supported every epoch. Found {current}")
            rank_zero_info(f"Swapping scheduler `{type(current.scheduler).__name__}` for `{type(self._swa_scheduler).__name__}`")
            configs[0] = swa_config
        else:
            configs.append(swa_config)

    def _start_batch_norm_epoch(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The averaged weights into the module; an epoch of forward passes recomputes BatchNorm's
        statistics (momentum None: a plain mean over the epoch's batches)."""
        assert self._average_model is not None
        self.transfer_weights(self._average_model, pl_module)
        self.reset_batch_norm_and_save_state(pl_module)
        trainer.optimization.skip_backward = True
        self._accumulate_grad_batches = trainer.accumulate_grad_batches
        batches = trainer.num_training_batches
        if not isinstance(batches, int):
            raise MisconfigurationException(
                "StochasticWeightAveraging's BatchNorm epoch needs a train loader with a length (got "
                f"{batches} batches).\nHINT: give the dataset a __len__, or set limit_train_batches to an int."
            )
        trainer.accumulate_grad_batches = batches + 1  # no optimizer step before the epoch's last batch

    def on_train_epoch_end(self, trainer: Trainer, *args: Any) -> None:
        trainer.optimization.skip_backward = False

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # the epoch counter has moved past the last epoch when this runs
        last = trainer.current_epoch - 1
        if self._model_contains_batch_norm and self._max_epochs != -1 and last == self.swa_end + 1:
            trainer.accumulate_grad_batches = self._accumulate_grad_batches
            trainer.max_epochs -= 1
            self.reset_momenta()
        elif last == self.swa_end or self._max_epochs == -1:
            if self._average_model is not None:
                self.transfer_weights(self._average_model, pl_module)

    @staticmethod
    def transfer_weights(src_pl_module: LightningModule, dst_pl_module: LightningModule) -> None:
        """Copy the parameters of ``src_pl_module`` into ``dst_pl_module`` (in place, across devices)."""
        for src_param, dst_param in zip(src_pl_module.parameters(), dst_pl_module.parameters()):
            dst_param.detach().copy_(src_param.to(dst_param.device))

    def reset_batch_norm_and_save_state(self, pl_module: LightningModule) -> None:
        """Zero BatchNorm's running statistics and make them a cumulative mean (as ``update_bn``)."""
        self.momenta = {}
        for module in pl_module.modules():
            if not isinstance(module, nn.modules.batchnorm._BatchNorm):
                continue
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean = torch.zeros_like(module.running_mean, device=pl_module.device)
            module.running_var = torch.ones_like(module.running_var, device=pl_module.device)
            self.momenta[module] = module.momentum
            module.momentum = None  # type: ignore[assignment]
            assert module.num_batches_tracked is not None
            module.num_batches_tracked *= 0

    def reset_momenta(self) -> None:
        """Give BatchNorm layers back the momentum they had before the statistics epoch."""
        for bn_module, momentum in self.momenta.items():
            bn_module.momentum = momentum  # type: ignore[assignment]

    @staticmethod
    def update_parameters(average_model: LightningModule, model: LightningModule, n_averaged: Tensor,
                          avg_fn: _AVG_FN) -> None:  # fmt: skip
        """Fold ``model``'s parameters into ``average_model`` (the first call copies them)."""
        for p_swa, p_model in zip(average_model.parameters(), model.parameters()):
            device = p_swa.device
            p_swa_ = p_swa.detach()
            p_model_ = p_model.detach().to(device)
            src = p_model_ if n_averaged == 0 else avg_fn(p_swa_, p_model_, n_averaged.to(device))
            p_swa_.copy_(src)
        n_averaged += 1

    @staticmethod
    def avg_fn(averaged_model_parameter: Tensor, model_parameter: Tensor, num_averaged: Tensor) -> Tensor:
        """The equal-weight running mean."""
        return averaged_model_parameter + (model_parameter - averaged_model_parameter) / (num_averaged + 1)

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_averaged": 0 if self.n_averaged is None else self.n_averaged.item(),
            "latest_update_epoch": self._latest_update_epoch,
            "scheduler_state": None if self._swa_scheduler is None else self._swa_scheduler.state_dict(),
            "average_model_state": None if self._average_model is None else self._average_model.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._init_n_averaged = state_dict["n_averaged"]
        self._latest_update_epoch = state_dict["latest_update_epoch"]
        self._scheduler_state = state_dict["scheduler_state"]
        if self._average_model is not None:
            self._average_model.load_state_dict(state_dict["average_model_state"])
