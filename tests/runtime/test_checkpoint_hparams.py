"""Hyperparameters as tagged plain data: every value type save_hyperparameters() commonly holds
survives torch.save + torch.load(weights_only=True) and comes back as the same type."""

from __future__ import annotations

import argparse
import enum
import io
import pathlib
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from fulmen.core.hparams import AttributeDict
from fulmen.runtime.checkpoint_hparams import TYPE_TAG, decode_checkpoint_hparams, decode_hparams, encode_hparams, opaque_hparams


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Optim:
    lr: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)


@dataclass(frozen=True)
class Config:
    name: str
    optim: Optim = field(default_factory=Optim)
    mode: Mode = Mode.FAST
    data: pathlib.Path = pathlib.Path("/data/train")
    tags: list[str] = field(default_factory=lambda: ["a", "b"])


class Opaque:
    pass


def _safe_round_trip(value: Any) -> Any:
    """What a checkpoint holding ``value`` gives back through the safe loader."""
    buffer = io.BytesIO()
    torch.save({"hyper_parameters": encode_hparams(value)}, buffer)
    buffer.seek(0)
    return decode_hparams(torch.load(buffer, weights_only=True)["hyper_parameters"])


def test_namespace_nested_dataclass_enum_and_path_round_trip_through_the_safe_loader() -> None:
    hparams = {
        "args": argparse.Namespace(lr=0.3, layers=[4, 8], out=pathlib.PurePosixPath("/out"), level=Level.HIGH),
        "config": Config(name="run", optim=Optim(lr=0.5), mode=Mode.SLOW),
        "mode": Mode.FAST,
        "root": pathlib.Path("/tmp/x"),
        "nested": {"inner": [Mode.SLOW, (pathlib.Path("a"), {"cfg": Optim()})], "set": {1, 2}},
        "extra": AttributeDict(width=3),
        "tensor": torch.arange(3),
    }
    loaded = _safe_round_trip(hparams)
    assert loaded.keys() == hparams.keys()
    assert type(loaded["args"]) is argparse.Namespace and loaded["args"] == hparams["args"]
    assert type(loaded["args"].level) is Level and type(loaded["args"].out) is pathlib.PurePosixPath
    assert type(loaded["config"]) is Config and loaded["config"] == hparams["config"]
    assert type(loaded["config"].optim) is Optim and loaded["config"].optim.betas == (0.9, 0.99)
    assert loaded["config"].mode is Mode.SLOW and type(loaded["config"].data) is type(pathlib.Path("/"))
    assert loaded["mode"] is Mode.FAST
    assert type(loaded["root"]) is type(hparams["root"]) and loaded["root"] == hparams["root"]
    assert loaded["nested"]["inner"][0] is Mode.SLOW
    assert loaded["nested"]["inner"][1] == (pathlib.Path("a"), {"cfg": Optim()})
    assert type(loaded["nested"]["inner"][1]) is tuple and loaded["nested"]["set"] == {1, 2}
    assert type(loaded["extra"]) is AttributeDict and loaded["extra"].width == 3
    assert torch.equal(loaded["tensor"], hparams["tensor"])


def test_encoded_hparams_are_plain_data_with_a_type_tag() -> None:
    encoded = encode_hparams({"args": argparse.Namespace(lr=0.1), "mode": Mode.FAST, "lr": 0.1})
    assert encoded == {
        "args": {TYPE_TAG: "namespace", "fields": {"lr": 0.1}},
        "mode": {TYPE_TAG: "enum", "class": f"{__name__}:Mode", "name": "FAST"},
        "lr": 0.1,
    }
    assert opaque_hparams(encoded) == []


def test_other_objects_are_stored_as_they_are_and_named() -> None:
    encoded = encode_hparams({"ok": 1, "obj": Opaque(), "args": argparse.Namespace(inner=Opaque())})
    assert isinstance(encoded["obj"], Opaque)
    assert opaque_hparams(encoded) == [
        f"hparams['obj']: {__name__}.Opaque",
        f"hparams['args']['inner']: {__name__}.Opaque",
    ]


def test_classes_of_modules_not_imported_come_back_as_plain_values_with_a_warning() -> None:
    encoded = {
        "config": {TYPE_TAG: "dataclass", "class": "not_imported_pkg.cfg:Config", "fields": {"lr": 0.2}},
        "mode": {TYPE_TAG: "enum", "class": "not_imported_pkg.cfg:Mode", "name": "FAST"},
        # a tampered file naming something that is not a dataclass is not called
        "evil": {TYPE_TAG: "dataclass", "class": "os:system", "fields": {"cmd": "true"}},
    }
    with pytest.warns(RuntimeWarning, match=r"not_imported_pkg\.cfg:Config(.|\n)*HINT: import 'not_imported_pkg\.cfg'"):
        loaded = decode_hparams(encoded)
    assert "not_imported_pkg" not in sys.modules  # never imported because a file named it
    assert loaded["config"] == argparse.Namespace(lr=0.2)
    assert loaded["mode"] == "FAST"
    assert loaded["evil"] == argparse.Namespace(cmd="true")


def test_unknown_tag_names_the_tag_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"'future_kind'(.|\n)*HINT: the file was written by a newer fulmen"):
        decode_hparams({"x": {TYPE_TAG: "future_kind"}})


def test_decode_checkpoint_hparams_rebuilds_module_and_datamodule_hparams_only() -> None:
    checkpoint = {
        "hyper_parameters": encode_hparams({"args": argparse.Namespace(a=1)}),
        "datamodule_hyper_parameters": encode_hparams({"root": pathlib.Path("/d")}),
        "callbacks": {"x": {TYPE_TAG: "namespace", "fields": {}}},
    }
    decode_checkpoint_hparams(checkpoint)
    assert checkpoint["hyper_parameters"]["args"] == argparse.Namespace(a=1)
    assert checkpoint["datamodule_hyper_parameters"]["root"] == pathlib.Path("/d")
    assert checkpoint["callbacks"] == {"x": {TYPE_TAG: "namespace", "fields": {}}}
