"""hparams.yaml round trips, and what cannot be written is skipped with a warning."""

from __future__ import annotations

import enum
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from fulmen.utilities.parsing import AttributeDict, load_hparams_from_yaml, save_hparams_to_yaml


class Color(enum.Enum):
    RED = 1


def test_round_trip_of_plain_values(tmp_path: Path) -> None:
    hparams = {"lr": 0.001, "layers": [32, 64], "shape": (3, 4), "name": "mlp", "flag": True, "none": None,
               "nested": {"a": {"b": 1}}}  # fmt: skip
    path = tmp_path / "hparams.yaml"
    save_hparams_to_yaml(path, hparams)
    assert load_hparams_from_yaml(path) == hparams


def test_namespace_enum_and_path_values(tmp_path: Path) -> None:
    path = tmp_path / "hparams.yaml"
    save_hparams_to_yaml(path, Namespace(color=Color.RED, data_dir=tmp_path / "data", ns=Namespace(x=1)))
    assert load_hparams_from_yaml(path) == {"color": "RED", "data_dir": str(tmp_path / "data"), "ns": {"x": 1}}


def test_unwritable_values_are_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "hparams.yaml"
    with pytest.warns(UserWarning, match="Skipping 'model'"):
        save_hparams_to_yaml(path, {"model": torch.nn.Linear(2, 2), "lr": 0.1})
    assert load_hparams_from_yaml(path) == {"lr": 0.1}


def test_empty_hparams_write_an_empty_mapping(tmp_path: Path) -> None:
    path = tmp_path / "hparams.yaml"
    save_hparams_to_yaml(path, {})
    assert path.read_text() == "{}\n"
    assert load_hparams_from_yaml(path) == {}


def test_missing_folder_and_bad_type_are_errors(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="Missing folder"):
        save_hparams_to_yaml(tmp_path / "nope" / "hparams.yaml", {"a": 1})
    with pytest.raises(TypeError, match="dict or argparse.Namespace, got list"):
        save_hparams_to_yaml(tmp_path / "hparams.yaml", [1, 2])  # type: ignore[arg-type]


def test_missing_file_loads_as_empty_with_a_warning(tmp_path: Path) -> None:
    with pytest.warns(RuntimeWarning, match="Missing Tags"):
        assert load_hparams_from_yaml(tmp_path / "absent.yaml") == {}


def test_reads_a_lightning_written_file(tmp_path: Path) -> None:
    # What Lightning's save_hparams_to_yaml (yaml.dump) produces for a tuple and nested dict.
    path = tmp_path / "hparams.yaml"
    path.write_text("batch_size: 32\nbetas: !!python/tuple\n- 0.9\n- 0.999\nopt:\n  name: adam\n")
    assert load_hparams_from_yaml(path) == {"batch_size": 32, "betas": (0.9, 0.999), "opt": {"name": "adam"}}


def test_attribute_dict_is_the_hparams_class() -> None:
    hparams = AttributeDict(lr=0.1)
    hparams.batch_size = 8
    assert hparams["batch_size"] == 8 and hparams.lr == 0.1


def test_is_picklable_tells_a_lambda_from_plain_data() -> None:
    from fulmen.utilities import is_picklable

    assert is_picklable({"lr": 0.1, "layers": [1, 2]})
    assert not is_picklable(lambda: None)


def test_lightning_attribute_lookup_covers_model_hparams_and_datamodule() -> None:
    from types import SimpleNamespace

    from fulmen.utilities.parsing import lightning_getattr, lightning_hasattr, lightning_setattr

    datamodule = SimpleNamespace(batch_size=4, hparams={"batch_size": 4})
    model = SimpleNamespace(hparams=AttributeDict(batch_size=2, lr=0.1), _trainer=SimpleNamespace(datamodule=datamodule))
    assert lightning_hasattr(model, "lr") and not lightning_hasattr(model, "momentum")
    assert lightning_getattr(model, "batch_size") == 4  # the last holder, as Lightning reads it
    lightning_setattr(model, "batch_size", 32)
    assert model.hparams.batch_size == datamodule.batch_size == datamodule.hparams["batch_size"] == 32
    assert not hasattr(model, "batch_size")  # set where it is held, not added to the model
    with pytest.raises(AttributeError, match="momentum is neither stored in the model namespace"):
        lightning_setattr(model, "momentum", 0.9)
    with pytest.raises(AttributeError, match="momentum is neither stored"):
        lightning_getattr(model, "momentum")
