"""load_from_checkpoint: hyperparameters restored and overridable, weights loaded, safe loading."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule
from fulmen.core.saving import load_from_checkpoint
from fulmen.errors import CheckpointError


class Regressor(LightningModule):
    def __init__(self, hidden: int = 4, lr: float = 0.1, name: str = "reg") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(3, hidden)
        self.loaded_from: dict[str, Any] | None = None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.loaded_from = {"extra": checkpoint.get("extra")}


class FromNamespace(LightningModule):
    def __init__(self, hparams: Any) -> None:
        super().__init__()
        self.save_hyperparameters(hparams)
        self.layer = nn.Linear(2, int(hparams.width))


def _lightning_style_checkpoint(model: LightningModule) -> dict[str, Any]:
    """The layout PyTorch Lightning 2.x writes (keys and value types), for a plain model."""
    return {
        "epoch": 2,
        "global_step": 30,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": model.state_dict(),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"completed": 2}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, "
            "'train_time_interval': None}": {"best_model_score": torch.tensor(0.25), "best_model_path": "/x.ckpt"}
        },
        "optimizer_states": [torch.optim.Adam(model.parameters()).state_dict()],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": dict(model.hparams),
        "extra": "from on_save_checkpoint",
    }


def test_lightning_checkpoint_loads_with_hparams_and_weights(tmp_path: Path) -> None:
    original = Regressor(hidden=6, lr=0.5, name="orig")
    path = tmp_path / "lightning.ckpt"
    torch.save(_lightning_style_checkpoint(original), path)
    loaded = Regressor.load_from_checkpoint(path)
    assert isinstance(loaded, Regressor)
    assert dict(loaded.hparams) == {"hidden": 6, "lr": 0.5, "name": "orig"}
    assert torch.equal(loaded.layer.weight, original.layer.weight)
    assert loaded.loaded_from == {"extra": "from on_save_checkpoint"}


def test_keyword_overrides_win(tmp_path: Path) -> None:
    original = Regressor(hidden=6, lr=0.5)
    path = tmp_path / "m.ckpt"
    torch.save(_lightning_style_checkpoint(original), path)
    loaded = load_from_checkpoint(Regressor, path, lr=0.01, name="tuned")
    assert (loaded.hparams.hidden, loaded.hparams.lr, loaded.hparams.name) == (6, 0.01, "tuned")


def test_hparams_file_replaces_stored_hparams(tmp_path: Path) -> None:
    original = Regressor(hidden=6, lr=0.5)
    path = tmp_path / "m.ckpt"
    torch.save(_lightning_style_checkpoint(original), path)
    (tmp_path / "hparams.yaml").write_text("hidden: 6\nlr: 0.25\nname: from-yaml\n")
    loaded = Regressor.load_from_checkpoint(path, hparams_file=tmp_path / "hparams.yaml")
    assert (loaded.hparams.lr, loaded.hparams.name) == (0.25, "from-yaml")
    (tmp_path / "tags.csv").write_text("key,value\nhidden,6\nlr,0.125\nname,csv\n")
    assert Regressor.load_from_checkpoint(path, hparams_file=tmp_path / "tags.csv").hparams.lr == 0.125
    with pytest.raises(ValueError, match=r"\.csv, \.yml or \.yaml"):
        Regressor.load_from_checkpoint(path, hparams_file=tmp_path / "hparams.json")


def test_hparams_passed_as_one_argument(tmp_path: Path) -> None:
    original = FromNamespace(argparse.Namespace(width=5))
    checkpoint = _lightning_style_checkpoint(original)
    checkpoint["hparams_name"] = "hparams"
    path = tmp_path / "ns.ckpt"
    torch.save(checkpoint, path)
    loaded = FromNamespace.load_from_checkpoint(path)
    assert loaded.layer.out_features == 5 and loaded.hparams.width == 5
    # files that do not name the argument ("kwargs", or none): the one required argument gets them
    for name in ("kwargs", None):
        checkpoint["hparams_name"] = name
        torch.save(checkpoint, path)
        assert FromNamespace.load_from_checkpoint(path).layer.out_features == 5


def test_python_objects_need_explicit_unsafe_opt_in(tmp_path: Path) -> None:
    original = Regressor()
    checkpoint = _lightning_style_checkpoint(original)
    checkpoint["hyper_parameters"] = {"hidden": 4, "lr": argparse.Namespace(value=0.3)}
    path = tmp_path / "objects.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"objects\.ckpt(.|\n)*argparse\.Namespace(.|\n)*unsafe_full_unpickle=True"):
        Regressor.load_from_checkpoint(path)
    loaded = Regressor.load_from_checkpoint(path, unsafe_full_unpickle=True)
    assert loaded.hparams.lr.value == 0.3


@pytest.mark.filterwarnings("ignore:Found keys that are not in the model")
def test_strict_false_warns_about_key_mismatch(tmp_path: Path) -> None:
    original = Regressor()
    checkpoint = _lightning_style_checkpoint(original)
    checkpoint["state_dict"] = {"layer.weight": checkpoint["state_dict"]["layer.weight"], "old.bias": torch.zeros(1)}
    path = tmp_path / "partial.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(RuntimeError, match="layer.bias"):
        Regressor.load_from_checkpoint(path)
    with pytest.warns(UserWarning, match=r"not in the checkpoint: \['layer.bias'\]"):
        Regressor.load_from_checkpoint(path, strict=False)


class LenientRegressor(Regressor):
    strict_loading = False  # Lightning: load_from_checkpoint(strict=None) follows it


def _partial_checkpoint(tmp_path: Path) -> Path:
    """A checkpoint whose state dict lacks ``layer.bias`` and has a stale key."""
    checkpoint = _lightning_style_checkpoint(Regressor())
    checkpoint["state_dict"] = {"layer.weight": checkpoint["state_dict"]["layer.weight"], "old.bias": torch.zeros(1)}
    path = tmp_path / "partial.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.mark.filterwarnings("ignore:Found keys that are")
def test_strict_none_follows_strict_loading_like_lightning(tmp_path: Path) -> None:
    path = _partial_checkpoint(tmp_path)
    with pytest.warns(UserWarning, match=r"not in the checkpoint: \['layer.bias'\]"):
        model = LenientRegressor.load_from_checkpoint(path)  # strict=None: strict_loading=False, no error
    assert isinstance(model, LenientRegressor)
    with pytest.raises(RuntimeError, match="layer.bias"):  # a class attribute is no conflict: strict=True wins
        LenientRegressor.load_from_checkpoint(path, strict=True)


@pytest.mark.filterwarnings("ignore:Found keys that are")
def test_strict_loading_set_in_init_counts_and_an_unset_one_lets_strict_win(tmp_path: Path) -> None:
    class SetInInit(Regressor):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.strict_loading = False

    path = _partial_checkpoint(tmp_path)
    SetInInit.load_from_checkpoint(path)  # would raise with strict=True
    with pytest.raises(ValueError, match=r"strict=True.*in conflict with `SetInInit.strict_loading=False`"):
        SetInInit.load_from_checkpoint(path, strict=True)
    # strict_loading not set by the user: an explicit strict=False is no conflict (Lightning's _strict_loading None)
    Regressor.load_from_checkpoint(path, strict=False)


def test_weights_only_checkpoint_and_map_location(tmp_path: Path) -> None:
    original = Regressor(hidden=3)
    path = tmp_path / "w.ckpt"
    torch.save({"state_dict": original.state_dict(), "hyper_parameters": dict(original.hparams)}, path)
    loaded = Regressor.load_from_checkpoint(path, map_location="cpu")
    assert loaded.layer.weight.device.type == "cpu"
    assert torch.equal(loaded.layer.bias, original.layer.bias)


class Data(LightningDataModule):
    def __init__(self, batch_size: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.restored: dict[str, Any] = {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored = state_dict


def test_datamodule_from_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "dm.ckpt"
    torch.save(
        {
            "state_dict": {},
            "datamodule_hparams_name": "kwargs",
            "datamodule_hyper_parameters": {"batch_size": 32},
            "Data": {"cursor": 7},
        },
        path,
    )
    data = load_from_checkpoint(Data, path)
    assert data.hparams.batch_size == 32 and data.restored == {"cursor": 7}
    assert load_from_checkpoint(Data, path, batch_size=4).hparams.batch_size == 4


def test_datamodule_classmethod_loads_from_checkpoint_like_lightning(tmp_path: Path) -> None:
    path = tmp_path / "dm.ckpt"
    torch.save(
        {"state_dict": {}, "datamodule_hparams_name": "kwargs", "datamodule_hyper_parameters": {"batch_size": 32}},
        path,
    )
    data = Data.load_from_checkpoint(path, batch_size=16)
    assert isinstance(data, Data) and data.hparams.batch_size == 16


class WithConfig(LightningModule):
    def __init__(self, args: argparse.Namespace, config: Any, mode: Any, root: Path) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(2, args.width)


def test_fulmen_checkpoint_with_namespace_dataclass_enum_and_path_loads_safely_with_same_types(tmp_path: Path) -> None:
    import fulmen as pl
    from tests.runtime.test_checkpoint_hparams import Config, Mode, Optim

    model = WithConfig(argparse.Namespace(width=3), Config(name="c", optim=Optim(lr=0.7)), Mode.SLOW, tmp_path)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)
    model.training_step = lambda batch, idx: model.layer(batch[0]).sum()  # type: ignore[method-assign]
    model.configure_optimizers = lambda: torch.optim.SGD(model.parameters(), lr=0.1)  # type: ignore[method-assign]
    trainer.fit(model, data)
    path = tmp_path / "objects.ckpt"
    trainer.save_checkpoint(path)
    torch.load(path, weights_only=True)  # the safe loader accepts the whole file

    loaded = WithConfig.load_from_checkpoint(path)
    assert type(loaded.hparams.args) is argparse.Namespace and loaded.hparams.args.width == 3
    assert type(loaded.hparams.config) is Config and loaded.hparams.config == Config(name="c", optim=Optim(lr=0.7))
    assert loaded.hparams.mode is Mode.SLOW
    assert type(loaded.hparams.root) is type(tmp_path) and loaded.hparams.root == tmp_path
    assert torch.equal(loaded.layer.weight, model.layer.weight)


def _flip_a_weight_bit(path: Path) -> str:
    """Flip one bit in the middle of the largest tensor record; return the record's name."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<2H", data[info.header_offset + 26 : info.header_offset + 30])
    data[info.header_offset + 30 + name_length + extra_length + info.file_size // 2] ^= 0x04
    path.write_bytes(bytes(data))
    return info.filename


def test_a_bit_flip_fails_load_from_checkpoint_naming_file_and_record(tmp_path: Path) -> None:
    """Issue 16.5: not only the resume search checks the records' CRC32."""
    path = tmp_path / "model.ckpt"
    torch.save(_lightning_style_checkpoint(Regressor(hidden=64)), path)
    record = _flip_a_weight_bit(path)
    with pytest.raises(CheckpointError, match=rf"model\.ckpt.*record '{record}' fails its CRC32"):
        load_from_checkpoint(Regressor, path)
