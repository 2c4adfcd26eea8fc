"""evaluation_loop: the bounded iteration shared by evaluation and predict, and what the
``on_{validation,test}_epoch_end`` hooks see in the trainer's metric dicts."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader

import fulmen as pl
from fulmen.runtime.evaluation_loop import limited_batches
from tests.core.models import TRAINER_QUIET, BoringModel, RandomDataset


class CountingLoader:
    """An iterable that counts how many batches were asked of it."""

    def __init__(self, n: int) -> None:
        self.n, self.asked = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.asked += 1
            yield i


def test_stops_at_the_limit_without_asking_for_more() -> None:
    loader = CountingLoader(10)
    assert list(limited_batches(loader, 3)) == [(0, 0), (1, 1), (2, 2)]
    assert loader.asked == 3


def test_stops_at_the_end_of_a_short_loader_and_accepts_an_infinite_limit() -> None:
    assert list(limited_batches(CountingLoader(2), 5)) == [(0, 0), (1, 1)]
    assert list(limited_batches(CountingLoader(2), float("inf"))) == [(0, 0), (1, 1)]
    assert list(limited_batches(CountingLoader(2), 0)) == []


# ---- what the on_{validation,test}_epoch_end hooks see (issue #10, defect 1) ----------------


def _loader(batches: int) -> DataLoader:
    return DataLoader(RandomDataset(32, 2 * batches), batch_size=2)


class CraftedValues(BoringModel):
    """Logs ``batch_idx + 10 * epoch (+ 100 * loader)``, so the epoch mean names its epoch and loader;
    records what the module's epoch-end hooks read."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, float] | str] = []

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        value = float(batch_idx + 10 * self.current_epoch + 100 * dataloader_idx)
        self.log("val_loss", value, prog_bar=True)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        self.log("test_loss", float(batch_idx + 100 * dataloader_idx))

    def on_validation_epoch_end(self) -> None:
        label = "sanity" if self.trainer.sanity_checking else f"epoch_{self.current_epoch}"
        self.seen.append(label)
        self.seen.append({k: float(v) for k, v in self.trainer.callback_metrics.items()})
        self.log("module_val_end", float(self.current_epoch))

    def on_test_epoch_end(self) -> None:
        self.seen.append({k: float(v) for k, v in self.trainer.callback_metrics.items()})


