"""Callback: the base class of everything that plugs into the Trainer's loops.

The hook order of one ``trainer.fit(model)`` with validation, written once as pseudocode.
For hooks that both a callback and the module define, the callbacks run first (in the
order of ``trainer.callbacks``), then the module; the datamodule's ``setup``/``teardown``
run before both. Monitoring callbacks (checkpointing, early stopping) run their
``on_train_epoch_end`` *after* the module's so that they see what it logged. Every
``on_{train,validation,test}_epoch_end`` hook already finds the epoch's values (e.g.
``val_loss`` logged in ``validation_step``) in ``trainer.callback_metrics``,
``logged_metrics`` and ``progress_bar_metrics``, as in Lightning.

::

    configure_callbacks()                          # module; returned callbacks join trainer.callbacks
    prepare_data()                                 # datamodule, then module; once per node
    setup(stage="fit")                             # datamodule, callbacks, module
    configure_model()
    (restore ckpt_path / resume checkpoint: module, callbacks' load_state_dict)
    configure_optimizers()
    on_fit_start()                                 # before the optimizer/scheduler/loop states load
    (restore the training state: optimizers, schedulers, loop progress)
    if num_sanity_val_steps:
        on_sanity_check_start()                    # callbacks only
        <validation run, see below, metrics discarded>
        on_sanity_check_end()                      # callbacks only
    train_dataloader()
    on_train_start()
    for epoch in epochs:
        on_train_epoch_start()
        for batch_idx, batch in train batches:
            on_before_batch_transfer(); transfer_batch_to_device(); on_after_batch_transfer()
            on_train_batch_start(batch, batch_idx)  # module returning -1 ends the epoch here
            training_step(batch, batch_idx)         # inside the optimizer closure
            on_before_zero_grad(opt); optimizer_zero_grad(epoch, batch_idx, opt)  # first batch of an accumulation window
            on_before_backward(loss); backward(loss); on_after_backward()
            on_before_optimizer_step(opt); configure_gradient_clipping(opt, val, algo)
            optimizer_step(epoch, batch_idx, opt, closure)    # skipped while accumulating
            lr_scheduler_step(...)                  # "step" schedulers; "epoch" ones on the last batch
            on_train_batch_end(outputs, batch, batch_idx)
            if validation is due:
                on_validation_model_zero_grad()
                on_validation_model_eval(); on_validation_start(); on_validation_epoch_start()
                for each val batch: (transfer hooks) on_validation_batch_start(); validation_step();
                                    on_validation_batch_end()
                on_validation_epoch_end(); on_validation_end(); on_validation_model_train()
        on_train_epoch_end()                        # callbacks, module, then monitoring callbacks
        (ReduceLROnPlateau "epoch" schedulers step here)
    on_train_end()
    on_fit_end()
    teardown(stage="fit")                          # datamodule, callbacks, module
    on_exception(exc)                              # instead of the end hooks when something raised

``test``/``validate``/``predict`` run ``setup(stage)``, ``on_{stage}_start``, the epoch and
batch hooks of that stage, ``on_{stage}_end`` and ``teardown(stage)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor
    from torch.optim import Optimizer

    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer


class Callback:
    """Base class for callbacks; override only the hooks you need (the others cost nothing)."""

    @property
    def state_key(self) -> str:
        """Identifier of this callback's state in a checkpoint (the class's qualified name)."""
        return self.__class__.__qualname__

    def _generate_state_key(self, **kwargs: Any) -> str:
        return f"{self.__class__.__qualname__}{repr(kwargs)}"

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Called when fit, validate, test or predict begins."""

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Called when fit, validate, test or predict ends."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None: ...

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None: ...
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None: ...
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None: ...

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None: ...

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None: ...
    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None: ...
    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None: ...
    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None: ...
    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None: ...
    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None: ...

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None: ...

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """This callback's state, stored in checkpoints under ``state_key``."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None: ...
    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None: ...

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: Tensor) -> None: ...
    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None: ...
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer) -> None: ...
    def on_before_zero_grad(self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer) -> None: ...
