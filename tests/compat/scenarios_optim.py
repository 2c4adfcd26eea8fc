"""Compatibility scenarios about optimization and resuming: the numbers a short training run
produces (losses, learning rates, final weights) under clipping, accumulation, precision and
schedulers; manual optimization; skipped steps; and fit(ckpt_path=...) after and within an epoch.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning. Both libraries run the same torch, so the same model, data, seed
and optimizer must give the same numbers (rounded to 6 digits here).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from tests.compat.models import base_module, dataset, loader, recording_callback, recording_module, trainer_kwargs
from tests.compat.normalise import plain

# name: (Trainer flags, optimizer, scheduler, shuffled training data)
NUMERICS_CASES: dict[str, tuple[dict[str, Any], str, str, bool]] = {
    "sgd_momentum_steplr": ({}, "sgd_momentum", "steplr_epoch", False),
    "accumulate_2_clip_norm_0.5": ({"accumulate_grad_batches": 2, "gradient_clip_val": 0.5}, "sgd", "none", False),
    "clip_value_0.01": ({"gradient_clip_val": 0.01, "gradient_clip_algorithm": "value"}, "sgd", "none", False),
    "adam_64_true": ({"precision": "64-true"}, "adam", "none", False),
    "bf16_mixed": ({"precision": "bf16-mixed"}, "sgd", "none", False),
    "bf16_true": ({"precision": "bf16-true"}, "sgd", "none", False),
    "plateau_on_val_loss": ({"max_epochs": 4}, "sgd", "plateau", False),
    "plateau_on_train_loss_no_val": ({"max_epochs": 4, "limit_val_batches": 0}, "sgd", "plateau_train", False),
    "epoch_scheduler_frequency_2": ({"max_epochs": 4}, "sgd", "steplr_epoch_frequency_2", False),
    "step_scheduler_every_2_steps": ({}, "sgd", "steplr_step_frequency_2", False),
    "accumulate_3_step_scheduler": ({"accumulate_grad_batches": 3}, "sgd", "steplr_step_frequency_2", False),
    "max_steps_5_mid_epoch": ({"max_steps": 5}, "sgd_momentum", "steplr_epoch", False),
    "shuffled_seed_everything": ({"max_epochs": 3}, "sgd", "none", True),
    "overfit_2_shuffled_loader": ({"max_epochs": 3, "overfit_batches": 2}, "sgd", "none", True),
    "limit_train_0.5_shuffled": ({"max_epochs": 2, "limit_train_batches": 0.5}, "sgd", "none", True),
}


def _optimizers(module: Any, optimizer: str, scheduler: str) -> Any:
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    else:
        opt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9 if optimizer == "sgd_momentum" else 0.0)
    if scheduler == "steplr_epoch":
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)]
    if scheduler in ("plateau", "plateau_train"):
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0, threshold=10.0)
        monitor = "val_loss" if scheduler == "plateau" else "train_loss"
        return {"optimizer": opt, "lr_scheduler": {"scheduler": plateau, "monitor": monitor}}
    if scheduler == "steplr_epoch_frequency_2":
        step_lr = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": step_lr, "interval": "epoch", "frequency": 2}}
    if scheduler == "steplr_step_frequency_2":
        step_lr = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": step_lr, "interval": "step", "frequency": 2}}
    return opt


def _numerics_case(pl: ModuleType, root: Path, flags: dict[str, Any], optimizer: str, scheduler: str, shuffle: bool):
    losses: list[float] = []
    lrs: list[float] = []

    class Numerics(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)
            self.log("train_loss", loss, on_step=False, on_epoch=True)  # monitored by plateau_train
            losses.append(loss.item())
            lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
            return loss

        def configure_optimizers(self) -> Any:
            return _optimizers(self, optimizer, scheduler)

    pl.seed_everything(42)
    model = Numerics()
    train = DataLoader(dataset(12), batch_size=2, shuffle=shuffle)
    pl.Trainer(**trainer_kwargs(str(root), num_sanity_val_steps=0, **flags)).fit(model, train, loader(4, seed=1))
    return {
        "losses": plain(losses),
        "lr_per_step": plain(lrs),
        "final_weights": {name: plain(tensor.detach().double()) for name, tensor in sorted(model.state_dict().items())},
        "dtype_after_fit": str(next(model.parameters()).dtype),
    }


def training_numerics(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Per-step losses and learning rates and the final weights of a 6-batch epoch run (2
    epochs unless set) under each case's flags, optimizer and scheduler."""
    return {
        name: _numerics_case(pl, root / name, flags, optimizer, scheduler, shuffle)
        for name, (flags, optimizer, scheduler, shuffle) in NUMERICS_CASES.items()
    }


