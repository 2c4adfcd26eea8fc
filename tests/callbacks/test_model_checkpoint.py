"""ModelCheckpoint bookkeeping against Lightning's file names, driven by plain metric sequences.

The expected names, best/kth paths and scores were checked against PyTorch Lightning 2.6.6
run on the same sequences (top-k, template, -vN clashes, every_n_epochs,
every_n_train_steps, NaN scores).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from fulmen.callbacks import model_checkpoint as mc_module
from fulmen.callbacks.model_checkpoint import ModelCheckpoint
from fulmen.core.module import LightningModule
from fulmen.errors import MisconfigurationException
from fulmen.runtime.checkpoint import load_checkpoint, save_atomic


class FakeTrainer:
    """The attributes ModelCheckpoint reads from a Trainer, and a recording save_checkpoint."""

    def __init__(self, root: Path, loggers: list[Any] | None = None) -> None:
        self.callback_metrics: dict[str, Any] = {}
        self.current_epoch = 0
        self.global_step = 0
        self.default_root_dir = str(root)
        self.loggers = loggers or []
        self.is_global_zero = True
        self.sanity_checking = False
        self.fast_dev_run = False
        self.check_val_every_n_epoch = 1
        self.num_val_batches = [2]
        self.val_check_interval = 1.0
        self.ckpt_path: str | None = None
        self.state = SimpleNamespace(fn="fit")
        self.saves: list[tuple[str, bool, list[str]]] = []  # (name, weights_only, folder listing before)

    def save_checkpoint(self, path: str, weights_only: bool = False) -> None:
        folder = os.path.dirname(path)
        before = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        save_atomic({"epoch": self.current_epoch, "global_step": self.global_step}, path)
        self.saves.append((os.path.basename(path), weights_only, before))


def _fit(cb: ModelCheckpoint, trainer: FakeTrainer, metrics: list[dict[str, float]], steps_per_epoch: int = 4) -> None:
    """Epochs with validation every epoch: the callback saves at train epoch end (Lightning's default)."""
    cb.setup(trainer, None, "fit")  # type: ignore[arg-type]
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    for epoch, values in enumerate(metrics):
        trainer.current_epoch = epoch
        for _ in range(steps_per_epoch):
            trainer.global_step += 1
            cb.on_train_batch_end(trainer, None, None, None, 0)  # type: ignore[arg-type]
        trainer.callback_metrics = {k: torch.tensor(v) for k, v in values.items()}
        cb.on_validation_end(trainer, None)  # type: ignore[arg-type]
        cb.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    cb.on_train_end(trainer, None)  # type: ignore[arg-type]


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_top_k_min_names_best_and_kth(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=2, save_last=True)
    trainer = FakeTrainer(tmp_path)
    _fit(cb, trainer, [{"val_loss": v} for v in (0.5, 0.3, 0.4, 0.2, 0.6)])
    assert _files(tmp_path) == ["epoch=1-step=8.ckpt", "epoch=3-step=16.ckpt", "last.ckpt"]
    assert cb.best_model_path == str(tmp_path / "epoch=3-step=16.ckpt")
    assert cb.best_model_score == pytest.approx(0.2)
    assert cb.kth_best_model_path == str(tmp_path / "epoch=1-step=8.ckpt")
    assert cb.kth_value == pytest.approx(0.3)
    assert {Path(k).name: round(float(v), 3) for k, v in cb.best_k_models.items()} == {
        "epoch=1-step=8.ckpt": 0.3,
        "epoch=3-step=16.ckpt": 0.2,
    }
    assert cb.last_model_path == str(tmp_path / "last.ckpt")
    # Lightning 2.6: last.ckpt follows each saved file; epoch 4 was not in the top 2, so neither
    assert load_checkpoint(tmp_path / "last.ckpt")["global_step"] == 16
    assert [name for name, _, _ in trainer.saves] == [
        "epoch=0-step=4.ckpt", "last.ckpt",
        "epoch=1-step=8.ckpt", "last.ckpt",
        "epoch=2-step=12.ckpt", "last.ckpt",
        "epoch=3-step=16.ckpt", "last.ckpt",
    ]  # fmt: skip


def test_top_k_file_deleted_only_after_replacement_written(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=1)
    trainer = FakeTrainer(tmp_path)
    _fit(cb, trainer, [{"val_loss": 0.5}, {"val_loss": 0.4}])
    name, _, listing_before = trainer.saves[1]
    assert name == "epoch=1-step=8.ckpt"
    assert "epoch=0-step=4.ckpt" in listing_before  # the old best still existed while writing
    assert _files(tmp_path) == ["epoch=1-step=8.ckpt"]


def test_template_with_metrics_and_max_mode(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val_acc", mode="max", filename="best-{epoch:02d}-{val_acc:.3f}")
    trainer = FakeTrainer(tmp_path)
    _fit(cb, trainer, [{"val_acc": v} for v in (0.5, 0.7, 0.6, 0.92)])
    assert _files(tmp_path) == ["best-epoch=03-val_acc=0.920.ckpt"]
    assert cb.best_model_score == pytest.approx(0.92)


def test_auto_insert_metric_name_false_and_slashes(tmp_path: Path) -> None:
    cb = ModelCheckpoint(
        dirpath=tmp_path, monitor="val/loss", filename="ep{epoch}-loss{val/loss:.2f}", auto_insert_metric_name=False
    )
    trainer = FakeTrainer(tmp_path)
    _fit(cb, trainer, [{"val/loss": 0.25}])
    assert _files(tmp_path) == ["ep0-loss0.25.ckpt"]


def test_format_checkpoint_name_matches_lightning_doctests(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}")
    assert os.path.basename(cb.format_checkpoint_name({"epoch": 0})) == "epoch=0.ckpt"
    cb = ModelCheckpoint(dirpath=tmp_path, filename="{epoch:03d}")
    assert os.path.basename(cb.format_checkpoint_name({"epoch": 5})) == "epoch=005.ckpt"
    cb = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}-{val_loss:.2f}")
    assert os.path.basename(cb.format_checkpoint_name({"epoch": 2, "val_loss": 0.123456})) == "epoch=2-val_loss=0.12.ckpt"
    assert os.path.basename(cb.format_checkpoint_name({"epoch": 2}, filename="{epoch:d}")) == "epoch=2.ckpt"
    cb = ModelCheckpoint(dirpath=tmp_path, filename="{missing:d}")
    assert os.path.basename(cb.format_checkpoint_name({})) == "missing=0.ckpt"
    cb = ModelCheckpoint(filename="{step}")
    assert cb.format_checkpoint_name({"step": 0}) == "step=0.ckpt"
    cb = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}-{epoch_test}")
    assert os.path.basename(cb.format_checkpoint_name({"epoch": 1, "epoch_test": 7})) == "epoch=1-epoch_test=7.ckpt"
    assert os.path.basename(cb.format_checkpoint_name({"epoch": 1, "epoch_test": 7}, ver=3)) == "epoch=1-epoch_test=7-v3.ckpt"


