"""ModelCheckpoint's trigger defaults and refused combinations, without building a callback."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fulmen.callbacks.checkpoint_arguments import default_triggers, validate_arguments
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
