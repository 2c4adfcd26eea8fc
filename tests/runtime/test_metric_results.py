"""A torchmetrics Metric in self.log: step value from forward(), one compute() per epoch, reset
after it (fulmen.runtime.metric_results and its use in ResultCollection and the loops)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.errors import MisconfigurationException
from fulmen.runtime.metric_results import MetricEntry
from fulmen.runtime.results import ResultCollection
from tests.core.models import TRAINER_QUIET

torchmetrics = pytest.importorskip("torchmetrics")

LOG = dict(prog_bar=False, logger=True, enable_graph=False, sync_dist=False, add_dataloader_idx=True,
           batch_size=None, rank_zero_only=False, reduce_fx="mean")  # fmt: skip


class CountingMean(torchmetrics.MeanMetric):
    """A MeanMetric that counts its real compute() calls (forward() computes once per batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.computes = 0

    def compute(self) -> torch.Tensor:
        self.computes += 1
        return super().compute()


def _training_collection() -> ResultCollection:
    results = ResultCollection("train", lambda t, op: pytest.fail("a metric is never reduced by the strategy"))
    results.set_defaults(on_step=True, on_epoch=False)
    return results


def test_step_value_is_what_forward_returned_and_epoch_value_is_compute() -> None:
    results, metric = _training_collection(), CountingMean()
    for value in (1.0, 2.0, 6.0):
        results.new_batch(None)
        metric(value)
        results.log("m", metric, on_step=True, on_epoch=True, **LOG)
        _, logged, _ = results.step_metrics()
        assert logged == {"m_step": torch.tensor(value)}
    computes = metric.computes
    for _ in range(3):  # every epoch-end hook reads the values: compute() runs once
        callback, logged, _ = results.epoch_metrics()
    assert logged == {"m_epoch": torch.tensor(3.0)}
    assert callback == {"m": torch.tensor(3.0), "m_epoch": torch.tensor(3.0)}
    assert metric.computes == computes + 1


def test_update_only_logs_no_step_value_but_an_epoch_value() -> None:
    results, metric = _training_collection(), torchmetrics.SumMetric()
    for value in (1.0, 2.0):
        results.new_batch(None)
        metric.update(value)
        results.log("s", metric, on_step=True, on_epoch=True, **LOG)
        assert not results.logged_this_batch
        assert results.step_metrics() == ({}, {}, {})
    assert results.epoch_metrics()[1] == {"s_epoch": torch.tensor(3.0)}


def test_logging_again_after_an_epoch_read_computes_again() -> None:
    results, metric = _training_collection(), CountingMean()
    results.new_batch(None)
    metric.update(2.0)
    results.log("m", metric, on_step=False, on_epoch=True, **LOG)
    assert results.epoch_metrics()[1] == {"m": torch.tensor(2.0)}
    metric.update(4.0)  # e.g. logged again from an epoch-end hook
    results.log("m", metric, on_step=False, on_epoch=True, **LOG)
    assert results.epoch_metrics()[1] == {"m": torch.tensor(3.0)}
    assert metric.computes == 2


def test_reset_resets_the_metric_and_forgets_the_entry() -> None:
    results, metric = _training_collection(), torchmetrics.SumMetric()
    results.new_batch(None)
    metric(5.0)
    results.log("s", metric, on_step=True, on_epoch=True, **LOG)
    results.reset()
    assert metric.update_count == 0 and results.entries == {}
    assert results.epoch_metrics() == ({}, {}, {})


def test_metric_entry_refuses_a_non_tensor_compute() -> None:
    class Pair(torchmetrics.SumMetric):
        def compute(self) -> Any:
            return {"a": super().compute()}

    entry = MetricEntry("pair", Pair(), prog_bar=False, logger=True, on_step=False, on_epoch=True, enable_graph=False)
    entry.metric.update(1.0)
    entry.record(entry.metric, 1)
    with pytest.raises(ValueError, match=r"`\.compute\(\)` return of the metric logged as 'pair' must be a tensor"):
        entry.epoch_value()


def test_custom_reduce_fx_and_a_metric_collection_are_refused() -> None:
    results = _training_collection()
    results.new_batch(None)
    with pytest.raises(MisconfigurationException, match="a metric reduces itself"):
        results.log("m", torchmetrics.MeanMetric(), on_step=None, on_epoch=None, **{**LOG, "reduce_fx": lambda x: x})
    collection = torchmetrics.MetricCollection({"a": torchmetrics.SumMetric()})
    with pytest.raises(ValueError, match="HINT: self.log_dict"):
        results.log("c", collection, on_step=None, on_epoch=None, **LOG)


def test_a_name_keeps_its_kind_within_an_epoch() -> None:
    results = _training_collection()
    results.new_batch(None)
    results.log("x", 1.0, on_step=None, on_epoch=None, **LOG)
    with pytest.raises(MisconfigurationException, match="a number and then with a torchmetrics Metric"):
        results.log("x", torchmetrics.SumMetric(), on_step=None, on_epoch=None, **LOG)


def _classification(n: int, correct: int, seed: int) -> TensorDataset:
    """``n`` samples whose stored prediction is right for exactly the first ``correct``."""
    target = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(seed))
    preds = target.clone()
    preds[correct:] = 1 - preds[correct:]
    return TensorDataset(preds.float().unsqueeze(1), target)