def _manual_base(pl: ModuleType) -> type:
    class Manual(base_module(pl)):
        """Two optimizers (weight and bias), the second stepped every other batch."""

        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch: Any, batch_idx: int) -> None:
            first, second = self.optimizers()
            x, y = batch
            first.zero_grad()
            self.manual_backward(F.mse_loss(self(x), y))
            first.step()
            if batch_idx % 2 == 0:
                second.zero_grad()
                self.manual_backward(F.mse_loss(self(x), y))
                second.step()

        def configure_optimizers(self) -> Any:
            return [
                torch.optim.SGD([self.layer.weight], lr=0.1),
                torch.optim.SGD([self.layer.bias], lr=0.1),
            ]

    return Manual


def manual_optimization(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Hook sequence and global_step with manual optimization and two optimizers (1 epoch x 3
    batches, no validation), and the final weights."""
    calls: list[str] = []
    steps: list[int] = []
    model = recording_module(pl, calls, train=3, val=1, test=1, base=_manual_base(pl))

    class Steps(pl.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            steps.append(trainer.global_step)

    flags = trainer_kwargs(str(root), max_epochs=1, limit_val_batches=0)
    pl.Trainer(**flags, callbacks=[recording_callback(pl, calls), Steps()]).fit(model)
    return {
        "fit": calls,
        "global_step_after_batch": steps,
        "final_weights": {name: plain(tensor.detach()) for name, tensor in sorted(model.state_dict().items())},
    }


def step_skipping(pl: ModuleType, root: Path) -> dict[str, Any]:
    """training_step returning None on batch 1, and on_train_batch_start returning -1 at batch 2
    of epoch 0: which batches ran, optimizer steps and global_step (2 epochs x 4 batches)."""
    ran: list[list[int]] = []
    optimizer_steps: list[list[int]] = []

    class Skipping(base_module(pl)):
        def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
            return -1 if self.current_epoch == 0 and batch_idx == 2 else None

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
            ran.append([self.current_epoch, batch_idx, self.global_step])
            return None if batch_idx == 1 else super().training_step(batch, batch_idx)

        def optimizer_step(self, epoch: int, batch_idx: int, *args: Any, **kwargs: Any) -> None:
            optimizer_steps.append([epoch, batch_idx])
            super().optimizer_step(epoch, batch_idx, *args, **kwargs)

    trainer = pl.Trainer(**trainer_kwargs(str(root), limit_val_batches=0))
    trainer.fit(Skipping(), loader(8))
    return {
        "training_step": ran,
        "optimizer_step": optimizer_steps,
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
    }


def _mode_module(pl: ModuleType, seen: dict[str, Any]) -> Any:
    class Modes(base_module(pl)):
        """Records grad/inference mode and train/eval flags inside each step kind."""

        def __init__(self) -> None:
            super().__init__()
            self.frozen_bn = torch.nn.BatchNorm1d(1)
            self.frozen_bn.eval()  # a submodule the user keeps in eval mode

        def _note(self, kind: str) -> None:
            fn = getattr(self.trainer.state.fn, "value", self.trainer.state.fn)
            key = f"{kind}@{fn}"
            seen.setdefault("grad", {}).setdefault(
                key, [torch.is_grad_enabled(), torch.is_inference_mode_enabled(), self.training]
            )
            seen.setdefault("submodule", {}).setdefault(key, self.frozen_bn.training)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self._note("training_step")
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self._note("sanity_validation_step" if self.trainer.sanity_checking else "validation_step")

        def test_step(self, batch: Any, batch_idx: int) -> None:
            self._note("test_step")

        def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self._note("predict_step")
            return self(batch[0])

    return Modes()


def modes_and_grad(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Inside each step kind (per entry point): [grad enabled, inference mode, module.training]
    and, apart, the training flag of a BatchNorm the user put in eval mode; after fit / validate /
    test / predict: [module.training, that BatchNorm's]; for inference_mode True and False."""
    out = {}
    for inference_mode in (True, False):
        seen: dict[str, Any] = {}
        model = _mode_module(pl, seen)
        trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1, inference_mode=inference_mode))
        after = {}
        for stage in ("fit", "validate", "test", "predict"):
            if stage == "fit":
                trainer.fit(model, loader(4), loader(2, seed=1))
            elif stage == "predict":
                trainer.predict(model, dataloaders=loader(2, seed=2))
            else:
                getattr(trainer, stage)(model, dataloaders=loader(2, seed=2), verbose=False)
            after[stage] = [model.training, model.frozen_bn.training]
        # three keys per setting, so that each kind of mismatch fails on its own
        out[f"grad_inside.inference_mode_{inference_mode}"] = dict(sorted(seen["grad"].items()))
        out[f"eval_submodule_inside.inference_mode_{inference_mode}"] = dict(sorted(seen["submodule"].items()))
        out[f"modes_after.inference_mode_{inference_mode}"] = after
    return out