def test_name_clash_gets_version_suffix(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=-1, filename="{val_loss:.1f}")
    trainer = FakeTrainer(tmp_path)
    _fit(cb, trainer, [{"val_loss": 0.5}, {"val_loss": 0.5}, {"val_loss": 0.5}])
    assert _files(tmp_path) == ["val_loss=0.5-v1.ckpt", "val_loss=0.5-v2.ckpt", "val_loss=0.5.ckpt"]


def test_version_counter_disabled_overwrites(tmp_path: Path) -> None:
    cb = ModelCheckpoint(
        dirpath=tmp_path, monitor="val_loss", save_top_k=-1, filename="{val_loss:.1f}", enable_version_counter=False
    )
    trainer = FakeTrainer(tmp_path)
    _fit(cb, trainer, [{"val_loss": 0.5}, {"val_loss": 0.5}])
    assert _files(tmp_path) == ["val_loss=0.5.ckpt"]


def test_no_monitor_keeps_latest_or_all(tmp_path: Path) -> None:
    one, every = tmp_path / "one", tmp_path / "all"
    cb = ModelCheckpoint(dirpath=one)
    _fit(cb, FakeTrainer(tmp_path), [{}, {}, {}])
    assert _files(one) == ["epoch=2-step=12.ckpt"]
    assert cb.best_model_path == str(one / "epoch=2-step=12.ckpt")
    cb = ModelCheckpoint(dirpath=every, save_top_k=-1)
    _fit(cb, FakeTrainer(tmp_path), [{}, {}, {}])
    assert _files(every) == ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt", "epoch=2-step=12.ckpt"]