class MetricReader(pl.Callback):
    """A user callback written like EarlyStopping: reads the three metric dicts at epoch end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[tuple[float | None, float | None, float | None]] = []

    def _read(self, trainer: pl.Trainer) -> None:
        self.seen.append(tuple(  # type: ignore[arg-type]
            None if d.get(self.name) is None else float(d[self.name])
            for d in (trainer.callback_metrics, trainer.logged_metrics, trainer.progress_bar_metrics)
        ))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._read(trainer)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._read(trainer)


def _fit(model: pl.LightningModule, callbacks: list[pl.Callback], val: object, **flags: object) -> pl.Trainer:
    flags = {"max_epochs": 3, "num_sanity_val_steps": 0, "limit_train_batches": 2, **flags}
    trainer = pl.Trainer(callbacks=callbacks, **TRAINER_QUIET, **flags)
    trainer.fit(model, _loader(2), val)
    return trainer


def test_module_reads_this_epochs_validation_value_in_on_validation_epoch_end() -> None:
    model = CraftedValues()
    _fit(model, [], _loader(3))
    # mean of batch_idx 0, 1, 2 plus 10 * epoch: the epoch that just ended, from the first epoch on
    assert [d["val_loss"] for d in model.seen[1::2]] == [1.0, 11.0, 21.0]


def test_callback_reads_this_epochs_value_in_every_metric_dict() -> None:
    reader = MetricReader("val_loss")
    _fit(CraftedValues(), [reader], _loader(3))
    # (callback_metrics, logged_metrics, progress_bar_metrics), logged with prog_bar=True
    assert reader.seen == [(1.0, 1.0, 1.0), (11.0, 11.0, 11.0), (21.0, 21.0, 21.0)]


def test_values_logged_in_epoch_end_hooks_are_published_after_them() -> None:
    class LogsAtEpochEnd(pl.Callback):
        def on_validation_epoch_end(self, trainer, pl_module) -> None:
            pl_module.log("callback_val_end", float(50 + trainer.current_epoch))

    model = CraftedValues()
    after = MetricReader("module_val_end")

    class AtValidationEnd(pl.Callback):
        def on_validation_end(self, trainer, pl_module) -> None:
            after._read(trainer)

    trainer = _fit(model, [LogsAtEpochEnd(), AtValidationEnd()], _loader(3), max_epochs=2)
    # the module's hook sees what the callback logged just before it, in the same epoch
    assert [d["callback_val_end"] for d in model.seen[1::2]] == [50.0, 51.0]
    # what the module's hook logged is there for on_validation_end and after fit
    assert after.seen == [(0.0, 0.0, None), (1.0, 1.0, None)]
    assert float(trainer.callback_metrics["module_val_end"]) == 1.0


def test_sanity_check_hooks_see_the_sanity_values_and_fit_starts_without_them() -> None:
    model = CraftedValues()
    at_train_start: list[list[str]] = []

    class TrainStart(pl.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            at_train_start.append(sorted(trainer.callback_metrics))

    _fit(model, [TrainStart()], _loader(3), num_sanity_val_steps=2, max_epochs=1)
    assert model.seen[0] == "sanity" and model.seen[1]["val_loss"] == 0.5  # batches 0 and 1 of epoch 0
    assert at_train_start == [[]]  # sanity values are discarded (Lightning)
    assert model.seen[2:] == ["epoch_0", {"val_loss": 1.0}]


def test_validate_and_test_hooks_see_their_epoch_values() -> None:
    model = CraftedValues()
    trainer = pl.Trainer(**TRAINER_QUIET)
    trainer.validate(model, _loader(3), verbose=False)
    reader = MetricReader("test_loss")
    trainer = pl.Trainer(callbacks=[reader], **TRAINER_QUIET)
    trainer.test(model, _loader(5), verbose=False)
    assert model.seen[:2] == ["epoch_0", {"val_loss": 1.0}]
    assert model.seen[2] == {"test_loss": 2.0}
    assert reader.seen == [(2.0, 2.0, None)]


def test_two_loaders_publish_each_loaders_values_when_it_ends() -> None:
    at_second_loader: list[dict[str, float]] = []

    class SecondLoaderStart(pl.Callback):
        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
            if dataloader_idx == 1 and batch_idx == 0:
                at_second_loader.append({k: float(v) for k, v in trainer.callback_metrics.items()})

    model = CraftedValues()
    _fit(model, [SecondLoaderStart()], [_loader(3), _loader(1)], max_epochs=2)
    assert at_second_loader == [
        {"val_loss/dataloader_idx_0": 1.0},
        # the second loader's entry is still last epoch's: it has not ended yet
        {"val_loss/dataloader_idx_0": 11.0, "val_loss/dataloader_idx_1": 100.0, "module_val_end": 0.0},
    ]
    assert model.seen[1::2] == [
        {"val_loss/dataloader_idx_0": 1.0, "val_loss/dataloader_idx_1": 100.0},
        {"val_loss/dataloader_idx_0": 11.0, "val_loss/dataloader_idx_1": 110.0, "module_val_end": 0.0},
    ]


@pytest.mark.parametrize("fn", ["validate", "test"])
def test_a_hook_reading_a_missing_value_still_gets_a_key_error_naming_it(fn: str) -> None:
    """Nothing is invented: a name nobody logged stays absent."""

    class ReadsUnlogged(BoringModel):
        def on_validation_epoch_end(self) -> None:
            self.trainer.callback_metrics["never_logged"]

        on_test_epoch_end = on_validation_epoch_end

    with pytest.raises(KeyError, match="never_logged"):
        getattr(pl.Trainer(**TRAINER_QUIET), fn)(ReadsUnlogged(), _loader(1), verbose=False)


def test_sanity_check_shows_step_values_while_it_runs_and_sends_none_to_the_loggers() -> None:
    class Recorder:
        """A duck-typed logger that keeps every metrics dict it is sent."""

        save_dir = log_dir = "."
        name, version = "recorder", 0

        def __init__(self) -> None:
            self.sent: list[dict[str, float]] = []

        def log_metrics(self, metrics, step):
            self.sent.append(dict(metrics))

        def log_hyperparams(self, params): ...
        def save(self): ...
        def finalize(self, status): ...

    class StepValue(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("val_both", float(batch_idx + 1), on_step=True, on_epoch=True, prog_bar=True)

        def on_validation_epoch_end(self) -> None:
            if self.trainer.sanity_checking:
                seen.append(dict(self.trainer.progress_bar_metrics))
                seen.append({k: float(v) for k, v in self.trainer.logged_metrics.items()})
                sent_in_sanity.extend(recorder.sent)

    seen: list[dict[str, float]] = []
    sent_in_sanity: list[dict[str, float]] = []
    recorder = Recorder()
    quiet = {**TRAINER_QUIET, "logger": recorder}
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=1, num_sanity_val_steps=2, **quiet)
    trainer.fit(StepValue(), _loader(1), _loader(3))
    # the last sanity batch's step value and the sanity epoch mean, as Lightning's progress bar has them
    assert seen == [{"val_both_step": 2.0, "val_both_epoch": 1.5}] * 2
    assert sent_in_sanity == []
    assert recorder.sent[-1]["val_both_epoch"] == 2.0  # the real validation (3 batches) is logged
