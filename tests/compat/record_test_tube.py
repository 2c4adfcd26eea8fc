"""Record test_tube 0.7.5's trials for fixed seeds as reference JSON (tests/sweep/test_test_tube_parity.py).

Run by hand in a venv that has test_tube (never a project dependency):

    /work/venvs/pl19/bin/python tests/compat/record_test_tube.py

Writes ``tests/compat/reference_test_tube/test_tube_trials.json`` (beside, not inside, the Lightning references).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "reference_test_tube" / "test_tube_trials.json"
SEEDS = (0, 3, 11)
OPTIONS = ("lr", "hidden", "dropout", "wd", "optimizer")


def declare(parser: Any) -> None:
    """The options every case declares (the parity test declares the same on fulmen's parser)."""
    parser.opt_list("--lr", type=float, default=0.1, options=[0.1, 0.01, 0.001], tunable=True)
    parser.opt_range("--hidden", type=int, default=8, low=8, high=64, nb_samples=4, tunable=True)
    parser.opt_range("--dropout", type=float, default=0.1, low=0.0, high=0.5, nb_samples=3, tunable=True)
    parser.opt_range("--wd", type=float, default=1e-4, low=1e-5, high=1e-2, nb_samples=3, log_base=10, tunable=True)
    parser.opt_list("--optimizer", default="adam", options=["adam", "sgd"], tunable=False)


def trials_of(parser_class: Any, strategy: str, seed: int, nb_trials: int | None) -> list[dict[str, Any]]:
    """Seed both generators, declare, parse no arguments, generate; plain values per trial."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    parser = parser_class(strategy=strategy)
    declare(parser)
    hparams = parser.parse_args([])
    return [{k: getattr(t, k).item() if hasattr(getattr(t, k), "item") else getattr(t, k) for k in OPTIONS}
            for t in hparams.trials(nb_trials)]


CASES = [("random_search", seed, 5) for seed in SEEDS] + [("random_search", 1, 1000), ("grid_search", 2, 7)]


def main() -> None:
    import test_tube
    from test_tube import HyperOptArgumentParser

    cases = [{"strategy": s, "seed": seed, "nb_trials": n, "trials": trials_of(HyperOptArgumentParser, s, seed, n)}
             for s, seed, n in CASES]
    OUT.write_text(json.dumps({"test_tube": test_tube.__version__ if hasattr(test_tube, "__version__") else "0.7.5",
                               "cases": cases}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