class Classifier(pl.LightningModule):
    """Logs the accuracy of the predictions stored in the data (the model only makes a loss)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.train_acc = torchmetrics.classification.BinaryAccuracy()
        self.val_acc = torchmetrics.classification.BinaryAccuracy()
        self.seen: list[tuple[str, int, float]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        preds, target = batch
        self.train_acc(preds.squeeze(1), target)
        self.log("train_acc", self.train_acc, on_step=True, on_epoch=True)
        return self.layer(preds).pow(2).mean()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        preds, target = batch
        self.val_acc.update(preds.squeeze(1), target)
        self.log("val_acc", self.val_acc)

    def on_train_epoch_end(self) -> None:
        self.seen.append(("train", self.current_epoch, float(self.trainer.callback_metrics["train_acc_epoch"])))

    def on_validation_epoch_end(self) -> None:
        self.seen.append(("val", self.current_epoch, float(self.trainer.callback_metrics["val_acc"])))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_epoch_values_are_the_accuracy_of_each_epoch_and_the_metrics_reset_between_epochs() -> None:
    model = Classifier()
    trainer = pl.Trainer(max_epochs=2, num_sanity_val_steps=0, **TRAINER_QUIET)
    # 12 training samples, 9 right, in uneven batches of 5: a mean of batch accuracies would differ
    trainer.fit(model, DataLoader(_classification(12, 9, 0), batch_size=5), DataLoader(_classification(8, 2, 1)))
    assert model.seen == [("val", 0, 0.25), ("train", 0, 0.75), ("val", 1, 0.25), ("train", 1, 0.75)]
    assert model.train_acc.update_count == 0 and model.val_acc.update_count == 0


def test_validate_returns_the_computed_metric() -> None:
    model = Classifier()
    trainer = pl.Trainer(**TRAINER_QUIET)
    (result,) = trainer.validate(model, DataLoader(_classification(10, 7, 2), batch_size=3), verbose=False)
    assert result == {"val_acc": pytest.approx(0.7)}
    assert model.val_acc.update_count == 0


def test_a_metric_that_is_not_a_submodule_is_refused_unless_named() -> None:
    class Loose(Classifier):
        def __init__(self, named: bool) -> None:
            super().__init__()
            self.named = named
            object.__setattr__(self, "loose", torchmetrics.SumMetric())  # not registered as a submodule

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.loose.update(1.0)
            self.log("loose", self.loose, on_epoch=True, metric_attribute="loose" if self.named else None)
            return super().training_step(batch, batch_idx)

    data = DataLoader(_classification(4, 4, 0), batch_size=2)
    with pytest.raises(MisconfigurationException, match="not an attribute of Loose"):
        pl.Trainer(max_epochs=1, **TRAINER_QUIET).fit(Loose(named=False), data)
    trainer = pl.Trainer(max_epochs=1, **TRAINER_QUIET)
    trainer.fit(Loose(named=True), data)
    assert float(trainer.callback_metrics["loose_epoch"]) == 2.0


class Counting(pl.LightningModule):
    """Sums the batch values in a persistent and a default (non-persistent) metric."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.kept = torchmetrics.SumMetric()
        self.kept.persistent(True)
        self.dropped = torchmetrics.SumMetric()
        self.epoch_values: list[tuple[int, float, float]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        (x,) = batch
        self.kept.update(x.sum())
        self.dropped.update(x.sum())
        self.log("kept", self.kept, on_epoch=True)
        self.log("dropped", self.dropped, on_epoch=True)
        return self.layer(x).pow(2).mean()

    def on_train_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        self.epoch_values.append((self.current_epoch, float(metrics["kept_epoch"]), float(metrics["dropped_epoch"])))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class SaveMidEpoch(pl.Callback):
    def __init__(self, path: Any) -> None:
        self.path = path

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (1, 1):
            trainer.save_checkpoint(self.path)


def test_a_persistent_metric_resumes_mid_epoch_exactly_and_a_default_one_restarts_empty(tmp_path) -> None:
    data = DataLoader(TensorDataset(torch.arange(1.0, 7.0).unsqueeze(1)), batch_size=2)  # batch sums 3, 7, 11
    full = Counting()
    pl.Trainer(max_epochs=2, callbacks=[SaveMidEpoch(tmp_path / "mid.ckpt")], **TRAINER_QUIET).fit(full, data)
    assert full.epoch_values == [(0, 21.0, 21.0), (1, 21.0, 21.0)]
    saved = torch.load(tmp_path / "mid.ckpt", weights_only=True)["state_dict"]
    assert saved["kept.sum_value"] == 10.0 and not any(key.startswith("dropped.") for key in saved)
    resumed = Counting()
    pl.Trainer(max_epochs=2, **TRAINER_QUIET).fit(resumed, data, ckpt_path=tmp_path / "mid.ckpt")
    assert resumed.epoch_values == [(1, 21.0, 11.0)]  # the dropped metric lost the epoch's first 2 batches
