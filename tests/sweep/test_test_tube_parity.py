"""fulmen.sweep.HyperOptArgumentParser gives test_tube 0.7.5's trials for the same seeds.

The reference is recorded from the real package by tests/compat/record_test_tube.py.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fulmen.sweep import HyperOptArgumentParser
from tests.compat.record_test_tube import CASES, OUT, trials_of

REFERENCE = json.loads(Path(OUT).read_text())


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=lambda c: f"{c['strategy']}-seed{c['seed']}-n{c['nb_trials']}")
def test_the_same_seed_gives_test_tubes_trials_field_by_field(case: dict) -> None:
    ours = trials_of(HyperOptArgumentParser, case["strategy"], case["seed"], case["nb_trials"])
    assert len(ours) == len(case["trials"])
    for index, (mine, theirs) in enumerate(zip(ours, case["trials"])):
        assert mine.keys() == theirs.keys(), index
        for key in theirs:  # the same draws: equal to the last bit, and of the same type
            assert (mine[key], type(mine[key])) == (theirs[key], type(theirs[key])), (index, key)


def test_the_reference_covers_every_case_and_a_random_search_never_repeats_a_trial() -> None:
    assert [(c["strategy"], c["seed"], c["nb_trials"]) for c in REFERENCE["cases"]] == CASES
    capped = next(c for c in REFERENCE["cases"] if c["nb_trials"] == 1000)
    assert len(capped["trials"]) == 3 * 4 * 3 * 3  # every combination once, no more
    assert len({json.dumps(t, sort_keys=True) for t in capped["trials"]}) == len(capped["trials"])


def _square(trial) -> float:
    return trial.lr * trial.hidden


def test_parse_args_keeps_argparse_and_optimize_parallel_cpu_returns_trial_result_pairs() -> None:
    random.seed(0)
    parser = HyperOptArgumentParser(strategy="grid_search")
    parser.add_argument("--epochs", type=int, default=3)
    parser.opt_list("--lr", type=float, default=0.1, options=[0.1, 0.2], tunable=True)
    parser.opt_list("--hidden", type=int, default=4, options=[1, 2], tunable=True)
    hparams = parser.parse_args(["--epochs", "5"])
    assert (hparams.epochs, hparams.lr) == (5, 0.1)
    assert [(t.lr, t.hidden, t.epochs) for t in hparams.trials(3)] == [(0.1, 1, 5), (0.1, 2, 5), (0.2, 1, 5)]
    pairs = hparams.optimize_parallel_cpu(_square, nb_trials=4, nb_workers=2)
    assert [(t.lr, t.hidden, result) for t, result in pairs] == [
        (0.1, 1, 0.1), (0.1, 2, 0.2), (0.2, 1, 0.2), (0.2, 2, 0.4)]


def test_unknown_strategy_and_random_search_without_a_count_are_refused() -> None:
    with pytest.raises(ValueError, match="grid_search, random_search"):
        HyperOptArgumentParser(strategy="bayes")
    parser = HyperOptArgumentParser(strategy="random_search")
    parser.opt_list("--lr", type=float, default=0.1, options=[0.1], tunable=True)
    with pytest.raises(TypeError, match="nb_trials"):
        parser.parse_args([]).generate_trials(None)


def test_optimize_parallel_cpu_takes_a_closure_and_survives_a_busy_thread_in_the_caller() -> None:
    # a background thread holding a lock is what made fork-based pools hang; a closure is what
    # scripts pass (test_tube forked, so it never pickled the function)
    import threading

    held, stop = threading.Lock(), threading.Event()

    def hold() -> None:
        while not stop.is_set():
            with held:
                stop.wait(0.001)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    offset = 100
    try:
        parser = HyperOptArgumentParser(strategy="grid_search")
        parser.opt_list("--lr", type=float, default=0.1, options=[0.1, 0.2], tunable=True)
        pairs = parser.parse_args([]).optimize_parallel_cpu(lambda trial: trial.lr + offset, nb_trials=2, nb_workers=2)
    finally:
        stop.set()
        thread.join()
    assert [(t.lr, result) for t, result in pairs] == [(0.1, 100.1), (0.2, 100.2)]