def test_save_top_k_zero_with_save_last_writes_only_last(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, save_top_k=0, save_last=True)
    _fit(cb, FakeTrainer(tmp_path), [{}, {}])
    assert _files(tmp_path) == ["last.ckpt"]


def test_every_n_train_steps(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_top_k=-1)
    trainer = FakeTrainer(tmp_path)
    _fit(cb, trainer, [{}, {}], steps_per_epoch=4)  # steps 1..8: saves at 3 and 6, none at epoch end
    assert _files(tmp_path) == ["epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt"]


def test_every_n_epochs_and_last_with_each_save(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, every_n_epochs=2, save_top_k=-1, save_last=True)
    trainer = FakeTrainer(tmp_path)
    _fit(cb, trainer, [{}, {}, {}, {}])
    assert _files(tmp_path) == ["epoch=1-step=8.ckpt", "epoch=3-step=16.ckpt", "last.ckpt"]
    assert [n for n, _, _ in trainer.saves] == ["epoch=1-step=8.ckpt", "last.ckpt", "epoch=3-step=16.ckpt", "last.ckpt"]


def test_train_time_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0] + [float(t) for t in range(1, 100)])  # on_train_start, then one tick per batch
    monkeypatch.setattr(mc_module.time, "monotonic", lambda: next(clock))
    cb = ModelCheckpoint(dirpath=tmp_path, train_time_interval=timedelta(seconds=3), save_top_k=-1)
    trainer = FakeTrainer(tmp_path)
    _fit(cb, trainer, [{}, {}], steps_per_epoch=4)  # batch clocks 1..8: saves at 3 and 6
    assert _files(tmp_path) == ["epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt"]


def test_save_weights_only_is_passed_to_trainer(tmp_path: Path) -> None:
    trainer = FakeTrainer(tmp_path)
    _fit(ModelCheckpoint(dirpath=tmp_path, save_weights_only=True), trainer, [{}])
    assert trainer.saves[0][1] is True


def test_save_on_validation_end_when_validation_runs_mid_epoch(tmp_path: Path) -> None:
    trainer = FakeTrainer(tmp_path)
    trainer.val_check_interval = 0.5  # Lightning then checkpoints after validation, not at epoch end
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss")
    cb.setup(trainer, None, "fit")  # type: ignore[arg-type]
    trainer.global_step = 2
    trainer.callback_metrics = {"val_loss": torch.tensor(0.4)}
    cb.on_validation_end(trainer, None)  # type: ignore[arg-type]
    assert _files(tmp_path) == ["epoch=0-step=2.ckpt"]
    trainer.global_step = 4
    cb.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert _files(tmp_path) == ["epoch=0-step=2.ckpt"]
    explicit = ModelCheckpoint(dirpath=tmp_path / "b", save_on_train_epoch_end=True)
    explicit.setup(trainer, None, "fit")  # type: ignore[arg-type]
    explicit.on_validation_end(trainer, None)  # type: ignore[arg-type]
    explicit.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert _files(tmp_path / "b") == ["epoch=0-step=4.ckpt"]


def test_no_save_during_sanity_check_fast_dev_run_or_outside_fit(tmp_path: Path) -> None:
    for attr, value in (("sanity_checking", True), ("fast_dev_run", 1), ("state", SimpleNamespace(fn="validate"))):
        trainer = FakeTrainer(tmp_path)
        setattr(trainer, attr, value)
        cb = ModelCheckpoint(dirpath=tmp_path / attr)
        _fit(cb, trainer, [{}])
        assert trainer.saves == [], attr


def test_missing_monitor_defers_step_save_to_validation(tmp_path: Path) -> None:
    trainer = FakeTrainer(tmp_path)
    trainer.val_check_interval = 0.5  # validation inside the epoch: it saves after validation
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", every_n_train_steps=1)
    cb.setup(trainer, None, "fit")  # type: ignore[arg-type]
    trainer.callback_metrics = {"train_loss": torch.tensor(1.0)}
    trainer.global_step = 1
    cb.on_train_batch_end(trainer, None, None, None, 0)  # type: ignore[arg-type]
    assert trainer.saves == []  # val_loss is not there yet: Lightning 2.6 waits for validation
    trainer.callback_metrics["val_loss"] = torch.tensor(0.5)
    cb.on_validation_end(trainer, None)  # type: ignore[arg-type]
    assert [name for name, _, _ in trainer.saves] == ["epoch=0-step=1.ckpt"]


