"""The ``bash -c`` script a torchx replica runs, executed by a real bash.

torchx substitutes its macros, Kubernetes hands the script to bash, bash expands the rendezvous
variable: this runs that whole chain with a stand-in ``launch`` that prints its argv, so quoting,
``$`` escaping and the node-rank / rendezvous-host expansion are checked as a pod would see them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("torchx")

from torchx import specs  # noqa: E402

from fulmen.jobs.spec import JobSpec, KubernetesOptions  # noqa: E402
from fulmen.launcher.torchx_appdef import build_appdef  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _argv_in_pod(role: specs.Role, replica_id: int, rank0_env: str, env: dict[str, str], bin_dir: Path) -> list[str]:
    replica = specs.macros.Values(
        img_root="", app_id="a-1", replica_id=str(replica_id), rank0_env=rank0_env
    ).apply(role)
    out = subprocess.run(
        [role.entrypoint, *replica.args],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", **replica.env, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.split("\0")[:-1]


@pytest.fixture
def fake_launch(tmp_path: Path) -> Path:
    script = tmp_path / "launch"
    script.write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@"\n')
    script.chmod(0o755)
    return tmp_path


def test_each_replica_gets_its_node_rank_and_replica_zeros_host(fake_launch: Path) -> None:
    spec = JobSpec(
        entry="train.py",
        args=("--note", "it's $HOME", "--glob", "*.py"),
        cluster="k8s",
        nodes=2,
        nproc_per_node=4,
        k8s=KubernetesOptions(image="img"),
    )
    (role,) = build_appdef(spec, image="img", run_dir="/workspace/runs/r 1").roles
    head = ["--run-dir", "/workspace/runs/r 1", "--nproc-per-node", "4", "--nodes", "2"]
    tail = ["--master-port", "29500", "train.py", "--note", "it's $HOME", "--glob", "*.py"]

    # replica 0: torchx sets TORCHX_RANK0_HOST=localhost for it
    argv0 = _argv_in_pod(role, 0, "TORCHX_RANK0_HOST", {"TORCHX_RANK0_HOST": "localhost"}, fake_launch)
    assert argv0 == head + ["--node-rank", "0", "--master-addr", "localhost"] + tail
    # replica 1: Volcano's env plugin provides replica 0's host name
    env1 = {"VC_TRAIN_0_HOSTS": "train-abc-train-0.train-abc"}
    argv1 = _argv_in_pod(role, 1, "VC_TRAIN_0_HOSTS", env1, fake_launch)
    assert argv1 == head + ["--node-rank", "1", "--master-addr", "train-abc-train-0.train-abc"] + tail
    # no host variable at all: falls back to localhost instead of an empty address
    assert _argv_in_pod(role, 1, "VC_TRAIN_0_HOSTS", {}, fake_launch)[8:10] == ["--master-addr", "localhost"]
