"""LightningModule: an ``nn.Module`` that carries its own training recipe.

Users override ``training_step``, ``configure_optimizers`` and whichever hooks they need
(see ``fulmen.core.callback`` for the order). The Trainer attaches itself as ``self.trainer``
for the duration of a run; everything here that talks to the run (``log``, ``optimizers``,
``manual_backward``) goes through it.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from fulmen.core.hooks import ModuleHooks
from fulmen.core.hparams import HyperparametersMixin
from fulmen.core.metrics import collection_items, is_metric, is_metric_collection, metric_attributes
from fulmen.errors import MisconfigurationException

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer


class LightningModule(ModuleHooks, HyperparametersMixin, nn.Module):
    """Lightning's LightningModule API on top of ``torch.nn.Module``."""

    # properties torch.jit.script must not compile (they reach the Trainer)
    __jit_unused_properties__: list[str] = [
        "trainer", "automatic_optimization", "example_input_array", "current_epoch", "global_step",
        "global_rank", "local_rank", "device", "dtype", "on_gpu", "logger", "loggers", "hparams",
        "hparams_initial", "experiment",
    ]  # fmt: skip
    strict_loading: bool = True  # load_state_dict(strict=...) when the Trainer restores a checkpoint into it
    _compiler_ctx: dict[str, Any] | None = None  # trainer.fit(torch.compile(m)): see fulmen.runtime.compiled

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer: Trainer | None = None
        self._automatic_optimization = True
        self._example_input_array: Any = None
        self._device_hint = torch.device("cpu")
        self._jit_is_scripting = False  # torch.jit.script reads every property; the trainer's must not raise

    # ---- the run this module is attached to -------------------------------------------
    @property
    def trainer(self) -> Trainer:  # type: ignore[return]
        if self._trainer is None and not self._jit_is_scripting:
            raise RuntimeError(
                f"{self.__class__.__name__} is not attached to a Trainer.\n"
                "HINT: call this from inside a hook while trainer.fit/validate/test/predict runs."
            )
        return self._trainer

    @trainer.setter
    def trainer(self, trainer: Trainer | None) -> None:
        self._trainer = trainer

    @property
    def automatic_optimization(self) -> bool:
        return self._automatic_optimization

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = value

    @property
    def example_input_array(self) -> Any:
        return self._example_input_array

    @example_input_array.setter
    def example_input_array(self, value: Any) -> None:
        self._example_input_array = value

    @property
    def current_epoch(self) -> int:
        return self._trainer.current_epoch if self._trainer is not None else 0

    @property
    def global_step(self) -> int:
        return self._trainer.global_step if self._trainer is not None else 0

    @property
    def global_rank(self) -> int:
        return self._trainer.global_rank if self._trainer is not None else 0

    @property
    def local_rank(self) -> int:
        return self._trainer.local_rank if self._trainer is not None else 0

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return self._device_hint

    @property
    def dtype(self) -> torch.dtype:
        for tensor in self.parameters():
            return tensor.dtype
        return torch.get_default_dtype()

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def logger(self) -> Any:
        return self._trainer.logger if self._trainer is not None else None

    @property
    def loggers(self) -> list[Any]:
        return self._trainer.loggers if self._trainer is not None else []

    @property
    def experiment(self) -> Any:
        """0.x spelling of ``self.logger.experiment`` (the ``SummaryWriter`` of a TensorBoard or test_tube
        logger); None without a logger. A value the module assigns itself wins."""
        if "_user_experiment" in self.__dict__:
            return self.__dict__["_user_experiment"]
        logger = self.logger
        return logger.experiment if logger is not None else None

    @experiment.setter
    def experiment(self, value: Any) -> None:
        self.__dict__["_user_experiment"] = value

    # ---- steps users write ------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return super().forward(*args, **kwargs)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        raise MisconfigurationException(
            f"{self.__class__.__name__} does not define training_step, so there is nothing to train.\n"
            "HINT: add `def training_step(self, batch, batch_idx): ... return loss`."
        )

    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        """Default prediction: ``self(batch)``."""
        batch = kwargs.get("batch", args[0] if args else None)
        return self(batch)

    def configure_optimizers(self) -> Any:
        raise MisconfigurationException(
            f"{self.__class__.__name__} does not define configure_optimizers; training needs an optimizer.\n"
            "HINT: add `def configure_optimizers(self): return torch.optim.Adam(self.parameters(), lr=1e-3)`."
        )

    # ---- logging --------------------------------------------------------------------
    def log(
        self,
        name: str,
        value: Any,
        prog_bar: bool = False,
        logger: bool | None = None,
        on_step: bool | None = None,
        on_epoch: bool | None = None,
        reduce_fx: str | Any = "mean",
        enable_graph: bool = False,
        sync_dist: bool = False,
        sync_dist_group: Any = None,
        add_dataloader_idx: bool = True,
        batch_size: int | None = None,
        metric_attribute: str | None = None,
        rank_zero_only: bool = False,
    ) -> None:
        """Record a scalar; reduction and routing follow Lightning (see ``fulmen.runtime.results``)."""
        trainer = self._trainer
        if trainer is not None and trainer.barebones:  # Lightning: warned and dropped
            warnings.warn(
                "You are trying to `self.log()` but `Trainer(barebones=True)` is configured. Logging can impact "
                "raw speed so it is disabled under this setting.",
                stacklevel=2,
            )
            return
        if trainer is not None and trainer.hook_caller.current_fx is not None:
            trainer.hook_caller.check_logging_allowed(name, on_step, on_epoch)
        results = trainer.metric_publisher.results if trainer is not None else None
        if results is None:
            warnings.warn(
                f"self.log({name!r}) was called outside of a running fit/validate/test; the value is dropped.",
                stacklevel=2,
            )
            return
        if metric_attribute is None and not isinstance(value, (Tensor, float, int)) and is_metric(value):
            self._metric_attributes = metric_attributes(self, name, value, getattr(self, "_metric_attributes", None))
        results.log(
            name, value, prog_bar=prog_bar, logger=True if logger is None else logger, on_step=on_step,
            on_epoch=on_epoch, reduce_fx=reduce_fx, enable_graph=enable_graph, sync_dist=sync_dist,
            add_dataloader_idx=add_dataloader_idx, batch_size=batch_size, rank_zero_only=rank_zero_only,
        )  # fmt: skip

    def log_dict(self, dictionary: Mapping[str, Any], **kwargs: Any) -> None:
        """``log`` every item of ``dictionary`` with the same options; a torchmetrics
        ``MetricCollection`` logs each of its metrics under its prefixed and postfixed name."""
        items = collection_items(dictionary) if is_metric_collection(dictionary) else dictionary.items()
        for name, value in items:
            self.log(name, value, **kwargs)

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on global rank zero only."""
        if self.global_rank == 0:
            print(*args, **kwargs)

    # ---- optimization ----------------------------------------------------------------
    def optimizers(self, use_pl_optimizer: bool = True) -> Any:
        """The optimizer, or the list of them when there are several."""
        optimization = self.trainer.optimization
        opts = optimization.optimizers if use_pl_optimizer is False else optimization.lightning_optimizers
        return opts[0] if len(opts) == 1 else list(opts)

    def lr_schedulers(self) -> Any:
        """The scheduler, the list of them, or None when there are none."""
        configs = self.trainer.lr_scheduler_configs
        if not configs:
            return None
        schedulers = [c.scheduler for c in configs]
        return schedulers[0] if len(schedulers) == 1 else schedulers

    def manual_backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Backward for manual optimization: runs the backward hooks and the precision's scaling."""
        if self.automatic_optimization:
            raise MisconfigurationException(
                "manual_backward() was called while automatic_optimization is True.\n"
                "HINT: set `self.automatic_optimization = False` in __init__ to optimize by hand."
            )
        self.trainer.optimization.backward(loss, None, *args, **kwargs)

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Override to customise the backward call (the loss arrives already scaled for AMP)."""
        loss.backward(*args, **kwargs)

    def toggle_optimizer(self, optimizer: Any) -> None:
        """Make only ``optimizer``'s parameters require grad (others are frozen until untoggle)."""
        own = {id(p) for group in optimizer.param_groups for p in group["params"]}
        state: dict[int, bool] = {}
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                for param in group["params"]:
                    if id(param) not in own and id(param) not in state:
                        state[id(param)] = param.requires_grad
                        param.requires_grad = False
        self._param_requires_grad_state = state

    def untoggle_optimizer(self, optimizer: Any) -> None:
        """Undo ``toggle_optimizer``."""
        state = getattr(self, "_param_requires_grad_state", {})
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                for param in group["params"]:
                    if id(param) in state:
                        param.requires_grad = state[id(param)]
        self._param_requires_grad_state = {}

    @contextlib.contextmanager
    def toggled_optimizer(self, optimizer: Any) -> Iterator[None]:
        """``toggle_optimizer`` for the duration of a ``with`` block."""
        self.toggle_optimizer(optimizer)
        try:
            yield
        finally:
            self.untoggle_optimizer(optimizer)

    def clip_gradients(
        self,
        optimizer: Any,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the gradients of ``optimizer``'s parameters by norm (default) or value."""
        self.trainer.optimization.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_gradient_clipping(
        self,
        optimizer: Any,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Called before every optimizer step with the Trainer's clipping settings."""
        self.clip_gradients(
            optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm
        )

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Step ``optimizer``; the closure runs training_step and backward (it must be called)."""
        optimizer.step(closure=optimizer_closure)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any) -> None:
        optimizer.zero_grad()

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    def on_validation_model_zero_grad(self) -> None:
        self.zero_grad()

    def on_validation_model_eval(self) -> None:
        self.trainer.model.eval()

    def on_validation_model_train(self) -> None:
        self.trainer.model.train()

    def on_test_model_eval(self) -> None:
        self.trainer.model.eval()

    def on_test_model_train(self) -> None:
        self.trainer.model.train()

    def on_predict_model_eval(self) -> None:
        self.trainer.model.eval()

    def all_gather(self, data: Any, group: Any = None, sync_grads: bool = False) -> Any:
        """Gather tensors (or nested collections of them) from every rank, stacked on dim 0."""
        if self._trainer is None:
            return data
        strategy = self.trainer.strategy
        if isinstance(data, Tensor):
            return strategy.all_gather(data, sync_grads=sync_grads)
        if isinstance(data, Mapping):
            return type(data)((k, self.all_gather(v, sync_grads=sync_grads)) for k, v in data.items())
        if isinstance(data, (list, tuple)):
            return type(data)(self.all_gather(v, sync_grads=sync_grads) for v in data)
        return strategy.all_gather(torch.as_tensor(data, device=self.device), sync_grads=sync_grads)

    # ---- model lifecycle -------------------------------------------------------------
    def freeze(self) -> None:
        """Turn off gradients for every parameter and switch to eval mode."""
        for param in self.parameters():
            param.requires_grad = False
        self.eval()

    def unfreeze(self) -> None:
        """Turn gradients back on for every parameter and switch to train mode."""
        for param in self.parameters():
            param.requires_grad = True
        self.train()

    def to_torchscript(
        self, file_path: str | Path | None = None, method: str = "script", example_inputs: Any = None, **kwargs: Any
    ) -> Any:
        """A TorchScript version of this module (``torch.jit.script`` or ``trace``), saved when a path is given."""
        from fulmen.core.export import to_torchscript

        return to_torchscript(self, file_path, method, example_inputs, **kwargs)

    def to_onnx(self, file_path: str | Path, input_sample: Any = None, **kwargs: Any) -> Any:
        """Export this module to ONNX at ``file_path`` (input from ``input_sample`` or example_input_array)."""
        from fulmen.core.export import to_onnx

        return to_onnx(self, file_path, input_sample, **kwargs)

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: str | Path,
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Rebuild this class from a checkpoint's hyperparameters and load its weights."""
        from fulmen.core.saving import load_from_checkpoint

        return load_from_checkpoint(
            cls, checkpoint_path, map_location=map_location, hparams_file=hparams_file, strict=strict, **kwargs
        )

    def __getstate__(self) -> dict[str, Any]:
        # pickling (torch.save(model), spawned workers) must not drag the Trainer along
        state = dict(super().__getstate__()) if hasattr(super(), "__getstate__") else dict(self.__dict__)
        state["_trainer"] = None
        return state

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        # the trainer is not part of a model's value: a copy starts detached
        trainer, self._trainer = self._trainer, None
        try:
            cls = self.__class__
            clone = cls.__new__(cls)
            memo[id(self)] = clone
            for key, value in self.__dict__.items():
                clone.__dict__[key] = copy.deepcopy(value, memo)
            return clone
        finally:
            self._trainer = trainer