def test_missing_monitor_warns_before_validation_then_errors_listing_keys(tmp_path: Path) -> None:
    trainer = FakeTrainer(tmp_path)
    trainer.num_val_batches = [0]  # no validation: the epoch end checks the metric
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss")
    cb.setup(trainer, None, "fit")  # type: ignore[arg-type]
    trainer.callback_metrics = {"train_loss": torch.tensor(1.0)}
    trainer.global_step = 4
    with pytest.warns(UserWarning, match=r"could not find the monitored key.*\['train_loss'\]"):
        cb.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    cb.on_validation_end(trainer, None)  # now a validation has run
    trainer.global_step = 8
    with pytest.raises(MisconfigurationException, match=r"\['train_loss'\](.|\n)*HINT: Did you call `log\('val_loss'"):
        cb.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]


def test_save_last_at_train_end_when_nothing_was_saved(tmp_path: Path) -> None:
    trainer = FakeTrainer(tmp_path)
    _fit(ModelCheckpoint(dirpath=tmp_path, every_n_epochs=5, save_last=True), trainer, [{}, {}])
    assert [name for name, _, _ in trainer.saves] == ["last.ckpt"]


def test_save_on_exception(tmp_path: Path) -> None:
    trainer = FakeTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path, save_on_exception=True, save_last=True)
    cb.setup(trainer, None, "fit")  # type: ignore[arg-type]
    trainer.global_step, trainer.current_epoch = 3, 0
    cb.on_exception(trainer, None, RuntimeError("boom"))  # type: ignore[arg-type]
    assert [name for name, _, _ in trainer.saves] == ["epoch=0-step=3.ckpt", "last.ckpt"]
    cb.on_exception(trainer, None, RuntimeError("again"))  # type: ignore[arg-type]
    assert len(trainer.saves) == 2  # not twice for the same step


def test_state_key_matches_lightning() -> None:
    assert ModelCheckpoint(monitor="val_loss").state_key == (
        "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0, "
        "'every_n_epochs': 1, 'train_time_interval': None}"
    )


def test_state_dict_round_trip_and_dirpath_change(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=2, save_last=True)
    _fit(cb, FakeTrainer(tmp_path), [{"val_loss": v} for v in (0.5, 0.3, 0.4)])
    state = cb.state_dict()
    assert set(state) == {
        "monitor", "best_model_score", "best_model_path", "current_score", "dirpath",
        "best_k_models", "kth_best_model_path", "kth_value", "last_model_path",
    }  # fmt: skip
    restored = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=2, save_last=True)
    restored.load_state_dict(state)
    assert restored.best_k_models == cb.best_k_models
    assert (restored.best_model_path, restored.kth_best_model_path) == (cb.best_model_path, cb.kth_best_model_path)
    moved = ModelCheckpoint(dirpath=tmp_path / "elsewhere", monitor="val_loss")
    with pytest.warns(UserWarning, match="dirpath has changed"):
        moved.load_state_dict(state)
    assert moved.best_model_path == cb.best_model_path and moved.best_k_models == {}


@pytest.mark.filterwarnings("ignore:Checkpoint directory")
def test_resumed_checkpoint_is_not_deleted(tmp_path: Path) -> None:
    trainer = FakeTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss")
    _fit(cb, trainer, [{"val_loss": 0.5}])
    trainer.ckpt_path = cb.best_model_path  # as if this run resumed from it
    _fit(cb, trainer, [{"val_loss": 0.4}])
    assert _files(tmp_path) == ["epoch=0-step=4.ckpt", "epoch=0-step=8.ckpt"]


def test_save_last_link_points_at_newest(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, save_last="link", save_top_k=-1)
    _fit(cb, FakeTrainer(tmp_path), [{}, {}])
    last = tmp_path / "last.ckpt"
    assert last.is_symlink() and os.readlink(last) == "epoch=1-step=8.ckpt"
    assert load_checkpoint(last)["global_step"] == 8