def _describe_outputs(outputs: Any) -> Any:
    if isinstance(outputs, torch.Tensor):
        return {"type": "Tensor", "requires_grad": outputs.requires_grad}
    if isinstance(outputs, dict):
        return {
            "type": "dict",
            "items": {
                key: {"type": type(value).__name__, "requires_grad": bool(getattr(value, "requires_grad", False))}
                for key, value in sorted(outputs.items())
            },
        }
    return {"type": type(outputs).__name__}


def batch_end_outputs(pl: ModuleType, root: Path) -> dict[str, Any]:
    """What on_train_batch_end receives as ``outputs`` (type, keys, detached or not) when
    training_step returns a tensor, a dict with extra keys, or None (module and callback)."""
    out = {}
    for returns in ("tensor", "dict", "none"):
        seen: dict[str, Any] = {}

        class Returning(base_module(pl)):
            def training_step(self, batch: Any, batch_idx: int) -> Any:
                loss = super().training_step(batch, batch_idx)
                if returns == "tensor":
                    return loss
                return {"loss": loss, "extra": loss * 2, "note": "x"} if returns == "dict" else None

            def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
                seen.setdefault("module", _describe_outputs(outputs))

        class Seen(pl.Callback):
            def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, *args: Any) -> None:
                seen.setdefault("callback", _describe_outputs(outputs))

        flags = trainer_kwargs(str(root), max_epochs=1, limit_val_batches=0, callbacks=[Seen()])
        pl.Trainer(**flags).fit(Returning(), loader(4))
        out[returns] = dict(sorted(seen.items()))
    return out


def _resume_run(pl: ModuleType, root: Path, checkpoint: Path) -> dict[str, Any]:
    calls: list[str] = []
    events: list[list[int]] = []

    class Where(pl.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            events.append([trainer.current_epoch, batch_idx, trainer.global_step])

    model = recording_module(pl, calls, train=2, val=1, test=1)
    flags = trainer_kwargs(str(root), max_epochs=2, num_sanity_val_steps=0)
    trainer = pl.Trainer(**flags, callbacks=[recording_callback(pl, calls), Where()])
    trainer.fit(model, ckpt_path=str(checkpoint))
    return {"hooks": calls, "train_batch_end": events, "global_step": trainer.global_step}


def resume(pl: ModuleType, root: Path) -> dict[str, Any]:
    """fit(ckpt_path=...) with max_epochs=2 from a checkpoint saved after epoch 0 ended
    (trainer.save_checkpoint) and from one saved mid-epoch 0 (every_n_train_steps=1 at step 1):
    the module's and callback's hooks, and which batches run at which global_step (2 batches per epoch)."""
    first = recording_module(pl, [], train=2, val=1, test=1)
    steps_cb = pl.callbacks.ModelCheckpoint(dirpath=str(root / "steps"), every_n_train_steps=1, save_top_k=-1)
    flags = trainer_kwargs(str(root), max_epochs=1, num_sanity_val_steps=0, enable_checkpointing=True)
    trainer = pl.Trainer(**flags, callbacks=[recording_callback(pl, []), steps_cb])
    trainer.fit(first)
    trainer.save_checkpoint(str(root / "after_epoch_0.ckpt"))
    out = {}
    for name, path in (("after_epoch_0", "after_epoch_0.ckpt"), ("mid_epoch_0_step_1", "steps/epoch=0-step=1.ckpt")):
        run = _resume_run(pl, root / name, root / path)
        # hooks apart from progress, so that a hook-order mismatch fails on its own
        out[f"hooks.{name}"] = run.pop("hooks")
        out[f"progress.{name}"] = run
    return out


SCENARIOS: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {
    "training_numerics": training_numerics,
    "manual_optimization": manual_optimization,
    "step_skipping": step_skipping,
    "resume": resume,
    "modes_and_grad": modes_and_grad,
    "batch_end_outputs": batch_end_outputs,
}
