"""Submitting through torchx and the job commands for torchx jobs (fulmen/launcher/torchx_jobs.py).

Kubernetes calls go through the real torchx runner and kubernetes scheduler; only the kubernetes
client's HTTP layer is replaced (FakeKubernetesApi), so what is tested is what runs on a cluster.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

pytest.importorskip("torchx")
pytest.importorskip("kubernetes")

from fulmen.errors import LaunchError  # noqa: E402
from fulmen.jobs import records  # noqa: E402
from fulmen.jobs.exit_codes import CANCELLED_EXIT_CODE  # noqa: E402
from fulmen.jobs.spec import JobSpec  # noqa: E402
from fulmen.launcher import torchx as torchx_backend  # noqa: E402
from fulmen.launcher import torchx_jobs  # noqa: E402
from fulmen.launcher.backends import launch  # noqa: E402

from .test_torchx import FakeKubernetesApi, k8s_spec  # noqa: E402


@pytest.fixture
def fake_cluster(monkeypatch, tmp_path: Path) -> FakeKubernetesApi:
    from torchx.runner import get_runner

    fake = FakeKubernetesApi()
    monkeypatch.setattr(torchx_backend, "open_runner", lambda: get_runner(client=fake.client()))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return fake


@pytest.fixture
def submitted(fake_cluster: FakeKubernetesApi, tmp_path: Path, monkeypatch) -> records.JobRecord:
    monkeypatch.chdir(tmp_path)
    spec = k8s_spec(run_root="runs")  # relative: pods resolve it under the image's workdir
    assert launch(spec) == 0
    return records.latest_record()


def test_k8s_run_submits_the_volcano_job_and_records_it(submitted, fake_cluster, tmp_path) -> None:
    ((method, path, body),) = fake_cluster.calls
    assert (method, path) == ("POST", "/apis/batch.volcano.sh/v1alpha1/namespaces/ml/jobs")
    name = body["metadata"]["name"]
    assert submitted.job_id == f"kubernetes://torchx/ml:{name}"
    assert submitted.backend == "k8s"
    run_dir = Path(submitted.run_dir)
    assert (run_dir / "spec.json").is_file()
    assert JobSpec.from_dict(submitted.spec).k8s.image == "registry.example.com/team/fulmen:0.1.0"
    run = torchx_jobs.TorchxRun.load(run_dir)
    assert (run.handle, run.scheduler, run.role, run.ranks_per_node) == (submitted.job_id, "kubernetes", "train", 8)
    assert run.launcher_pid is None  # nothing local supervises a Kubernetes job
    # the pods see the run under the image's workdir, with the same folder name
    command = body["spec"]["tasks"][0]["template"].spec.containers[0].command[2]
    assert run_dir == tmp_path / "runs" / run_dir.name
    assert f"--run-dir /workspace/runs/{run_dir.name} " in command


@pytest.mark.parametrize(
    ("phase", "state"),
    [("Pending", "PENDING"), ("Running", "RUNNING"), ("Completed", "SUCCEEDED"), ("Failed", "FAILED")],
)
def test_status_asks_the_cluster(submitted, fake_cluster, phase, state) -> None:
    fake_cluster.phase = phase
    assert torchx_backend.TorchxBackend("k8s").describe(submitted).state == state


def test_logs_of_a_rank_read_its_pod(submitted, fake_cluster) -> None:
    lines = list(torchx_jobs.logs_of(Path(submitted.run_dir), rank=9))  # 8 ranks per node: rank 9 is on node 1
    assert lines == ["2026-01-01T00:00:00Z epoch 0 loss 1.0"]
    name = submitted.job_id.rsplit(":", 1)[1]
    assert ("GET", f"/api/v1/namespaces/ml/pods/{name}-train-1-0/log", None) in fake_cluster.calls


def test_cancel_deletes_the_volcano_job(submitted, fake_cluster) -> None:
    torchx_backend.TorchxBackend("k8s").cancel(submitted)
    name = submitted.job_id.rsplit(":", 1)[1]
    assert fake_cluster.calls[-1][:2] == ("DELETE", f"/apis/batch.volcano.sh/v1alpha1/namespaces/ml/jobs/{name}")


@pytest.mark.parametrize(
    ("phase", "code", "state"),
    [("Completed", 0, "SUCCEEDED"), ("Failed", 1, "FAILED"), ("Aborted", 130, "CANCELLED")],
)
def test_k8s_wait_follows_the_job_to_its_end(fake_cluster, tmp_path, capsys, phase, code, state) -> None:
    fake_cluster.phase = phase
    assert launch(k8s_spec(run_root=str(tmp_path / "runs")), wait=True) == code
    record = records.latest_record()
    assert torchx_jobs.TorchxRun.load(Path(record.run_dir)).state == state
    assert f"is {state}" in capsys.readouterr().err


def test_cluster_errors_become_launch_errors_with_a_hint(submitted, monkeypatch) -> None:
    class Unreachable:
        def __enter__(self):
            raise ConnectionRefusedError("connection refused")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torchx_backend, "open_runner", Unreachable)
    with pytest.raises(LaunchError, match="(?s)ConnectionRefusedError.*HINT: check that kubectl"):
        torchx_backend.TorchxBackend("k8s").describe(submitted)


def _local_run(run_dir: Path, **fields) -> torchx_jobs.TorchxRun:
    run = torchx_jobs.TorchxRun(
        handle="local_cwd://torchx/t-1",
        scheduler="local_cwd",
        role="t",
        ranks_per_node=2,
        launcher_host=socket.gethostname(),
        **fields,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    run.save(run_dir)
    return run


def test_local_status_comes_from_the_record_and_the_launcher_pid(tmp_path: Path) -> None:
    _local_run(tmp_path, launcher_pid=os.getpid(), state="RUNNING")
    assert torchx_jobs.status_of(tmp_path) == "RUNNING"
    _local_run(tmp_path, launcher_pid=2**22 + 12345, state="RUNNING")  # above pid_max: never alive
    assert torchx_jobs.status_of(tmp_path) == "LOST"
    _local_run(tmp_path, launcher_pid=2**22 + 12345, state="SUCCEEDED")
    assert torchx_jobs.status_of(tmp_path) == "SUCCEEDED"


def test_local_run_on_another_host_says_where_to_ask(tmp_path: Path) -> None:
    run = _local_run(tmp_path, launcher_pid=1, state="RUNNING")
    run.launcher_host = "elsewhere"
    run.save(tmp_path)
    with pytest.raises(LaunchError, match="HINT: run the command on elsewhere"):
        torchx_jobs.status_of(tmp_path)


def test_local_logs_read_the_rank_log_of_the_run(tmp_path: Path) -> None:
    _local_run(tmp_path, launcher_pid=None, state="SUCCEEDED")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "rank_1.log").write_text("step 1\nstep 2\npartial")
    assert list(torchx_jobs.logs_of(tmp_path, rank=1)) == ["step 1", "step 2", "partial"]
    assert list(torchx_jobs.logs_of(tmp_path, rank=0)) == []


def test_missing_torchx_record_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="torchx.json does not exist"):
        torchx_jobs.status_of(tmp_path)


def test_torchx_record_round_trips(tmp_path: Path) -> None:
    run = _local_run(tmp_path, launcher_pid=7, replica_log_dirs=["/x/0"], state="RUNNING")
    assert torchx_jobs.TorchxRun.load(tmp_path) == run
    assert json.loads((tmp_path / "torchx.json").read_text())["handle"] == run.handle


def test_ctrl_c_while_waiting_on_k8s_leaves_the_job_running(fake_cluster, tmp_path, monkeypatch, capsys) -> None:
    import signal

    monkeypatch.setattr(torchx_backend, "POLL_INTERVAL_S", {"kubernetes": 0.01, "local_cwd": 0.01})
    client = fake_cluster.client()
    answer = client.call_api

    def interrupted_status(resource_path, method, *args, **kwargs):
        if method == "GET":
            signal.raise_signal(signal.SIGINT)  # Ctrl-C arrives while we wait
        return answer(resource_path, method, *args, **kwargs)

    monkeypatch.setattr(client, "call_api", interrupted_status)
    from torchx.runner import get_runner

    monkeypatch.setattr(torchx_backend, "open_runner", lambda: get_runner(client=client))
    code = launch(k8s_spec(run_root=str(tmp_path / "runs")), wait=True)
    assert code == CANCELLED_EXIT_CODE
    assert "keeps running" in capsys.readouterr().err
    assert not [call for call in fake_cluster.calls if call[0] == "DELETE"]
    record = records.latest_record()
    assert torchx_jobs.TorchxRun.load(Path(record.run_dir)).state == "SUBMITTED"


def test_k8s_job_gets_a_secret_env_value_that_its_records_do_not_store(fake_cluster, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    secret = "hf-k8s-secret-42"
    assert launch(k8s_spec(run_root="runs", env=(("HF_TOKEN", secret), ("NCCL_DEBUG", "WARN")))) == 0
    ((_, _, body),) = fake_cluster.calls
    assert secret in str(body)  # the pods get it (in the job request, as torchx sends env)
    record = records.latest_record()
    run_dir = Path(record.run_dir)
    for path in (run_dir / "spec.json", run_dir / "job.json"):
        assert secret not in path.read_text() and "HF_TOKEN" in path.read_text()
