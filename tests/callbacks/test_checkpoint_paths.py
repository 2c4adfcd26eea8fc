"""ModelCheckpoint's naming rules as plain functions (no trainer, no files)."""

from __future__ import annotations

from fulmen.callbacks import checkpoint_paths as paths


def _names(ver: int | None) -> str:
    return "epoch=1.ckpt" if ver is None else f"epoch=1-v{ver}.ckpt"


def test_free_filepath_counts_versions_past_taken_names() -> None:
    taken = {"epoch=1.ckpt", "epoch=1-v1.ckpt"}
    assert paths.free_filepath(_names, taken.__contains__, None, start=1) == "epoch=1-v2.ckpt"
    assert paths.free_filepath(_names, set().__contains__, None, start=1) == "epoch=1.ckpt"


def test_free_filepath_reuses_the_name_of_the_file_it_replaces() -> None:
    taken = {"epoch=1.ckpt", "epoch=1-v1.ckpt"}
    assert paths.free_filepath(_names, taken.__contains__, "epoch=1-v1.ckpt", start=1) == "epoch=1-v1.ckpt"
    assert paths.free_filepath(_names, taken.__contains__, "epoch=1.ckpt", start=1) == "epoch=1.ckpt"
