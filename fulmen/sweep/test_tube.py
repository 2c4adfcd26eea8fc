"""test_tube's ``HyperOptArgumentParser``, for scripts written against it (Lightning 0.x's sweeps).

Accepts test_tube 0.7.5's calls and, for the same seeds (``random.seed`` for the trials,
``numpy.random.seed`` for ``opt_range``'s samples), produces the same trials::

    parser = HyperOptArgumentParser(strategy="random_search")
    parser.opt_list("--lr", type=float, default=0.1, options=[0.1, 0.01], tunable=True)
    parser.opt_range("--hidden", type=int, default=8, low=8, high=64, nb_samples=4, tunable=True)
    hparams = parser.parse_args()
    for trial in hparams.trials(5): ...
    hparams.optimize_parallel_cpu(train, nb_trials=5, nb_workers=2)

test_tube's ``SlurmCluster`` driver is ``fulmen.launcher.test_tube_cluster.SlurmCluster`` (it
submits, so it lives in the launcher): ``optimize_parallel_cluster_gpu/cpu`` submit the trials as
ONE job array, like ``launch --cluster slurm --sweep ...``. Its GPU pools are not here.
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle

from fulmen.sweep.space import random_trials

STRATEGIES = ("grid_search", "random_search")


@dataclass
class _Tunable:
    name: str  # the namespace attribute (test_tube: dashes stripped, inner dashes as underscores)
    values: list[Any]
    tunable: bool


class HyperOptArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that also declares tunable options (test_tube's API)."""

    def __init__(self, strategy: str = "grid_search", **kwargs: Any) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy={strategy!r} is not one of {', '.join(STRATEGIES)} (test_tube's names).")
        super().__init__(**kwargs)
        self.strategy = strategy
        self.opt_args: dict[str, _Tunable] = {}
        self.parsed_args: dict[str, Any] = {}

    def opt_list(self, *args: str, options: Sequence[Any] | None = None, tunable: bool = False, **kwargs: Any) -> None:
        """An option whose trial values are ``options`` (searched when ``tunable``)."""
        self.add_argument(*args, **kwargs)
        for flag in args:
            self.opt_args[flag] = _Tunable(_attribute(flag), list(options or []), tunable)

    def opt_range(self, *args: str, low: float, high: float, nb_samples: int = 10, tunable: bool = False,
                  log_base: float | None = None, **kwargs: Any) -> None:
        """An option whose trial values are ``nb_samples`` random draws in [low, high), drawn now
        from numpy's global generator as test_tube does (ints without repeats; ``log_base``: on
        that log scale)."""
        import numpy as np

        arg_type = kwargs["type"]
        self.add_argument(*args, **kwargs)
        if log_base is None:
            if arg_type is int:
                values: list[Any] = [int(v) for v in np.random.choice(np.arange(low, high), nb_samples, replace=False)]
            else:
                values = [float(v) for v in np.random.uniform(low, high, nb_samples)]
        else:
            if not high >= low > 0:
                raise ValueError(f"opt_range({args[-1]}): a log scale needs high >= low > 0, got low={low}, high={high}")
            log_low, log_high = math.log(low, log_base), math.log(high, log_base)
            values = [float(log_base**v) for v in np.random.uniform(log_low, log_high, nb_samples)]
        self.opt_args[args[-1]] = _Tunable(_attribute(args[-1]), values, tunable)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """The parsed options, with test_tube's ``trials`` / ``generate_trials`` /
        ``optimize_parallel_cpu`` attached."""
        parsed = super().parse_args(args, namespace)
        self.parsed_args = dict(vars(parsed))
        return HyperOptNamespace(
            **self.parsed_args,
            trials=self.opt_trials,
            generate_trials=self.generate_trials,
            optimize_parallel_cpu=self.optimize_parallel_cpu,
        )

    def generate_trials(self, nb_trials: int | None) -> list[argparse.Namespace]:
        """The trials: grid (the first ``nb_trials`` combinations) or random, as test_tube."""
        tunables = [opt for opt in self.opt_args.values() if opt.tunable]
        lists = [[(opt.name, value) for value in opt.values] for opt in tunables]
        if self.strategy == "grid_search":
            combos = list(itertools.product(*lists))
            combos = combos[:nb_trials] if nb_trials else combos
        else:
            if nb_trials is None:
                raise TypeError("random_search needs nb_trials (an int), as in test_tube.")
            combos = [tuple(combo) for combo in random_trials(lists, nb_trials, random)]
        return [argparse.Namespace(**{**self.parsed_args, **dict(combo)}) for combo in combos]

    def opt_trials(self, num: int) -> Iterator[argparse.Namespace]:
        """``hparams.trials(num)``: the trials one by one."""
        yield from self.generate_trials(num)

    def optimize_parallel_cpu(self, train_function: Callable[[argparse.Namespace], Any], nb_trials: int,
                              nb_workers: int = 4) -> list[list[Any]]:
        """Run ``train_function(trial)`` for each trial in ``nb_workers`` processes; ``[[trial, result], ...]``.

        Unlike test_tube, no random 0-4 s sleep before each trial; for runs that should survive
        a crash or a preemption, use ``launch --sweep`` (each trial a fulmen run).
        """
        trials = self.generate_trials(nb_trials)
        # Workers come from a forkserver, never a fork of this process: a fork of a process with
        # threads (a logger's uploader, a metrics exporter) can deadlock in the child on a lock
        # another thread held. The function travels by value (cloudpickle), so one defined in
        # the script itself (``__main__``, a closure) works as it did with test_tube's fork.
        function = cloudpickle.dumps(train_function)
        with multiprocessing.get_context("forkserver").Pool(processes=nb_workers) as pool:
            results = pool.starmap(_call_by_value, [(function, trial) for trial in trials])
        return [[trial, result] for trial, result in zip(trials, results)]


class HyperOptNamespace(argparse.Namespace):
    """test_tube's ``TTNamespace``: the parsed options plus the search functions."""

    def __str__(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in vars(self).items() if not callable(v))


def _call_by_value(function: bytes, trial: argparse.Namespace) -> Any:
    """In a pool worker: the trial function, shipped by value, called with one trial."""
    return cloudpickle.loads(function)(trial)


def _attribute(flag: str) -> str:
    return flag.strip("-").replace("-", "_")
