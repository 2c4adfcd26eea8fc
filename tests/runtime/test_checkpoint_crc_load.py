"""The one-pass checked load (issue 16.5): it returns what ``torch.load`` returns, in memory of
its own, and a flipped byte is named by both load paths (one-pass, and the two-pass check that
runs where the one-pass cannot)."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from fulmen.errors import CheckpointError
from fulmen.runtime import checkpoint as ck
from fulmen.runtime import checkpoint_crc_load as crc_load
from fulmen.runtime.checkpoint_crc_load import CheckedLoad

pytestmark = pytest.mark.skipif(crc_load._isal is None, reason="the one-pass load needs isal")


def _payload() -> dict[str, Any]:
    base = torch.arange(1_000_000, dtype=torch.float32)
    return {
        "state_dict": {"w": base, "view": base[10:20], "tied": base, "half": torch.ones(7, dtype=torch.float16)},
        "empty": torch.zeros(0),
        "ints": [torch.tensor([1, 2, 3]), torch.tensor(True)],
        "param": torch.nn.Parameter(torch.randn(3, 3)),
        "global_step": 4,
    }


@pytest.mark.parametrize(
    "map_location",
    [None, "cpu", torch.device("cpu"), {"cpu": "cpu"}, lambda storage, location: None, lambda s, loc: s],
    ids=["none", "str", "device", "dict", "callable-none", "callable"],
)
def test_the_one_pass_load_returns_what_torch_load_returns(tmp_path: Path, map_location: Any) -> None:
    path = tmp_path / "a.ckpt"
    torch.save(_payload(), path)
    checked = CheckedLoad.usable(path)
    assert checked is not None
    got = checked.load(map_location, weights_only=True)
    assert checked.corrupt_record() is None
    want = torch.load(path, weights_only=True)
    assert got.keys() == want.keys() and got["global_step"] == 4
    for key in want["state_dict"]:
        assert torch.equal(got["state_dict"][key], want["state_dict"][key]), key
    assert torch.equal(got["ints"][0], want["ints"][0]) and torch.equal(got["param"], want["param"])
    assert got["empty"].shape == (0,)
    sd = got["state_dict"]  # views and ties survive: one storage, as torch.load gives
    assert sd["w"].untyped_storage().data_ptr() == sd["view"].untyped_storage().data_ptr() == sd["tied"].data_ptr()
    assert sd["view"].storage_offset() == 10


def test_what_it_loads_does_not_depend_on_the_file(tmp_path: Path) -> None:
    """Not a mapped checkpoint (torch.load(mmap=True)): the file emptied after the load must
    not matter (a mapping would fault with SIGBUS when read)."""
    path = tmp_path / "a.ckpt"
    torch.save({"w": torch.arange(2_000_000, dtype=torch.float64)}, path)
    code = (
        "import os, sys, torch\n"
        "from fulmen.runtime.checkpoint import load_checkpoint\n"
        "w = load_checkpoint(sys.argv[1])['w']\n"
        "os.truncate(sys.argv[1], 0)\n"
        "w.add_(1)\n"
        "print(float(w.sum()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout) == float(torch.arange(2_000_000, dtype=torch.float64).add(1).sum())


def _flip(path: Path, suffix: str, where: float) -> str:
    with zipfile.ZipFile(path) as archive:
        (info,) = [i for i in archive.infolist() if i.filename.endswith(suffix)]
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<2H", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length
    data[start + int(where * info.file_size)] ^= 0x04
    path.write_bytes(bytes(data))
    return info.filename


@pytest.mark.parametrize("one_pass", [True, False], ids=["one-pass", "two-pass"])
@pytest.mark.parametrize("where", [0.0, 0.5, 0.999])
def test_a_flipped_byte_in_a_tensor_is_named_by_both_load_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_pass: bool, where: float
) -> None:
    if not one_pass:
        monkeypatch.setattr(crc_load, "_isal", None)  # as where isal is not installed
    used: list[bool] = []
    real = CheckedLoad.load
    monkeypatch.setattr(CheckedLoad, "load", lambda self, *a, **k: used.append(True) or real(self, *a, **k))
    path = tmp_path / "flip.ckpt"
    ck.save_atomic(_payload(), path)
    record = _flip(path, "/data/0", where)
    with pytest.raises(CheckpointError, match=rf"flip\.ckpt.* record '{re.escape(record)}' fails its CRC32"):
        ck.load_checkpoint(path)
    assert bool(used) is one_pass


def test_a_flipped_byte_outside_the_tensors_is_named(tmp_path: Path) -> None:
    path = tmp_path / "flip.ckpt"
    ck.save_atomic(_payload(), path)
    record = _flip(path, "/.data/serialization_id", 0.5)  # read by nobody but the check
    with pytest.raises(CheckpointError, match=rf"record '{re.escape(record)}' fails its CRC32"):
        ck.load_checkpoint(path)


def test_a_file_system_that_refuses_mmap_still_loads_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.ckpt"
    ck.save_atomic(_payload(), path)
    real = torch.load

    def no_mmap(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("mmap"):
            raise RuntimeError("unable to mmap")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", no_mmap)
    assert ck.load_checkpoint(path)["global_step"] == 4
    _flip(path, "/data/0", 0.5)
    with pytest.raises(CheckpointError, match="fails its CRC32"):
        ck.load_checkpoint(path)
