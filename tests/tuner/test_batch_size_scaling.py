"""The batch-size search: power and binsearch, OOM handling, limits, where the size is written."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen as pl
from fulmen.errors import MisconfigurationException
from fulmen.tuner import Tuner
from tests.tuner.models import QUIET, TunableModel, regression, same, weights


def _scale(tmp_path: Any, model: TunableModel, **kwargs: Any) -> tuple[Any, int | None]:
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=1, **QUIET)
    return trainer, Tuner(trainer).scale_batch_size(model, **kwargs)


def _trials(sizes: list[int], steps: int) -> list[int]:
    """The batch size of each trial (every trial runs ``steps`` batches, a failing one just one)."""
    out, i = [], 0
    while i < len(sizes):
        out.append(sizes[i])
        i += 1 if sizes[i] > 20 else steps
    return out


def test_power_doubles_until_out_of_memory_and_keeps_the_last_size_that_ran(tmp_path: Any) -> None:
    model = TunableModel(oom_above=20)
    before = weights(model)
    trainer, found = _scale(tmp_path, model, mode="power")
    assert found == model.batch_size == 16
    assert _trials(model.batch_sizes, 3) == [2, 4, 8, 16, 32]
    assert same(weights(model), before)
    assert trainer.global_step == 0 and trainer.state.status.value == "finished"


def test_binsearch_bisects_after_the_first_failure_and_applies_the_margin(tmp_path: Any) -> None:
    model = TunableModel(oom_above=20)
    _, found = _scale(tmp_path, model, mode="binsearch", steps_per_trial=1)
    assert model.batch_sizes == [2, 4, 8, 16, 32, 24, 20, 22, 21]
    assert found == model.batch_size == 19  # 20 ran, 21 did not; minus 5%
    model = TunableModel(oom_above=20)
    _, found = _scale(tmp_path, model, mode="binsearch", steps_per_trial=1, margin=0.0)
    assert found == 20


def test_torch_cuda_out_of_memory_error_is_handled_too(tmp_path: Any) -> None:
    model = TunableModel(oom_above=20, oom=torch.cuda.OutOfMemoryError("CUDA out of memory."))
    _, found = _scale(tmp_path, model, mode="power", steps_per_trial=1)
    assert found == 16


def test_other_errors_propagate(tmp_path: Any) -> None:
    model = TunableModel(oom_above=5, oom=RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        _scale(tmp_path, model)


def test_the_search_stops_at_the_dataset_length_max_val_and_max_trials(tmp_path: Any) -> None:
    model = TunableModel()
    _, found = _scale(tmp_path, model, steps_per_trial=1)
    assert found == 128  # the whole dataset in one batch: larger ones would run the same batches
    _, found = _scale(tmp_path, TunableModel(), steps_per_trial=1, max_val=32)
    assert found == 32
    model = TunableModel()
    _, found = _scale(tmp_path, model, steps_per_trial=1, max_trials=2)
    assert found == 4 and model.batch_sizes == [2, 4]


def test_init_val_is_the_first_trial(tmp_path: Any) -> None:
    model = TunableModel(batch_size=2, oom_above=20)
    _, found = _scale(tmp_path, model, steps_per_trial=1, init_val=32)
    assert model.batch_sizes[0] == 32 and found == 16


def test_the_size_is_written_to_hparams_and_the_datamodule(tmp_path: Any) -> None:
    class Data(pl.LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            self.batch_size = 2

        def train_dataloader(self) -> DataLoader:
            return DataLoader(regression(), batch_size=self.batch_size)

    class WithHparams(TunableModel):
        def __init__(self, batch_size: int = 2) -> None:
            super().__init__(oom_above=20)
            del self.batch_size
            self.save_hyperparameters()

    model, data = WithHparams(), Data()
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=1, **QUIET)
    found = Tuner(trainer).scale_batch_size(model, datamodule=data, steps_per_trial=1)
    assert found == 16 and model.hparams.batch_size == 16 and data.batch_size == 16


def test_bad_arguments_are_errors(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"`mode` should be either of \('power', 'binsearch'\)"):
        _scale(tmp_path, TunableModel(), mode="linear")
    with pytest.raises(ValueError, match="`margin` should be between 0 and 1"):
        _scale(tmp_path, TunableModel(), margin=1.5)
    with pytest.raises(ValueError, match="method 'tune' is invalid"):
        _scale(tmp_path, TunableModel(), method="tune")
    with pytest.raises(MisconfigurationException, match="`dataloaders` argument should be None"):
        _scale(tmp_path, TunableModel(), dataloaders=DataLoader(regression()))
    with pytest.raises(MisconfigurationException, match="cannot be used with dataloaders passed directly"):
        _scale(tmp_path, TunableModel(), train_dataloaders=DataLoader(regression()))
    with pytest.raises(MisconfigurationException, match="Field bs not found in `model`"):
        _scale(tmp_path, TunableModel(), batch_arg_name="bs")


def test_validate_method_scales_the_validation_loader(tmp_path: Any) -> None:
    class EvalModel(TunableModel):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.batch_sizes.append(len(batch[0]))
            if len(batch[0]) > 20:
                raise RuntimeError("CUDA out of memory.")

        def val_dataloader(self) -> DataLoader:
            return DataLoader(regression(), batch_size=self.batch_size)

    model = EvalModel()
    _, found = _scale(tmp_path, model, method="validate", steps_per_trial=1)
    assert found == 16 and model.batch_sizes == [2, 4, 8, 16, 32]


@pytest.mark.parametrize("method", ["test", "predict"])
def test_test_and_predict_methods_scale_their_loader(tmp_path: Any, method: str) -> None:
    class EvalModel(TunableModel):
        def _step(self, batch: Any) -> Any:
            self.batch_sizes.append(len(batch[0]))
            if len(batch[0]) > 20:
                raise RuntimeError("CUDA out of memory.")
            return self.layer(batch[0])

        def test_step(self, batch: Any, batch_idx: int) -> None:
            self._step(batch)

        def predict_step(self, batch: Any, batch_idx: int) -> Any:
            return self._step(batch)

        def test_dataloader(self) -> DataLoader:
            return DataLoader(regression(), batch_size=self.batch_size)

        predict_dataloader = test_dataloader

    model = EvalModel()
    trainer, found = _scale(tmp_path, model, method=method, steps_per_trial=1)
    assert found == 16 and model.batch_sizes == [2, 4, 8, 16, 32]
    assert trainer.state.status.value == "finished"
