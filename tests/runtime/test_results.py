"""self.log semantics: defaults per hook, forked names, weighting, reductions, routing."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen as pl
from fulmen.errors import MisconfigurationException
from fulmen.runtime.results import ResultCollection, extract_batch_size
from tests.core.models import BoringModel, RandomDataset

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


class MemoryLogger:
    """Records what the Trainer sends to a logger (duck-typed Lightning Logger)."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.hparams: list[dict] = []
        self.finalized: list[str] = []
        self.save_dir = self.log_dir = "."

    def log_metrics(self, metrics, step):
        self.metrics.append((step, dict(metrics)))

    def log_hyperparams(self, params):
        self.hparams.append(dict(params))

    def save(self):
        pass

    def finalize(self, status):
        self.finalized.append(status)


def _collection() -> ResultCollection:
    return ResultCollection("validate", lambda t, op: t)


def test_batch_size_weighted_mean_and_other_reductions() -> None:
    res = _collection()
    kwargs = dict(prog_bar=False, logger=True, on_step=None, on_epoch=None, enable_graph=False, sync_dist=False,
                  add_dataloader_idx=True, rank_zero_only=False)  # fmt: skip
    for value, bs in ((1.0, 1), (4.0, 3)):
        res.new_batch(torch.zeros(bs, 2))
        res.log("mean", value, reduce_fx="mean", batch_size=None, **kwargs)
        res.log("sum", value, reduce_fx="sum", batch_size=None, **kwargs)
        res.log("max", value, reduce_fx=torch.max, batch_size=None, **kwargs)
        res.log("min", value, reduce_fx="min", batch_size=None, **kwargs)
        res.log("median", value, reduce_fx=torch.median, batch_size=None, **kwargs)
        res.log("given", value, reduce_fx="mean", batch_size=1 if value == 1.0 else 1, **kwargs)
    callback, log, _ = res.epoch_metrics()
    assert callback["mean"].item() == pytest.approx((1 * 1 + 4 * 3) / 4)
    assert callback["sum"].item() == 5.0
    assert callback["max"].item() == 4.0 and callback["min"].item() == 1.0
    assert callback["median"].item() == 1.0
    assert callback["given"].item() == 2.5
    assert set(log) == set(callback)


def test_extract_batch_size_follows_the_first_tensor() -> None:
    assert extract_batch_size((torch.zeros(5, 3), torch.zeros(7))) == 5
    assert extract_batch_size({"x": [torch.zeros(4)]}) == 4
    assert extract_batch_size(torch.tensor(3.0)) == 1


def test_forked_names_defaults_and_metric_dicts_match_lightning() -> None:
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            self.log("default_step_only", float(batch_idx))
            self.log("both", float(batch_idx), on_step=True, on_epoch=True, prog_bar=True)
            return out

        def validation_step(self, batch, batch_idx):
            self.log("val", float(batch_idx + 1))

        def on_train_epoch_end(self):
            self.log("epoch_hook", 7.0)

    logger = MemoryLogger()
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=2, num_sanity_val_steps=0,
                         log_every_n_steps=2, logger=logger, **QUIET)  # fmt: skip
    trainer.fit(Model())
    cb = {k: v.item() for k, v in trainer.callback_metrics.items()}
    assert cb == {
        "default_step_only": 3.0, "both": 1.5, "both_step": 3.0, "both_epoch": 1.5, "val": 1.5, "epoch_hook": 7.0,
    }  # fmt: skip
    assert trainer.progress_bar_metrics == {"both_step": 3.0, "both_epoch": 1.5}
    steps = [(step, sorted(m)) for step, m in logger.metrics]
    assert steps == [
        (1, ["both_step", "default_step_only", "epoch"]),
        (3, ["both_step", "default_step_only", "epoch"]),
        (3, ["epoch", "val"]),  # validation at the end of the epoch, before the step counter moves
        (3, ["both_epoch", "epoch", "epoch_hook"]),
    ]
    # like Lightning 2.x, "epoch" goes to the loggers but not into trainer.logged_metrics
    assert set(trainer.logged_metrics) == {"both_step", "default_step_only", "val", "both_epoch", "epoch_hook"}
    assert logger.finalized == ["success"]


