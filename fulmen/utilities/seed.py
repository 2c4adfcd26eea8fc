"""``seed_everything``: one seed for Python, NumPy and torch, inherited by child processes.

Behaves like Lightning 2.x: the seed is exported as ``PL_GLOBAL_SEED`` (so ranks started later
and spawned processes reseed identically) and ``PL_SEED_WORKERS`` tells the Trainer whether to
give DataLoader workers distinct, reproducible seeds through ``pl_worker_init_function``.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from fulmen.utilities.rank_zero import (
    _ensure_console_logging,
    rank_from_environment,
    rank_prefixed_message,
    rank_zero_only,
    rank_zero_warn,
)

__all__ = [
    "seed_everything",
    "reset_seed",
    "pl_worker_init_function",
    "isolate_rng",
    "capture_rng_states",
    "restore_rng_states",
    "max_seed_value",
    "min_seed_value",
]

log = logging.getLogger(__name__)

max_seed_value = 4294967295  # 2**32 - 1: numpy's legacy seeding accepts uint32 only
min_seed_value = 0


def seed_everything(seed: int | None = None, workers: bool = False, verbose: bool = True) -> int:
    """Seed ``random``, ``numpy.random`` and torch (all devices); return the seed used.

    With ``seed=None`` the seed comes from ``PL_GLOBAL_SEED`` (set by an earlier call, possibly in
    a parent process); when that is unset too, the seed is 0 and a warning says so, as in
    Lightning 2.x. ``workers=True`` makes the Trainer seed each DataLoader worker differently but
    reproducibly (see ``pl_worker_init_function``).

    Raises:
        ValueError: the seed is outside numpy's range ``[0, 2**32 - 1]`` or ``PL_GLOBAL_SEED``
            is not an integer.
    """
    if seed is None:
        env_seed = os.environ.get("PL_GLOBAL_SEED")
        if env_seed is None:
            seed = 0
            if verbose:
                rank_zero_warn(f"No seed found, seed set to {seed}")
        else:
            try:
                seed = int(env_seed)
            except ValueError:
                raise ValueError(
                    f"Invalid seed specified via PL_GLOBAL_SEED: {env_seed!r}; expected an integer in "
                    f"[{min_seed_value}, {max_seed_value}].\nHINT: unset PL_GLOBAL_SEED or export an integer."
                ) from None
    elif not isinstance(seed, int):
        seed = int(seed)

    if not min_seed_value <= seed <= max_seed_value:
        raise ValueError(
            f"Seed {seed} is out of bounds: numpy accepts seeds from {min_seed_value} to {max_seed_value}.\n"
            f"HINT: use a seed in that range, e.g. seed_everything({seed % (max_seed_value + 1)})."
        )

    if verbose:
        _ensure_console_logging()
        log.info(rank_prefixed_message(f"Seed set to {seed}", rank_from_environment()))

    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    _seed_numpy(seed)
    torch.manual_seed(seed)  # seeds every CUDA device as well
    os.environ["PL_SEED_WORKERS"] = f"{int(workers)}"
    return seed


def reset_seed() -> None:
    """Reseed with the value a previous ``seed_everything`` exported; do nothing if there was none.

    The Trainer calls this after starting ranks so that every rank begins from the same state.
    """
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is None:
        return
    workers = os.environ.get("PL_SEED_WORKERS", "0")
    seed_everything(int(seed), workers=bool(int(workers)), verbose=False)


def pl_worker_init_function(worker_id: int, rank: int | None = None) -> None:
    """The ``worker_init_fn`` the Trainer installs after ``seed_everything(workers=True)``.

    Each (rank, worker) pair gets its own seeds for torch, ``random`` and numpy, derived from the
    base seed torch gave the worker, so workers never repeat each other's augmentations yet a rerun
    with the same seed repeats them exactly.
    """
    global_rank = rank if rank is not None else rank_zero_only.rank
    process_seed = torch.initial_seed()
    # torch seeds worker i with base_seed + i; back out the base to use all its bits
    base_seed = process_seed - worker_id
    seeds = _seed_sequence(base_seed, worker_id, global_rank, count=3)
    torch.manual_seed(seeds[0])
    random.seed((seeds[1] << 32) | seeds[2])
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency, but stay usable without it
        return
    np.random.seed(np.random.SeedSequence([base_seed, worker_id, global_rank]).generate_state(4))


def _seed_sequence(base_seed: int, worker_id: int, global_rank: int, count: int) -> list[int]:
    """``count`` well-mixed 64-bit seeds from (base seed, worker, rank), without numpy."""
    mask = (1 << 64) - 1
    state = ((base_seed << 32) | (worker_id << 16) | global_rank) & mask
    # MurmurHash3 finaliser: spreads small base seeds over all bits
    state ^= state >> 33
    state = (state * 0xFF51AFD7ED558CCD) & mask
    state ^= state >> 33
    state = (state * 0xC4CEB9FE1A85EC53) & mask
    state ^= state >> 33
    seeds = []
    for _ in range(count):
        state = (state * 6364136223846793005 + 1) & mask  # Knuth's 64-bit LCG
        seeds.append(state)
    return seeds


def _seed_numpy(seed: int) -> None:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency, but stay usable without it
        return
    np.random.seed(seed)


@contextmanager
def isolate_rng(include_cuda: bool = True) -> Iterator[None]:
    """Run a block without disturbing the global RNGs: their states are restored on exit.

    Covers torch (CPU, and every CUDA device when ``include_cuda`` and CUDA is initialised),
    numpy's global generator and Python's ``random``: e.g. drawing a validation sample inside
    a hook leaves the training data order unchanged.
    """
    states = capture_rng_states(include_cuda)
    try:
        yield
    finally:
        restore_rng_states(states)


def capture_rng_states(include_cuda: bool = True) -> dict[str, Any]:
    """The global RNG states: ``torch`` (CPU), ``python``, ``numpy`` and, when initialised, ``cuda``.

    The one capture of the process's generators, used by ``isolate_rng`` and by the data fetcher,
    whose checkpoints persist these keys (``loops.fit_loop.state_dict.fulmen``): renaming one
    would make older checkpoints restore without it.
    """
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    try:
        import numpy as np

        states["numpy"] = np.random.get_state()
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    if include_cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Put back what ``capture_rng_states`` returned.

    A ``cuda`` entry is skipped on a machine without CUDA, so a checkpoint taken on a GPU still
    resumes on a CPU-only machine.
    """
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    if "numpy" in states:
        import numpy as np

        np.random.set_state(states["numpy"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
