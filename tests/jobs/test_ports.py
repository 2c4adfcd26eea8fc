"""Port choice: derived per run, probed, claimed exclusively, overridable."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from fulmen.errors import LaunchError
from fulmen.jobs import ports


def test_candidates_are_stable_and_in_range() -> None:
    first = ports.candidate_port("run-a")
    assert first == ports.candidate_port("run-a")
    assert ports.PORT_RANGE[0] <= first < ports.PORT_RANGE[1]
    assert ports.candidate_port("run-a", 1) != first


def test_distinct_run_ids_spread_over_the_range() -> None:
    chosen = {ports.candidate_port(f"run-{i}") for i in range(200)}
    assert len(chosen) > 190  # a hash, not "29500 + small offset"


def test_master_port_overrides(tmp_path: Path) -> None:
    assert ports.choose_port("x", environ={"MASTER_PORT": "31234"}, claims=tmp_path) == (31234, False)
    assert ports.choose_port("x", explicit=4242, environ={"MASTER_PORT": "1"}, claims=tmp_path) == (4242, False)


def test_bad_master_port_is_named(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="MASTER_PORT='abc'"):
        ports.choose_port("x", environ={"MASTER_PORT": "abc"}, claims=tmp_path)


def test_claimed_port_is_skipped_and_released(tmp_path: Path) -> None:
    port, claimed = ports.choose_port("same-id", environ={}, claims=tmp_path)
    assert claimed and (tmp_path / str(port)).read_text() == str(os.getpid())
    second, _ = ports.choose_port("same-id", environ={}, claims=tmp_path)
    assert second != port  # even with the same id, a claimed port is not handed out twice
    ports.release_port(port, tmp_path)
    ports.release_port(second, tmp_path)
    assert not any(tmp_path.iterdir())


def test_stale_claim_of_dead_process_is_taken_over(tmp_path: Path) -> None:
    port = ports.candidate_port("stale")
    if not ports.is_port_free(port):
        pytest.skip(f"port {port} is taken by something else on this machine")
    (tmp_path / str(port)).write_text("999999999")
    assert ports.choose_port("stale", environ={}, claims=tmp_path) == (port, True)
    assert (tmp_path / str(port)).read_text() == str(os.getpid())


def test_bound_port_is_not_chosen(tmp_path: Path) -> None:
    port = ports.candidate_port("busy")
    with socket.socket() as sock:
        try:
            sock.bind(("", port))
        except OSError:
            pytest.skip(f"port {port} is taken by something else on this machine")
        sock.listen()
        chosen, _ = ports.choose_port("busy", environ={}, claims=tmp_path)
    assert chosen != port


def test_simultaneous_runs_never_collide(tmp_path: Path) -> None:
    # Worst case: every run derives from the same id at the same moment.
    chosen: list[int] = []
    barrier = threading.Barrier(8)

    def pick() -> None:
        barrier.wait()
        chosen.append(ports.choose_port("same-moment", environ={}, claims=tmp_path)[0])

    threads = [threading.Thread(target=pick) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(chosen)) == 8


def test_master_port_is_spread_over_a_wide_range() -> None:
    chosen = {ports.candidate_port(str(job)) for job in range(1, 2001)}  # SLURM job ids
    low, high = ports.PORT_RANGE
    assert all(low <= p < high for p in chosen)
    # Neighbouring job ids do not share ports, unlike `job_id % N` schemes.
    assert ports.candidate_port("100") != ports.candidate_port("10100")
    assert len(chosen) > 1900
    assert max(chosen) - min(chosen) > (high - low) * 0.9


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$TMPDIR and the fallback places of the claims folder, all inside this test's folder."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    return tmp_path


def _shared_claims(root: Path) -> Path:
    return root / "tmp" / f"fulmen-ports-{os.getuid()}"


def test_claims_folder_is_created_owner_only(private_tmp: Path) -> None:
    import stat

    previous = os.umask(0o022)
    try:
        folder = ports.claims_dir()
        assert ports.claim_port(40123, folder)
    finally:
        os.umask(previous)
    assert folder == _shared_claims(private_tmp)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "40123").stat().st_mode) == 0o600


def test_our_claims_folder_left_open_by_an_older_fulmen_is_closed(private_tmp: Path) -> None:
    import stat

    shared = _shared_claims(private_tmp)
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    assert ports.claims_dir() == shared
    assert stat.S_IMODE(shared.stat().st_mode) == 0o700


@pytest.mark.skipif(os.getuid() != 0, reason="handing a folder to another user needs root")
def test_a_claims_folder_prefilled_by_another_user_is_not_used(private_tmp: Path) -> None:
    shared = _shared_claims(private_tmp)
    shared.mkdir(mode=0o755)
    for port in range(ports.PORT_RANGE[0], ports.PORT_RANGE[0] + 50):
        (shared / str(port)).write_text("1")  # pid 1 is always alive: every claim looks live
    os.chown(shared, 4242, 4242)
    with pytest.warns(UserWarning, match=r"belongs to uid 4242, not to us .*using .*runtime"):
        folder = ports.claims_dir()
    assert folder == private_tmp / "runtime" / "fulmen-ports"
    assert ports.claim_port(ports.PORT_RANGE[0], folder)


def test_a_link_in_place_of_the_claims_folder_is_not_followed(private_tmp: Path) -> None:
    elsewhere = private_tmp / "attacker"
    elsewhere.mkdir()
    _shared_claims(private_tmp).symlink_to(elsewhere)
    with pytest.warns(UserWarning, match="is not a folder"):
        folder = ports.claims_dir()
    assert folder == private_tmp / "runtime" / "fulmen-ports"


def test_listen_socket_binds_only_the_given_address() -> None:
    sock = ports.listen_socket("127.0.0.1", 0)
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()


def test_a_busy_port_is_one_error_naming_port_and_fix() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LaunchError) as raised:
            ports.listen_socket("127.0.0.1", port)
    message = str(raised.value)
    assert message.startswith(f"--master-port {port} is in use on 127.0.0.1") and "\nHINT: " in message
    assert len(message.splitlines()) == 2
