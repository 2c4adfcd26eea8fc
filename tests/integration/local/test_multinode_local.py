"""`launch --nodes 2 --node-rank R --master-addr H`: two launchers form one group (what each
torchx pod runs). Both "nodes" are this machine."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fulmen.jobs import ports
from fulmen.jobs.exit_codes import RENDEZVOUS_TIMEOUT_EXIT_CODE

from .conftest import child_env, launch_cmd, run, start

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SCRIPT = Path(__file__).resolve().parent / "scripts" / "allreduce.py"


def test_two_launchers_form_one_group(tmp_path: Path) -> None:
    port, _ = ports.choose_port(f"multinode-{tmp_path}", environ={})
    env = child_env(tmp_path)
    common = ["--nodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(port), "--name", "mn"]
    try:
        node1 = start(launch_cmd(*common, "--node-rank", "1", "--run-dir", str(tmp_path / "n1"), str(SCRIPT),
                                 str(tmp_path)), env)
        node0 = run(launch_cmd(*common, "--node-rank", "0", "--run-dir", str(tmp_path / "n0"), str(SCRIPT),
                               str(tmp_path)), env)
        node1_out, node1_err = node1.communicate(timeout=60)
    finally:
        ports.release_port(port)
    assert node0.returncode == 0, node0.stderr[-2000:]
    assert node1.returncode == 0, node1_err[-2000:]
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [(s["RANK"], s["LOCAL_RANK"], s["GROUP_RANK"], s["WORLD_SIZE"]) for s in seen] == [
        ("0", "0", "0", "2"), ("1", "0", "1", "2")]
    assert seen[0]["sum"] == seen[1]["sum"] == 1.0
    assert seen[0]["FULMEN_RUN_DIR"] == str(tmp_path / "n0") and seen[0]["FULMEN_RESTART_COUNT"] == "0"
    assert (tmp_path / "n1" / "logs" / "rank_1.log").is_file()
    assert "rank 1 pid" in node1_err  # node 1's launcher reports its own rank, by global rank


def test_restarts_across_nodes_meet_at_the_next_port(tmp_path: Path) -> None:
    port, _ = ports.choose_port(f"multinode-restart-{tmp_path}", environ={})
    env = child_env(tmp_path)
    common = ["--nodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(port), "--name", "mnr",
              "--max-restarts", "1"]
    try:
        node1 = start(launch_cmd(*common, "--node-rank", "1", "--run-dir", str(tmp_path / "n1"), str(SCRIPT),
                                 str(tmp_path), "crash-rank-1-once"), env)
        node0 = run(launch_cmd(*common, "--node-rank", "0", "--run-dir", str(tmp_path / "n0"), str(SCRIPT),
                               str(tmp_path), "crash-rank-1-once"), env)
        _, node1_err = node1.communicate(timeout=60)
    finally:
        ports.release_port(port)
    assert node1.returncode == 0, node1_err[-2000:]
    assert node0.returncode == 0, node0.stderr[-2000:]
    assert "restarting all ranks (restart 1 of 1)" in node1_err
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [s["FULMEN_RESTART_COUNT"] for s in seen] == ["1", "1"] and seen[0]["sum"] == 1.0


def test_a_missing_node_is_reported_while_waiting_and_named_at_the_deadline(tmp_path: Path) -> None:
    """`launch --nodes 2` with no second launcher: notes, then exit 69 naming node 1, within seconds."""
    port, _ = ports.choose_port(f"multinode-missing-{tmp_path}", environ={})
    env = child_env(tmp_path)
    try:
        started = time.monotonic()
        node0 = run(launch_cmd("--nnodes", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
                               "--rdzv-timeout", "2.5", "--run-dir", str(tmp_path / "n0"), str(SCRIPT),
                               str(tmp_path)), env, timeout=30)
        took = time.monotonic() - started
    finally:
        ports.release_port(port)
    assert node0.returncode == RENDEZVOUS_TIMEOUT_EXIT_CODE, node0.stderr[-2000:]
    assert f"fulmen: waiting for 1 more node(s) at 127.0.0.1:{port} (1/2 joined)" in node0.stderr
    assert (f"rendezvous at 127.0.0.1:{port} timed out after 2.5 s: 1 of 2 node(s) joined; "
            "missing node rank(s): 1.") in node0.stderr
    assert "Traceback" not in node0.stderr and took < 20
    assert not (tmp_path / "rank0.json").exists()  # no rank ran