def test_logged_metrics_follow_every_batch_even_without_a_logger() -> None:
    seen = []

    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log("a", float(batch_idx))
            return super().training_step(batch, batch_idx)

        def on_train_batch_end(self, outputs, batch, batch_idx):
            seen.append(dict(self.trainer.logged_metrics))

    trainer = pl.Trainer(max_steps=4, limit_val_batches=0, logger=False, log_every_n_steps=2, **QUIET)
    trainer.fit(Model())
    # Lightning 2.6: logged_metrics are kept without loggers and updated after every batch's hooks
    assert [m.get("a") for m in seen] == [None, 0.0, 1.0, 2.0]
    assert trainer.logged_metrics == {"a": 3.0}


def test_test_returns_one_dict_per_dataloader_with_dataloader_idx_suffixes() -> None:
    class Model(BoringModel):
        def test_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("loss", float(dataloader_idx))
            self.log("both", 1.0, on_step=True, on_epoch=True)
            if dataloader_idx == 0:  # one name from two loaders would be an error (Lightning)
                self.log("shared", 5.0, add_dataloader_idx=False)

    loaders = [DataLoader(RandomDataset(32, 8), batch_size=4), DataLoader(RandomDataset(32, 8), batch_size=4)]
    trainer = pl.Trainer(logger=False, **QUIET)
    results = trainer.test(Model(), dataloaders=loaders, verbose=False)
    # the _step/_epoch suffix goes before /dataloader_idx_N; only the epoch values are returned
    assert results == [
        {"loss/dataloader_idx_0": 0.0, "both_epoch/dataloader_idx_0": 1.0, "shared": 5.0},
        {"loss/dataloader_idx_1": 1.0, "both_epoch/dataloader_idx_1": 1.0, "shared": 5.0},
    ]

    class Mixed(BoringModel):
        def test_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("shared", 5.0, add_dataloader_idx=False)

    with pytest.raises(MisconfigurationException, match="from dataloader 0 and from dataloader 1"):
        trainer.test(Mixed(), dataloaders=loaders, verbose=False)

    class NoIdx(BoringModel):
        def test_step(self, batch, batch_idx):
            pass

    with pytest.raises(RuntimeError, match="no dataloader_idx argument in test_step"):
        trainer.test(NoIdx(), dataloaders=loaders, verbose=False)


@pytest.mark.parametrize("value", [torch.zeros(3), "text", {"a": 1}])
def test_logging_a_non_scalar_is_a_clear_error(value) -> None:
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log("bad", value)
            return super().training_step(batch, batch_idx)

    with pytest.raises(ValueError, match="self.log\\('bad', value\\).*\n.*HINT"):
        pl.Trainer(max_steps=1, logger=False, **QUIET).fit(Model())


def test_no_host_sync_per_step_unless_a_value_is_reported(monkeypatch) -> None:
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            self.log("loss", out["loss"])  # logger=True, prog_bar=False
            return out

    calls = []
    original = torch.Tensor.item
    package_dir = str(Path(pl.__file__).resolve().parent) + os.sep  # not "fulmen" in the path: the clone's folder may be named so

    def counting_item(self):
        if str(Path(sys._getframe(1).f_code.co_filename).resolve()).startswith(package_dir):  # DataLoader draws its own seed once per epoch
            calls.append(1)
        return original(self)

    logger = MemoryLogger()
    trainer = pl.Trainer(max_steps=20, limit_val_batches=0, logger=logger, log_every_n_steps=10, **QUIET)
    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    trainer.fit(Model())
    # two logger intervals (steps 9 and 19), one tensor each
    assert len(calls) == 2
    assert [step for step, _ in logger.metrics] == [9, 19]


