"""How the nodes of a local multi-node launch meet: one TCP store per attempt, a roll call, a deadline.

torchrun's static rendezvous blocks inside ``TCPStore(...)`` until every node has connected,
silently and for as long as the store's timeout: a missing second node looks like a hang.
Here node 0 opens the store without waiting, every node writes ``fulmen/joined/<node rank>``,
and each node polls those keys: while some are missing it says so every few seconds
("waiting for 1 more node(s) at ADDR:PORT (1/2 joined)"), and after ``--rdzv-timeout`` seconds
it raises :class:`RendezvousTimeoutError` naming the node ranks that never came.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Protocol

from torch.distributed import PrefixStore, TCPStore
from torch.distributed.elastic.rendezvous import RendezvousHandler, RendezvousInfo, RendezvousStoreInfo

from fulmen.errors import LaunchError
from fulmen.jobs import ports

NOTE_INTERVAL_S = 5.0  # how often a waiting node says what it waits for
FIRST_NOTE_AFTER_S = 1.0  # nodes that start within a second of each other print nothing
POLL_S = 0.1
JOINED_KEY = "fulmen/joined/{}"


class RendezvousTimeoutError(LaunchError):
    """Not every node joined the rendezvous within ``--rdzv-timeout`` seconds."""


class KeyStore(Protocol):
    """The part of a torch ``Store`` the roll call uses (a dict-backed fake in tests)."""

    def set(self, key: str, value: str) -> None: ...

    def check(self, keys: list[str]) -> bool: ...


def missing_nodes(store: KeyStore, nodes: int) -> list[int]:
    """Node ranks that have not written their ``joined`` key yet."""
    return [rank for rank in range(nodes) if not store.check([JOINED_KEY.format(rank)])]


def roll_call(
    store: KeyStore,
    *,
    nodes: int,
    node_rank: int,
    endpoint: str,
    timeout_s: float,
    say: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    started: float | None = None,
) -> None:
    """Announce this node, then wait until every node has; notes while waiting, an error at the deadline.

    ``started`` is when this node began waiting (the connection to node 0 counts against the
    same deadline); default: now.
    """
    store.set(JOINED_KEY.format(node_rank), socket.gethostname())
    started = clock() if started is None else started
    next_note = started + FIRST_NOTE_AFTER_S
    while missing := missing_nodes(store, nodes):
        now = clock()
        if now - started >= timeout_s:
            raise RendezvousTimeoutError(timeout_message(missing, nodes=nodes, endpoint=endpoint, timeout_s=timeout_s))
        if now >= next_note:
            say(f"waiting for {len(missing)} more node(s) at {endpoint} ({nodes - len(missing)}/{nodes} joined)")
            next_note = now + NOTE_INTERVAL_S
        sleep(POLL_S)


def timeout_message(
    missing: Sequence[int], *, nodes: int, endpoint: str, timeout_s: float, seen: str | None = None
) -> str:
    """What a node prints when the others did not come: who is missing and how to start them."""
    ranks = ", ".join(str(rank) for rank in missing)
    addr, _, port = endpoint.rpartition(":")
    seen = seen or f"{nodes - len(missing)} of {nodes} node(s) joined"
    which = f"--node-rank {ranks}" if len(missing) == 1 else f"--node-rank N (N = {ranks})"
    return (
        f"rendezvous at {endpoint} timed out after {timeout_s:g} s: {seen}; missing node rank(s): {ranks}.\n"
        f"HINT: start the same launch command with {which} on the missing machine(s), with --nodes {nodes} "
        f"--master-addr {addr} --master-port {port}; or wait longer with --rdzv-timeout SECONDS."
    )


def wait_for_node_zero(
    addr: str,
    port: int,
    *,
    nodes: int,
    timeout_s: float,
    say: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """On nodes 1..N-1: wait until node 0's store accepts connections (node 0 may start later).

    A plain socket probe, because a ``TCPStore`` client that cannot connect logs a C++ stack
    trace on every retry.
    """
    started = clock()
    next_note = started + FIRST_NOTE_AFTER_S
    while True:
        try:
            with socket.create_connection((addr, port), timeout=1.0):
                return
        except OSError:
            pass
        now = clock()
        if now - started >= timeout_s:
            seen = "nothing answered there (node 0 hosts the rendezvous)"
            raise RendezvousTimeoutError(
                timeout_message([0], nodes=nodes, endpoint=f"{addr}:{port}", timeout_s=timeout_s, seen=seen)
            )
        if now >= next_note:
            say(f"waiting for node 0 at {addr}:{port} (it hosts the rendezvous; --node-rank 0 with the same port)")
            next_note = now + NOTE_INTERVAL_S
        sleep(0.5)


class PerAttemptRendezvous(RendezvousHandler):
    """torchrun's static rendezvous, except that every attempt gets a fresh store on a fresh port,
    and a roll call with progress notes and a deadline (module docstring) instead of a silent wait.

    With one store for the whole run (torchrun's static backend), the ranks of a restarted
    group find the previous attempt's keys (gloo addresses of dead processes) and fail to
    connect; the workers use the store without a per-attempt prefix. A new store per attempt
    has no stale keys. Node 0 hosts the store; on the other nodes ``port_for_attempt`` must
    give the same ports (the local backend uses ``master_port + attempt`` there).
    """

    def __init__(
        self,
        master_addr: str,
        port_for_attempt: Callable[[int], int],
        node_rank: int,
        nodes: int,
        run_id: str,
        *,
        timeout_s: float,
        say: Callable[[str], None],
    ) -> None:
        self.master_addr = master_addr
        self._port_for_attempt = port_for_attempt
        self.node_rank, self.nodes, self.run_id = node_rank, nodes, run_id
        self.timeout_s = timeout_s
        self._say = say
        self._attempt = 0

    def get_backend(self) -> str:
        return "fulmen-static"

    @property
    def use_agent_store(self) -> bool:
        return True

    def next_rendezvous(self) -> RendezvousInfo:
        port = self._port_for_attempt(self._attempt)
        self._attempt += 1
        started = time.monotonic()
        if self.node_rank != 0:
            wait_for_node_zero(self.master_addr, port, nodes=self.nodes, timeout_s=self.timeout_s, say=self._say)
        is_server = self.node_rank == 0
        # Node 0 listens on the master address only (TCPStore alone would take every interface);
        # the store owns the socket from here on.
        listen_fd = ports.listen_socket(self.master_addr, port).detach() if is_server else None
        store = TCPStore(
            self.master_addr,
            port,
            self.nodes,
            is_server,
            timedelta(seconds=self.timeout_s),
            wait_for_workers=False,
            multi_tenant=True,
            master_listen_fd=listen_fd,
        )
        roll_call(
            store, nodes=self.nodes, node_rank=self.node_rank, endpoint=f"{self.master_addr}:{port}",
            timeout_s=self.timeout_s, say=self._say, started=started,
        )
        return RendezvousInfo(
            PrefixStore(self.run_id, store), self.node_rank, self.nodes, RendezvousStoreInfo(self.master_addr, port)
        )

    def is_closed(self) -> bool:
        return False

    def set_closed(self) -> None:
        pass

    def num_nodes_waiting(self) -> int:
        return 0

    def get_run_id(self) -> str:
        return self.run_id

    def shutdown(self) -> bool:
        return True
