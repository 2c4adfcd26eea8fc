"""Sweeps: many runs of one script over a grid or random draws of option values.

``launch --sweep lr=0.1,0.01 --sweep hidden=8,16 --parallel 2 train.py`` runs each trial as a
normal fulmen run in ``fulmen_runs/<name>-sweep-<id>/trial_NNNN/``. This package is the pure
part (the space, its trials, what a trial's script sees); the launcher runs them
(``fulmen.launcher.sweep_run``).
"""

from fulmen.sweep.space import Parameter, SweepSpace, Trial, parse_sweep_option
from fulmen.sweep.test_tube import HyperOptArgumentParser
from fulmen.sweep.trial import TRIAL_VARIABLE, current_trial, trial_info

__all__ = ["TRIAL_VARIABLE", "HyperOptArgumentParser", "Parameter", "SweepSpace", "Trial", "current_trial", "parse_sweep_option", "trial_info"]
