"""Lightning 0.x/1.x Trainer flags: each gives one warning naming the modern spelling and becomes
that modern setting, or fails with a clear error where fulmen has no counterpart."""

from __future__ import annotations

import inspect
import os
import re
import warnings
from typing import Any

import pytest

import fulmen as pl
from fulmen.errors import MisconfigurationException
from fulmen.runtime.trainer_flags import normalize_flags
from tests.core.models import TRAINER_QUIET, BoringModel


def _default_flags() -> dict[str, Any]:
    params = inspect.signature(pl.Trainer.__init__).parameters
    return {n: p.default for n, p in params.items() if n not in ("self", "legacy_flags")}


def _translate(given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(flags after translation, extras, the DeprecationWarnings' texts) for ``Trainer(**given)``."""
    flags = _default_flags()
    legacy = {k: v for k, v in given.items() if k not in flags}
    flags.update({k: v for k, v in given.items() if k in flags})  # a legacy value of a modern flag
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extras = normalize_flags(flags, legacy, list(flags))
    return flags, extras, [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]


# legacy flag and value -> (text the warning must name, modern flags it must set, extra callbacks: type, attr, value)
CASES: dict[str, tuple[dict[str, Any], str, dict[str, Any], tuple[str, str, Any] | None]] = {
    "log_save_interval": ({"log_save_interval": 100}, "flush_secs", {}, None),
    "row_log_interval": ({"row_log_interval": 7}, "use log_every_n_steps", {"log_every_n_steps": 7}, None),
    "add_log_row_interval": ({"add_log_row_interval": 3}, "use log_every_n_steps", {"log_every_n_steps": 3}, None),
    "weights_summary_none": ({"weights_summary": None}, "enable_model_summary=False",
                             {"enable_model_summary": False}, None),
    "weights_summary_full": ({"weights_summary": "full"}, r"ModelSummary\(max_depth=-1\)", {},
                             ("ModelSummary", "_max_depth", -1)),
    "weights_summary_top": ({"weights_summary": "top"}, r"ModelSummary\(max_depth=1\)", {},
                            ("ModelSummary", "_max_depth", 1)),
    "process_position": ({"process_position": 2}, r"TQDMProgressBar\(process_position=2\)", {},
                         ("TQDMProgressBar", "process_position", 2)),
    "default_save_path": ({"default_save_path": "/tmp/x"}, "use default_root_dir", {"default_root_dir": "/tmp/x"}, None),
    "nb_sanity_val_steps": ({"nb_sanity_val_steps": 0}, "use num_sanity_val_steps", {"num_sanity_val_steps": 0}, None),
    "replace_sampler_ddp": ({"replace_sampler_ddp": False}, "use use_distributed_sampler",
                            {"use_distributed_sampler": False}, None),
    "amp_backend_native": ({"amp_backend": "native"}, "precision='16-mixed'", {"precision": "32-true"}, None),
    "amp_backend_apex": ({"amp_backend": "apex"}, "use precision='16-mixed' instead. apex is not supported", {"precision": "32-true"}, None),
    "amp_level": ({"amp_level": "O2"}, "no effect in fulmen: it was apex's", {"precision": "32-true"}, None),
    "use_amp": ({"use_amp": True}, "precision='16-mixed'", {"precision": "16-mixed"}, None),
    "use_amp_off": ({"use_amp": False}, "precision='16-mixed'", {"precision": "32-true"}, None),
    "stochastic_weight_avg_off": ({"stochastic_weight_avg": False}, r"StochasticWeightAveraging\(swa_lrs=\.\.\.\)",
                                  {}, None),
    "tpu_cores_off": ({"tpu_cores": None}, "no TPUs", {}, None),
    "ipus_off": ({"ipus": 0}, "no Graphcore IPUs", {}, None),
    "auto_lr_find": ({"auto_lr_find": True}, r"use Tuner\(trainer\)\.lr_find\(model\)", {}, None),
    "auto_scale_batch_size": ({"auto_scale_batch_size": "binsearch"}, r"use Tuner\(trainer\)\.scale_batch_size\(model\)",
                              {}, None),
    "auto_lr_find_off": ({"auto_lr_find": False}, "it is off, and trainer.tune.model. does nothing", {}, None),
    "distributed_backend_dp": ({"distributed_backend": "dp"},
                               "use strategy='ddp' instead. DataParallel .'dp'. is gone.*DDP over the same devices",
                               {"strategy": "ddp"}, None),
    "distributed_backend_ddp2": ({"distributed_backend": "ddp2"}, "DDP over the same devices", {"strategy": "ddp"}, None),
    "distributed_backend_ddp_cpu": ({"distributed_backend": "ddp_cpu"}, "strategy='ddp', accelerator='cpu'",
                                    {"strategy": "ddp", "accelerator": "cpu"}, None),
    "distributed_backend_ddp": ({"distributed_backend": "ddp"}, "strategy='ddp'", {"strategy": "ddp"}, None),
    "gpus_list": ({"gpus": [0, 1]}, "accelerator='gpu', devices=N", {"accelerator": "gpu", "devices": [0, 1]}, None),
    "gpus_string": ({"gpus": "0,1"}, "accelerator='gpu', devices=N", {"accelerator": "gpu", "devices": "0,1"}, None),
    "gpus_zero_string": ({"gpus": "0"}, "accelerator='gpu', devices=N", {"accelerator": "auto", "devices": "auto"}, None),
    "accumulate_dict": ({"accumulate_grad_batches": {0: 1, 2: 3}}, r"GradientAccumulationScheduler\(\{0: 1, 2: 3\}\)",
                        {"accumulate_grad_batches": 1}, ("GradientAccumulationScheduler", "scheduling", {0: 1, 2: 3})),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_legacy_flag_warns_once_with_its_modern_spelling_and_sets_the_modern_flag(case: str) -> None:
    legacy, warning, modern, callback = CASES[case]
    flags, extras, texts = _translate(legacy)
    assert len(texts) == 1, texts
    assert re.search(warning, texts[0]), texts[0]
    for name, value in modern.items():
        assert flags[name] == value, (name, flags[name])
    if callback is None:
        assert extras["extra_callbacks"] == []
    else:
        kind, attr, value = callback
        (made,) = extras["extra_callbacks"]
        assert type(made).__name__ == kind and getattr(made, attr) == value


@pytest.mark.parametrize(
    ("legacy", "error"),
    [
        ({"tpu_cores": 8}, r"asks for TPUs, which fulmen does not support.*\nHINT: .*accelerator='gpu'"),
        ({"ipus": 4}, r"asks for Graphcore IPUs, which fulmen does not support"),
        ({"weights_summary": "deep"}, r"expected 'top', 'full' or None"),
        ({"amp_backend": "torch"}, r"expected 'native' or 'apex'"),
    ],
)
def test_legacy_flag_without_a_fulmen_counterpart_is_a_clear_error(legacy: dict[str, Any], error: str) -> None:
    with pytest.raises(MisconfigurationException, match=error), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl.Trainer(**legacy, **TRAINER_QUIET)


def test_legacy_flags_reach_the_trainer_attributes(tmp_path: Any) -> None:
    with pytest.warns(DeprecationWarning):
        trainer = pl.Trainer(row_log_interval=7, nb_sanity_val_steps=0, replace_sampler_ddp=False,
                             default_save_path=str(tmp_path), weights_summary="full", process_position=1,
                             logger=False, enable_checkpointing=False)  # fmt: skip
    assert trainer.log_every_n_steps == 7 and trainer.num_sanity_val_steps == 0
    assert trainer.use_distributed_sampler is False
    assert trainer.default_root_dir == os.fspath(tmp_path)
    summaries = [c for c in trainer.callbacks if type(c).__name__ == "ModelSummary"]
    bars = [c for c in trainer.callbacks if type(c).__name__ == "TQDMProgressBar"]
    assert [s._max_depth for s in summaries] == [-1] and [b.process_position for b in bars] == [1]


def test_tune_without_tuning_flags_is_a_no_op() -> None:
    with pytest.warns(DeprecationWarning, match="does nothing"):
        quiet = pl.Trainer(auto_lr_find=False, auto_scale_batch_size=False, **TRAINER_QUIET)
    assert quiet.tune(BoringModel()) == {}
    assert pl.Trainer(**TRAINER_QUIET).tune(BoringModel()) == {}


def test_unknown_legacy_looking_flag_still_suggests_the_known_ones() -> None:
    with pytest.raises(Exception, match="weights_summary"):
        pl.Trainer(weight_summary="top", **TRAINER_QUIET)


def test_checkpoint_callback_and_early_stop_callback_objects_are_used(tmp_path: Any) -> None:
    """1.x: Trainer(checkpoint_callback=ModelCheckpoint(filepath=..., prefix=..., period=...),
    early_stop_callback=EarlyStopping(...)); files named as 1.x named them."""
    from fulmen.callbacks import EarlyStopping, ModelCheckpoint

    with pytest.warns(DeprecationWarning, match="ModelCheckpoint"):
        checkpoint = ModelCheckpoint(filepath=str(tmp_path / "ck" / "{epoch}"), save_best_only=False, prefix="run",
                                     period=2)  # fmt: skip
    stopper = EarlyStopping(monitor="val_loss", patience=100)
    with pytest.warns(DeprecationWarning, match="enable_checkpointing"):
        trainer = pl.Trainer(checkpoint_callback=checkpoint, early_stop_callback=stopper, max_epochs=4,
                             limit_train_batches=2, limit_val_batches=1, logger=False, enable_progress_bar=False,
                             enable_model_summary=False)  # fmt: skip
    assert trainer.checkpoint_callback is checkpoint and trainer.early_stopping_callback is stopper

    class Logged(BoringModel):
        def validation_step(self, batch: Any, batch_idx: int) -> Any:
            self.log("val_loss", self.loss(self(batch)))

    trainer.fit(Logged())
    assert sorted(os.listdir(tmp_path / "ck")) == ["run-epoch=1.ckpt", "run-epoch=3.ckpt"]


def test_early_stop_callback_true_and_checkpoint_callback_true_build_the_defaults() -> None:
    with pytest.warns(DeprecationWarning, match="EarlyStopping"):
        trainer = pl.Trainer(early_stop_callback=True, checkpoint_callback=True, logger=False,
                             enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    assert trainer.early_stopping_callback.monitor == "val_loss"
    assert type(trainer.checkpoint_callback).__name__ == "ModelCheckpoint"
