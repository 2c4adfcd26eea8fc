"""What a trial's script sees: its options appended (overriding hand-given ones), its JSON."""

from __future__ import annotations

import json

from fulmen.sweep import TRIAL_VARIABLE, current_trial, trial_info
from fulmen.sweep.space import Trial
from fulmen.sweep.trial import merge_script_args, trial_environment

TRIAL = Trial(3, (("lr", "0.1"), ("hidden", "8")))


def test_the_trial_values_replace_the_same_options_given_by_hand() -> None:
    args = ["--epochs", "2", "--lr", "5", "--hidden=4", "--lr", "-1", "--flag", "--lr", "--other", "x"]
    assert merge_script_args(args, TRIAL) == ["--epochs", "2", "--flag", "--other", "x", "--lr", "0.1", "--hidden", "8"]


def test_other_options_with_a_shared_prefix_are_kept() -> None:
    assert merge_script_args(["--lr-decay", "0.5", "--hidden_size=3"], TRIAL)[:2] == ["--lr-decay", "0.5"]
    assert "--hidden_size=3" in merge_script_args(["--hidden_size=3"], TRIAL)


def test_current_trial_reads_the_values_the_launcher_set() -> None:
    environ = {TRIAL_VARIABLE: trial_environment(TRIAL, "/runs/train-sweep-1")}
    assert current_trial(environ) == {"lr": 0.1, "hidden": 8}
    assert list(current_trial(environ) or {}) == ["lr", "hidden"]  # the sweep's order
    assert trial_info(environ) == {"sweep_dir": "/runs/train-sweep-1", "index": 3, "values": {"lr": 0.1, "hidden": 8}}
    assert json.loads(environ[TRIAL_VARIABLE])["index"] == 3


def test_current_trial_is_none_outside_a_sweep() -> None:
    assert current_trial({}) is None