def test_default_dirpath_from_logger_or_root(tmp_path: Path) -> None:
    logger = SimpleNamespace(save_dir=str(tmp_path / "logs"), name="lightning_logs", version=3)
    cb = ModelCheckpoint()
    cb.setup(FakeTrainer(tmp_path, loggers=[logger]), None, "fit")  # type: ignore[arg-type]
    assert cb.dirpath == str(tmp_path / "logs" / "lightning_logs" / "version_3" / "checkpoints")
    cb = ModelCheckpoint()
    cb.setup(FakeTrainer(tmp_path), None, "fit")  # type: ignore[arg-type]
    assert cb.dirpath == str(tmp_path / "checkpoints")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"save_top_k": -2}, "save_top_k=-2"),
        ({"every_n_train_steps": -1}, "every_n_train_steps=-1"),
        ({"every_n_epochs": -1}, "every_n_epochs=-1"),
        ({"every_n_epochs": 1, "every_n_train_steps": 2}, "mutually exclusive"),
        ({"save_top_k": 3}, "No quantity for top_k"),
        ({"mode": "avg"}, "min, max"),
    ],
)
def test_invalid_configurations(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(MisconfigurationException, match=match):
        ModelCheckpoint(**kwargs)


def test_nan_score_never_becomes_best(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=2)
    _fit(cb, FakeTrainer(tmp_path), [{"val_loss": 0.5}, {"val_loss": float("nan")}, {"val_loss": 0.4}])
    assert cb.best_model_path.endswith("epoch=2-step=12.ckpt")
    assert _files(tmp_path) == ["epoch=0-step=4.ckpt", "epoch=2-step=12.ckpt"]


def test_to_yaml(tmp_path: Path) -> None:
    import yaml

    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=2)
    _fit(cb, FakeTrainer(tmp_path), [{"val_loss": 0.5}, {"val_loss": 0.25}])
    cb.to_yaml()
    data = yaml.safe_load((tmp_path / "best_k_models.yaml").read_text())
    assert {Path(k).name: v for k, v in data.items()} == {"epoch=0-step=4.ckpt": 0.5, "epoch=1-step=8.ckpt": 0.25}


# ---- with the real Trainer ----------------------------------------------------------------


class ScriptedVal(LightningModule):
    """Validation logs ``val_loss`` from a fixed sequence, one value per epoch."""

    def __init__(self, values: list[float], hidden: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        values = self.hparams["values"]
        self.log("val_loss", values[min(self.current_epoch, len(values) - 1)])

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loaders() -> tuple[Any, Any]:
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.randn(16, 2))
    return DataLoader(data, batch_size=4), DataLoader(data, batch_size=8)


