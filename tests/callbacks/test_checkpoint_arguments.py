"""ModelCheckpoint's trigger defaults and refused combinations, without building a callback."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fulmen.callbacks.checkpoint_arguments import default_triggers, legacy_arguments, validate_arguments
from fulmen.errors import MisconfigurationException


def test_no_trigger_means_once_per_epoch() -> None:
    assert default_triggers(None, None, None) == (1, 0)  # (every_n_epochs, every_n_train_steps)
    assert default_triggers(100, None, None) == (0, 100)
    assert default_triggers(None, 3, None) == (3, 0)
    assert default_triggers(None, None, timedelta(minutes=5)) == (0, 0)  # the interval alone


def test_one_trigger_at_a_time() -> None:
    validate_arguments(1, None, 0, 0, timedelta(minutes=5))
    with pytest.raises(MisconfigurationException, match="mutually exclusive"):
        validate_arguments(1, None, 100, 0, timedelta(minutes=5))


def test_save_top_k_is_checked_first_as_in_lightning() -> None:
    with pytest.raises(MisconfigurationException, match="save_top_k=-2"):
        validate_arguments(-2, None, -1, -1, None)


# legacy arguments -> (dirpath, filename, save_top_k, every_n_epochs, last-file stem) from the defaults
LEGACY_CASES = {
    "filepath_template": ({"filepath": "/ck/{epoch}-{val_loss:.2f}"}, ("/ck", "{epoch}-{val_loss:.2f}", 1, None, None)),
    "filepath_with_extension": ({"filepath": "/ck/model.ckpt"}, ("/ck", "model", 1, None, None)),
    "filepath_folder": ({"filepath": "/ck/"}, ("/ck/", None, 1, None, None)),
    "filepath_template_only": ({"filepath": "{epoch}"}, (None, "{epoch}", 1, None, None)),
    "save_best_only_true": ({"save_best_only": True}, (None, None, 1, None, None)),
    "save_best_only_false": ({"save_best_only": False}, (None, None, -1, None, None)),
    "prefix": ({"prefix": "run"}, (None, "run-{epoch}-{step}", 1, None, "run-last")),
    "prefix_and_filepath": ({"prefix": "run", "filepath": "/ck/{epoch}"}, ("/ck", "run-{epoch}", 1, None, "run-last")),
    "period": ({"period": 3}, (None, None, 1, 3, None)),
}


@pytest.mark.parametrize("case", list(LEGACY_CASES))
def test_legacy_arguments_become_modern_ones_with_one_warning_each(case: str) -> None:
    legacy, expected = LEGACY_CASES[case]
    with pytest.warns(DeprecationWarning) as caught:
        assert legacy_arguments(legacy, None, None, 1, None) == expected
    assert sorted(str(w.message).split("(")[1].split("=")[0] for w in caught) == sorted(legacy)
    assert all("is a legacy argument" in str(w.message) and "instead" in str(w.message) for w in caught)


def test_filepath_folder_that_exists_is_the_folder(tmp_path) -> None:
    with pytest.warns(DeprecationWarning, match="use dirpath=<folder>, filename=<template>"):
        assert legacy_arguments({"filepath": str(tmp_path)}, None, None, 1, None)[:2] == (str(tmp_path), None)


def test_filepath_with_dirpath_and_unknown_arguments_are_refused() -> None:
    with pytest.raises(MisconfigurationException, match="cannot be combined with dirpath.*\nHINT"), pytest.warns(
        DeprecationWarning
    ):
        legacy_arguments({"filepath": "/a/{epoch}"}, "/b", None, 1, None)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['save_best'\].*\nHINT"):
        legacy_arguments({"save_best": True}, None, None, 1, None)
