"""Compatibility scenarios for StochasticWeightAveraging, Timer and BaseFinetuning/BackboneFinetuning.

SWA: the lr of every epoch, the scheduler swap, the averaged weights put into the module, the
BatchNorm statistics epoch (max_epochs + 1, no weight change), its checkpoint state and a
resumed run. Timer: the deterministic parts (state_dict keys, a run whose budget is already
spent, the offset a checkpoint adds, error messages). Finetuning: which parameters train and
the param groups' lrs per epoch, and a resumed run that rebuilds the backbone's group.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.nn import functional as F

from tests.compat.models import base_module, loader, trainer_kwargs
from tests.compat.normalise import plain


def _first_line(call: Any) -> dict[str, Any]:
    """The exception ``call()`` raises: type and first line (fulmen adds a HINT line below)."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 (we record whichever it is)
        return {"type": type(exc).__name__, "message": str(exc).splitlines()[0]}
    return {"type": None, "message": None}


def _choices_sorted(error: dict[str, Any]) -> dict[str, Any]:
    """Lightning lists Timer's intervals from a set (its order follows the string hash seed)."""
    head, sep, choices = error["message"].partition("Possible choices are: ")
    return {**error, "message": head + sep + ", ".join(sorted(choices.split(", ")))}


def _weights(module: Any) -> dict[str, Any]:
    return {name: plain(value) for name, value in module.state_dict().items()}


def _epoch_recorder(pl: ModuleType, seen: dict[str, Any]) -> Any:
    """Records, at each epoch start (after the callbacks before it), the param groups' lrs,
    the scheduler classes, which parameters train, and at the end the progress counters."""

    class EpochRecorder(pl.Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            groups = trainer.optimizers[0].param_groups
            seen[f"epoch_{trainer.current_epoch}"] = {
                "lrs": [plain(group["lr"]) for group in groups],
                "schedulers": [type(config.scheduler).__name__ for config in trainer.lr_scheduler_configs],
                "trainable": sorted(name for name, p in pl_module.named_parameters() if p.requires_grad),
                "max_epochs": trainer.max_epochs,
            }

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            seen["train_end"] = {"global_step": trainer.global_step, "current_epoch": trainer.current_epoch}

    return EpochRecorder()


def _batchnorm_module(pl: ModuleType) -> type:
    class WithBatchNorm(base_module(pl)):
        def __init__(self) -> None:
            super().__init__()
            self.norm = torch.nn.BatchNorm1d(4)
            self.steps = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(self.norm(x))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.steps += 1
            return super().training_step(batch, batch_idx)

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5)}

    return WithBatchNorm


def _swa_run(pl: ModuleType, root: Path, model: Any, epochs: int, **swa: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    callback = pl.callbacks.StochasticWeightAveraging(**swa)
    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=epochs, callbacks=[callback, _epoch_recorder(pl, seen)]))
    trainer.fit(model, loader(8))
    trainer.save_checkpoint(root / "end.ckpt")
    state = torch.load(root / "end.ckpt", weights_only=False)["callbacks"]["StochasticWeightAveraging"]
    seen["after"] = {
        "weights": _weights(model),
        "max_epochs": trainer.max_epochs,
        "n_averaged": plain(callback.n_averaged),
        "state_keys": sorted(state),
        "state_n_averaged": state["n_averaged"],
        "state_latest_update_epoch": state["latest_update_epoch"],
        "state_scheduler_keys": sorted(state["scheduler_state"] or {}),
        "state_average_model": {name: plain(value) for name, value in state["average_model_state"].items()},
        "training_steps": getattr(model, "steps", None),
    }
    return seen


def _swa_resume(pl: ModuleType, root: Path) -> dict[str, Any]:
    """4 epochs, SWA from epoch 2 (1-based): stopped after epoch index 2, resumed to the end."""
    first = base_module(pl)()
    callback = pl.callbacks.StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=2)
    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=3, callbacks=[callback]))
    trainer.fit(first, loader(8))
    trainer.save_checkpoint(root / "mid.ckpt")
    seen: dict[str, Any] = {}
    second = base_module(pl)()
    callback = pl.callbacks.StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=2)
    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=5, callbacks=[callback, _epoch_recorder(pl, seen)]))
    trainer.fit(second, loader(8), ckpt_path=str(root / "mid.ckpt"))
    seen["after"] = {"weights": _weights(second), "n_averaged": plain(callback.n_averaged)}
    return seen


def swa(pl: ModuleType, root: Path) -> dict[str, Any]:
    """SWA on a linear model (cos annealing) and on a BatchNorm model with a StepLR scheduler
    (float start, linear annealing): lrs per epoch, final weights, checkpoint state; a resume."""
    swa_cls = pl.callbacks.StochasticWeightAveraging
    return {
        "linear": _swa_run(pl, root / "linear", base_module(pl)(), 4, swa_lrs=0.05, swa_epoch_start=2,
                           annealing_epochs=2),
        "batchnorm": _swa_run(pl, root / "bn", _batchnorm_module(pl)(), 4, swa_lrs=[0.02], swa_epoch_start=0.5,
                              annealing_epochs=1, annealing_strategy="linear"),
        "resume": _swa_resume(pl, root / "resume"),
        "errors": {
            "epoch_start_0": _first_line(lambda: swa_cls(swa_lrs=0.1, swa_epoch_start=0)),
            "epoch_start_1.5": _first_line(lambda: swa_cls(swa_lrs=0.1, swa_epoch_start=1.5)),
            "lrs_int": _first_line(lambda: swa_cls(swa_lrs=1)),
            "lrs_negative": _first_line(lambda: swa_cls(swa_lrs=[0.1, -0.1])),
            "avg_fn": _first_line(lambda: swa_cls(swa_lrs=0.1, avg_fn=3)),
            "device": _first_line(lambda: swa_cls(swa_lrs=0.1, device=3)),
        },
    }  # fmt: skip


