"""Preemption: a signal sets a flag; every rank agrees to stop at the same step boundary.

The flow (docs/internals.md, "Preemption"):

1. ``PreemptionHandler.install()`` at fit start replaces the handlers of SIGTERM, SIGINT,
   SIGUSR1 and SIGUSR2 with one that only records the signal. No I/O, no collectives, no
   exceptions inside a handler: those deadlock or corrupt state when they interrupt a
   collective or a checkpoint write. A second signal is harmless (it sets the same flag).
2. The fit loop calls ``stop_requested(strategy)`` at every optimizer-step boundary (with
   gradient accumulation: only after a window's last batch, so no accumulated gradient is
   lost). With several ranks it is a collective (``reduce_boolean_decision(any)``), so a
   signal that reached one rank stops all of them after the same step.
3. The Trainer then saves the resume checkpoint, calls ``hand_off(rank_info)`` (SLURM requeue,
   rank 0 only), tears down and exits with ``PREEMPTED_EXIT_CODE``.
4. ``restore()`` puts the previous handlers back.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterable
from types import FrameType
from typing import Any, Protocol

from fulmen.runtime.cluster import environment_for
from fulmen.runtime.ranks import RankInfo

HANDLED_SIGNALS: tuple[signal.Signals, ...] = tuple(
    sig for sig in (getattr(signal, n, None) for n in ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2")) if sig
)


class _Decider(Protocol):
    world_size: int

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool: ...


class PreemptionHandler:
    """Signal -> flag, and an agreed stop across ranks.

    Usable as a context manager (``with PreemptionHandler(): ...``) or with explicit
    ``install()`` / ``restore()``. Installing from a thread other than the main thread is a
    no-op (Python only allows handlers there), so ``stop_requested`` still works, it just
    never sees a local signal.
    """

    def __init__(self, signals: Iterable[signal.Signals] = HANDLED_SIGNALS) -> None:
        self.signals: tuple[signal.Signals, ...] = tuple(signals)
        self._previous: dict[signal.Signals, Any] = {}
        self._received: signal.Signals | None = None
        self.received_at: float | None = None  # time.time() of that signal (for the event log)
        self._agreed = False

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    @property
    def received_signal(self) -> signal.Signals | None:
        """The first signal that reached this process since install (None if none did)."""
        return self._received

    def install(self) -> None:
        """Replace the handlers of ``self.signals``; remembers the previous ones."""
        if self.installed or threading.current_thread() is not threading.main_thread():
            return
        self._received = None
        self._agreed = False
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        """Put back the handlers that were there before ``install()``."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only record: anything more can interrupt a collective or a half-written file.
        if self._received is None:
            self._received = signal.Signals(signum)
            self.received_at = time.time()

    def request_stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Behave as if ``sig`` had arrived (tests, and code that wants a graceful stop)."""
        self._on_signal(int(sig), None)

    def stop_requested(self, strategy: _Decider | None = None) -> bool:
        """Whether to stop after this step. A collective when ``strategy`` has several ranks.

        Every rank must call it at the same step boundary. Once the ranks agreed to stop it
        keeps returning True without another collective.
        """
        if self._agreed:
            return True
        local = self._received is not None
        if strategy is not None and strategy.world_size > 1:
            decision = strategy.reduce_boolean_decision(local, all=False)
        else:
            decision = local
        self._agreed = bool(decision)
        return self._agreed

    def __enter__(self) -> PreemptionHandler:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def hand_off(rank_info: RankInfo) -> None:
    """After the resume checkpoint is saved: ask the scheduler to run the job again.

    The cluster environment the rank came from owns this step (SLURM: ``scontrol requeue``);
    local and torchx runs are restarted by their launcher, which sees ``PREEMPTED_EXIT_CODE``.
    Only global rank 0 hands off: one job, one requeue.
    """
    if not rank_info.is_global_zero:
        return
    environment_for(rank_info).hand_off()
