"""PreemptionHandler: handlers only set a flag, repeat-safe, restored; agreed stop across ranks."""

from __future__ import annotations

import os
import signal
import sys
import types

import pytest

from fulmen.jobs.exit_codes import PREEMPTED_EXIT_CODE
from fulmen.runtime.preemption import HANDLED_SIGNALS, PreemptionHandler, hand_off
from fulmen.runtime.ranks import RankInfo


def test_exit_code_is_ex_tempfail() -> None:
    assert PREEMPTED_EXIT_CODE == 75


def test_handles_the_documented_signals() -> None:
    assert set(HANDLED_SIGNALS) == {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2}


@pytest.mark.parametrize("sig", HANDLED_SIGNALS, ids=lambda s: s.name)
def test_signal_sets_flag_and_previous_handler_is_restored(sig: signal.Signals) -> None:
    previous = signal.getsignal(sig)
    with PreemptionHandler() as handler:
        assert not handler.stop_requested()
        os.kill(os.getpid(), sig)
        os.kill(os.getpid(), sig)  # a repeat changes nothing
        assert handler.received_signal == sig
        assert handler.stop_requested()
    assert signal.getsignal(sig) is previous


def test_first_signal_is_the_one_remembered() -> None:
    with PreemptionHandler() as handler:
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGTERM)
        assert handler.received_signal == signal.SIGUSR2


def test_install_twice_keeps_the_original_previous_handlers() -> None:
    previous = signal.getsignal(signal.SIGUSR1)
    handler = PreemptionHandler()
    handler.install()
    handler.install()
    handler.restore()
    assert signal.getsignal(signal.SIGUSR1) is previous


class FakeStrategy:
    """Stands in for a 2-rank strategy: the other rank's decision is given."""

    world_size = 2

    def __init__(self, other_rank_stops: bool) -> None:
        self.other = other_rank_stops
        self.calls: list[tuple[bool, bool]] = []

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        self.calls.append((decision, all))
        return (decision and self.other) if all else (decision or self.other)


def test_stop_is_agreed_when_another_rank_got_the_signal() -> None:
    handler = PreemptionHandler()
    strategy = FakeStrategy(other_rank_stops=True)
    assert handler.stop_requested(strategy)
    assert strategy.calls == [(False, False)]  # "any rank", not "all ranks"
    assert handler.stop_requested(strategy)  # agreed once: no further collectives
    assert len(strategy.calls) == 1


def test_no_stop_without_signal_anywhere() -> None:
    handler = PreemptionHandler()
    assert not handler.stop_requested(FakeStrategy(other_rank_stops=False))


def test_request_stop_without_a_signal() -> None:
    handler = PreemptionHandler()
    handler.request_stop(signal.SIGUSR1)
    assert handler.stop_requested() and handler.received_signal == signal.SIGUSR1


def test_hand_off_requeues_only_on_slurm_rank_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[RankInfo] = []
    module = types.ModuleType("fulmen.slurm.requeue")
    module.requeue_job = calls.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fulmen.slurm.requeue", module)
    slurm_zero = RankInfo(world_size=2, local_world_size=2, source="slurm")
    hand_off(slurm_zero)
    hand_off(RankInfo(global_rank=1, local_rank=1, world_size=2, local_world_size=2, source="slurm"))
    hand_off(RankInfo(source="env"))
    assert calls == [slurm_zero]