def timer(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Timer's deterministic behaviour: a spent budget stops before any batch (either interval),
    the state_dict's keys, what a checkpoint's elapsed time adds, and the argument errors."""
    observed: dict[str, Any] = {}
    for interval in ("step", "epoch"):
        seen: dict[str, Any] = {}
        model = base_module(pl)()
        timer_cb = pl.callbacks.Timer(duration="00:00:00:00", interval=interval, verbose=False)
        trainer = pl.Trainer(**trainer_kwargs(str(root / interval), callbacks=[timer_cb, _epoch_recorder(pl, seen)]))
        trainer.fit(model, loader(8))
        observed[f"spent_{interval}"] = {
            "global_step": trainer.global_step,
            "current_epoch": trainer.current_epoch,
            "should_stop": trainer.should_stop,
            "epochs_started": sorted(seen),
            "state_keys": sorted(timer_cb.state_dict()["time_elapsed"]),
            "train_started": timer_cb.start_time("train") is not None,
            "validate_end": timer_cb.end_time("validate"),
        }
    resumed = pl.callbacks.Timer(duration={"seconds": 10})
    resumed.load_state_dict({"time_elapsed": {"train": 4.0, "validate": 2.0}})
    observed["loaded"] = {
        "train": resumed.time_elapsed("train"),
        "validate": resumed.time_elapsed("validate"),
        "remaining": resumed.time_remaining(),
        "no_duration": pl.callbacks.Timer().time_remaining(),
    }
    observed["errors"] = {
        "duration_format": _first_line(lambda: pl.callbacks.Timer(duration="1:00:00")),
        "interval": _choices_sorted(_first_line(lambda: pl.callbacks.Timer(interval="batch"))),
        "dict_key": _first_line(lambda: pl.callbacks.Timer(duration={"fortnights": 1})),
    }
    return observed


def _finetune_module(pl: ModuleType) -> type:
    class Finetuned(base_module(pl)):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(1)
            self.backbone = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
            self.layer = torch.nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(F.relu(self.backbone(x)))

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(filter(lambda p: p.requires_grad, self.parameters()), lr=0.1)
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.8)}

    return Finetuned


def _finetune_run(pl: ModuleType, root: Path, epochs: int, ckpt: Path | None = None, **kwargs: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    model = _finetune_module(pl)()
    callback = pl.callbacks.BackboneFinetuning(**kwargs)
    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=epochs, callbacks=[callback, _epoch_recorder(pl, seen)]))
    if ckpt is not None:
        model.load_state_dict(torch.load(ckpt, weights_only=False)["state_dict"])
    backbone_before = model.backbone[0].weight.detach().clone()
    trainer.fit(model, loader(8), ckpt_path=None if ckpt is None else str(ckpt))
    trainer.save_checkpoint(root / "end.ckpt")
    state = torch.load(root / "end.ckpt", weights_only=False)["callbacks"]["BackboneFinetuning"]
    seen["after"] = {
        "state": plain(state),
        "groups": len(trainer.optimizers[0].param_groups),
        "backbone_trained": not torch.equal(backbone_before, model.backbone[0].weight),
    }
    if ckpt is None:  # a resumed run's weights differ on purpose (deliberate difference, see the parity test)
        seen["after"]["weights"] = _weights(model)
    return seen


def finetuning(pl: ModuleType, root: Path) -> dict[str, Any]:
    """BackboneFinetuning: trainable parameters and lrs per epoch (defaults but the epoch; with
    backbone_initial_lr and should_align off; train_bn off), a resume past the unfreezing, and
    the error without a backbone."""

    class NoBackbone(base_module(pl)):
        pass

    def fit_without_backbone() -> None:
        trainer = pl.Trainer(**trainer_kwargs(str(root / "none"), callbacks=[pl.callbacks.BackboneFinetuning()]))
        trainer.fit(NoBackbone(), loader(4))

    first = _finetune_run(pl, root / "first", 2, unfreeze_backbone_at_epoch=1)
    return {
        "default": _finetune_run(pl, root / "default", 4, unfreeze_backbone_at_epoch=1),
        "initial_lr": _finetune_run(pl, root / "initial_lr", 4, unfreeze_backbone_at_epoch=2, backbone_initial_lr=0.2,
                                    should_align=False, lambda_func=lambda epoch: 1.5),
        "no_train_bn": _finetune_run(pl, root / "no_bn", 3, unfreeze_backbone_at_epoch=1, train_bn=False),
        "first_half": first,
        "resumed": _finetune_run(pl, root / "resumed", 4, ckpt=root / "first" / "end.ckpt", unfreeze_backbone_at_epoch=1),
        "no_backbone": _first_line(fit_without_backbone),
    }  # fmt: skip


SCENARIOS = {"swa": swa, "timer": timer, "finetuning": finetuning}