def _real_trainer(root: Path, callbacks: list[Any], epochs: int, **kwargs: Any) -> Any:
    from fulmen.runtime.trainer import Trainer

    kwargs.setdefault("logger", False)
    return Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        default_root_dir=str(root),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def test_real_fit_writes_lightning_names_and_tracks_best(tmp_path: Path) -> None:
    values = [0.5, 0.3, 0.4, 0.2, 0.6]
    cb = ModelCheckpoint(monitor="val_loss", save_top_k=2, save_last=True)
    trainer = _real_trainer(tmp_path, [cb], epochs=5)
    trainer.fit(ScriptedVal(values), *_loaders())
    folder = tmp_path / "checkpoints"
    assert _files(folder) == ["epoch=1-step=8.ckpt", "epoch=3-step=16.ckpt", "last.ckpt"]
    assert trainer.checkpoint_callback is cb
    assert cb.best_model_path == str(folder / "epoch=3-step=16.ckpt") and cb.best_model_score == pytest.approx(0.2)
    best = load_checkpoint(cb.best_model_path)
    assert (best["epoch"], best["global_step"]) == (3, 16)
    assert best["callbacks"][cb.state_key]["best_model_path"] == cb.best_model_path
    assert ScriptedVal.load_from_checkpoint(cb.best_model_path).hparams["values"] == values
    last = load_checkpoint(folder / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (3, 16)  # written with the last saved file


def test_real_fit_default_dir_under_logger_version(tmp_path: Path) -> None:
    from fulmen.loggers import CSVLogger

    cb = ModelCheckpoint()
    trainer = _real_trainer(tmp_path, [cb], epochs=2, logger=CSVLogger(tmp_path / "logs"))
    trainer.fit(ScriptedVal([1.0, 1.0]), *_loaders())
    assert cb.dirpath == str(tmp_path / "logs" / "lightning_logs" / "version_0" / "checkpoints")
    assert _files(Path(cb.dirpath)) == ["epoch=1-step=8.ckpt"]


def test_real_test_with_best_checkpoint_loads_best_weights(tmp_path: Path) -> None:
    cb = ModelCheckpoint(monitor="val_loss", mode="max")
    model = ScriptedVal([0.1, 0.9, 0.2])
    trainer = _real_trainer(tmp_path, [cb], epochs=3)
    train, val = _loaders()
    trainer.fit(model, train, val)
    assert cb.best_model_path.endswith("epoch=1-step=8.ckpt")
    trainer.validate(model, val, ckpt_path="best")
    saved = load_checkpoint(cb.best_model_path)["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert trainer.ckpt_path == cb.best_model_path


@pytest.mark.filterwarnings("ignore:Checkpoint directory")
def test_real_fit_resumes_from_last(tmp_path: Path) -> None:
    values = [0.5, 0.4, 0.3, 0.2]
    first = _real_trainer(tmp_path, [ModelCheckpoint(save_last=True)], epochs=2)
    first.fit(ScriptedVal(values), *_loaders())
    cb = ModelCheckpoint(save_last=True)
    second = _real_trainer(tmp_path, [cb], epochs=4)
    second.fit(ScriptedVal(values), *_loaders(), ckpt_path="last")
    assert second.ckpt_path == str(tmp_path / "checkpoints" / "last.ckpt")
    assert second.global_step == 16 and second.current_epoch == 4
    assert load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 16


def test_real_resume_keeps_logger_version_and_checkpoint_folder(tmp_path: Path) -> None:
    from fulmen.loggers import CSVLogger

    first = _real_trainer(tmp_path, [ModelCheckpoint(monitor="val_loss")], epochs=1, logger=CSVLogger(tmp_path))
    first.fit(ScriptedVal([0.5, 0.4]), *_loaders())
    resumed_from = first.checkpoint_callback.best_model_path
    cb = ModelCheckpoint(monitor="val_loss")
    second = _real_trainer(tmp_path, [cb], epochs=2, logger=CSVLogger(tmp_path))
    second.fit(ScriptedVal([0.5, 0.4]), *_loaders(), ckpt_path=resumed_from)
    folder = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    assert second.logger.version == 0 and cb.dirpath == str(folder)
    assert _files(tmp_path / "lightning_logs") == ["version_0"]
    # the better epoch replaced the top-1 entry, but the file resumed from is never deleted
    assert cb.best_model_path == str(folder / "epoch=1-step=8.ckpt")
    assert _files(folder) == ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt"]


@pytest.mark.parametrize("monitor", [None, "val_loss"])
def test_save_last_link_never_dangles_when_its_old_target_is_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, monitor: str | None
) -> None:
    """Issue 16.4: a kill between deleting the superseded top-k file and moving the link must
    not leave last.ckpt dangling, so the link moves first. Every deletion checks that no link
    in the folder still points at the file it removes."""
    from fulmen.callbacks import checkpoint_files

    real_remove = checkpoint_files._remove_if_present
    dangling: list[str] = []

    def remove_checked(filepath: str) -> None:
        for entry in tmp_path.iterdir():
            if entry.is_symlink() and (tmp_path / os.readlink(entry)).resolve() == Path(filepath).resolve():
                dangling.append(f"{entry.name} -> {os.readlink(entry)} while deleting {Path(filepath).name}")
        real_remove(filepath)

    monkeypatch.setattr(checkpoint_files, "_remove_if_present", remove_checked)
    cb = ModelCheckpoint(dirpath=tmp_path, save_last="link", save_top_k=1, every_n_train_steps=1, monitor=monitor,
                         mode="max")  # fmt: skip
    trainer = FakeTrainer(tmp_path)
    trainer.callback_metrics = {"val_loss": torch.tensor(0.0)}
    cb.setup(trainer, None, "fit")  # type: ignore[arg-type]
    for step in range(1, 5):
        trainer.global_step = step
        trainer.callback_metrics = {"val_loss": torch.tensor(float(step))}  # each step a new best
        cb.on_train_batch_end(trainer, None, None, None, 0)  # type: ignore[arg-type]
    assert dangling == []
    last = tmp_path / "last.ckpt"
    assert last.is_symlink() and load_checkpoint(last)["global_step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir() if not p.is_symlink()) == [Path(cb.best_model_path).name]