def test_sync_dist_reduces_through_the_strategy() -> None:
    ops = []

    def reduce(tensor, op):
        ops.append(op)
        return tensor * 2  # as if a second rank had logged the same value

    res = ResultCollection("validate", reduce)
    res.new_batch(torch.zeros(2, 1))
    common = dict(prog_bar=False, logger=True, enable_graph=False, add_dataloader_idx=True, batch_size=None,
                  rank_zero_only=False)  # fmt: skip
    res.log("m", 3.0, on_step=False, on_epoch=True, reduce_fx="mean", sync_dist=True, **common)
    res.log("s", 3.0, on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=True, **common)
    res.log("local", 3.0, on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=False, **common)
    callback, _, _ = res.epoch_metrics()
    assert callback["m"].item() == 3.0  # (sum of value*weight) / (sum of weights), both reduced
    assert callback["s"].item() == 6.0 and callback["local"].item() == 3.0
    assert ops == ["sum", "sum", "sum"]


def test_reload_dataloaders_every_n_epochs_calls_the_hook_again() -> None:
    calls = []

    class Model(BoringModel):
        def train_dataloader(self):
            calls.append(self.current_epoch)
            return super().train_dataloader()

    trainer = pl.Trainer(max_epochs=4, limit_train_batches=1, limit_val_batches=0,
                         reload_dataloaders_every_n_epochs=2, logger=False, **QUIET)  # fmt: skip
    trainer.fit(Model())
    assert calls == [0, 2]


def test_a_logged_step_value_becomes_the_logger_step() -> None:
    class Model(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("acc", 0.5)
            self.log("step", 100.0)

    logger = MemoryLogger()
    trainer = pl.Trainer(limit_val_batches=2, logger=logger, **QUIET)
    trainer.validate(Model(), verbose=False)
    assert logger.metrics == [(100, {"acc": 0.5})]


def test_values_logged_in_on_train_start_count_towards_the_first_epoch() -> None:
    class Model(BoringModel):
        def on_train_start(self):
            self.log("start", 5.0)

    trainer = pl.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False, **QUIET)
    trainer.fit(Model())
    assert trainer.callback_metrics["start"].item() == 5.0


@pytest.mark.parametrize(("hook", "kwargs"), [("on_fit_start", {}), ("on_train_end", {}),
                                              ("on_train_epoch_end", {"on_step": True})])  # fmt: skip
def test_logging_where_lightning_refuses_it_is_an_error(hook, kwargs) -> None:
    class Model(BoringModel):
        pass

    setattr(Model, hook, lambda self: self.log("x", 1.0, **kwargs))
    trainer = pl.Trainer(max_steps=1, limit_val_batches=0, logger=False, **QUIET)
    with pytest.raises(MisconfigurationException, match=f"inside {hook}"):
        trainer.fit(Model())


def test_epoch_values_are_visible_to_every_on_train_epoch_end_hook() -> None:
    """Lightning marks the epoch end before the hooks: plain callbacks see `<name>_epoch` too."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import fulmen as pl

    seen: list[tuple[set[str], set[str]]] = []

    class Model(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            loss = self.layer(batch[0]).pow(2).mean()
            self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Recorder(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            seen.append((set(trainer.callback_metrics), set(trainer.progress_bar_metrics)))

    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, callbacks=[Recorder()])
    trainer.fit(Model(), DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4))
    callback_keys, pbar_keys = seen[0]
    assert {"train_loss", "train_loss_step", "train_loss_epoch"} <= callback_keys
    assert {"train_loss_step", "train_loss_epoch"} <= pbar_keys


def test_epoch_metrics_of_one_loader_hold_only_what_was_logged_while_it_ran() -> None:
    res = _collection()
    kwargs = dict(prog_bar=True, logger=True, on_step=None, on_epoch=None, reduce_fx="mean", enable_graph=False,
                  sync_dist=False, add_dataloader_idx=True, batch_size=None, rank_zero_only=False)  # fmt: skip
    for loader in (0, 1, None):  # None: logged outside the loaders' steps (an epoch-end hook)
        res.dataloader_idx = loader
        res.new_batch(torch.zeros(2, 2))
        res.log("v", float(-1 if loader is None else loader), **kwargs)
    for loader, expected in ((0, {"v/dataloader_idx_0": 0.0}), (1, {"v/dataloader_idx_1": 1.0}), (None, {"v": -1.0})):
        assert all({k: v.item() for k, v in d.items()} == expected for d in res.epoch_metrics(loader)), loader
    callback, _, _ = res.epoch_metrics()
    assert sorted(callback) == ["v", "v/dataloader_idx_0", "v/dataloader_idx_1"]
