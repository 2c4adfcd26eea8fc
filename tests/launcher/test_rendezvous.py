"""The roll call of a local multi-node launch: notes while waiting, a deadline that names the missing nodes."""

from __future__ import annotations

import socket

import pytest

from fulmen.launcher.rendezvous import JOINED_KEY, NOTE_INTERVAL_S, RendezvousTimeoutError, roll_call, wait_for_node_zero


class DictStore:
    """The two store calls the roll call makes, on a dict; ``arrivals`` add keys as time passes."""

    def __init__(self, arrivals: dict[float, int] | None = None) -> None:
        self.keys: dict[str, str] = {}
        self.arrivals = dict(arrivals or {})

    def set(self, key: str, value: str) -> None:
        self.keys[key] = value

    def check(self, keys: list[str]) -> bool:
        return all(key in self.keys for key in keys)


class FakeTime:
    """A clock that only moves when the code under test sleeps; brings in scheduled nodes."""

    def __init__(self, store: DictStore) -> None:
        self.now = 0.0
        self.store = store

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        for at, rank in list(self.store.arrivals.items()):
            if at <= self.now:
                self.store.set(JOINED_KEY.format(rank), "host")
                del self.store.arrivals[at]


def test_missing_node_is_named_after_the_timeout_with_notes_every_few_seconds() -> None:
    store = DictStore()
    fake, notes = FakeTime(store), []
    with pytest.raises(RendezvousTimeoutError) as exc:
        roll_call(store, nodes=3, node_rank=0, endpoint="10.0.0.1:29400", timeout_s=12, say=notes.append,
                  clock=fake.clock, sleep=fake.sleep)
    assert 12 <= fake.now < 12.5
    assert notes and set(notes) == {"waiting for 2 more node(s) at 10.0.0.1:29400 (1/3 joined)"}
    assert len(notes) == 1 + int((12 - 1) // NOTE_INTERVAL_S)  # the first after a second, then every interval
    message = str(exc.value)
    assert "timed out after 12 s: 1 of 3 node(s) joined; missing node rank(s): 1, 2." in message
    assert "HINT:" in message and "--node-rank N (N = 1, 2)" in message and "--master-port 29400" in message


def test_nodes_that_arrive_in_time_end_the_wait_and_the_count_follows_them() -> None:
    store = DictStore({3.0: 2, 7.5: 1})
    fake, notes = FakeTime(store), []
    roll_call(store, nodes=3, node_rank=0, endpoint="h:1", timeout_s=60, say=notes.append,
              clock=fake.clock, sleep=fake.sleep)
    assert 7.5 <= fake.now < 8
    assert notes == ["waiting for 2 more node(s) at h:1 (1/3 joined)", "waiting for 1 more node(s) at h:1 (2/3 joined)"]


def test_nodes_that_meet_within_a_second_print_nothing() -> None:
    store = DictStore({0.3: 1})
    fake, notes = FakeTime(store), []
    roll_call(store, nodes=2, node_rank=0, endpoint="h:1", timeout_s=60, say=notes.append,
              clock=fake.clock, sleep=fake.sleep)
    assert notes == [] and store.check([JOINED_KEY.format(0), JOINED_KEY.format(1)])


def test_a_node_waiting_for_node_zero_gives_up_naming_it() -> None:
    with socket.socket() as probe:  # a port nobody listens on: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store, notes = DictStore(), []
    fake = FakeTime(store)
    with pytest.raises(RendezvousTimeoutError, match=r"missing node rank\(s\): 0\.") as exc:
        wait_for_node_zero("127.0.0.1", port, nodes=2, timeout_s=3, say=notes.append, clock=fake.clock,
                           sleep=fake.sleep)
    assert notes == [f"waiting for node 0 at 127.0.0.1:{port} (it hosts the rendezvous; --node-rank 0 with the same port)"]
    assert "--node-rank 0 on the missing machine(s)" in str(exc.value)


def test_a_node_finds_node_zero_once_it_listens() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        fake = FakeTime(DictStore())
        wait_for_node_zero("127.0.0.1", server.getsockname()[1], nodes=2, timeout_s=3, say=print,
                           clock=fake.clock, sleep=fake.sleep)
        assert fake.now == 0
