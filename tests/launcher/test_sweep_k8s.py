"""``launch --sweep ... --cluster k8s`` (fulmen/launcher/sweep_k8s.py): one torchx job per trial.

There is no Kubernetes here: the dry-run path is checked on the YAML torchx renders, and the
submissions go through torchx's real kubernetes scheduler with the client's HTTP layer replaced
(``FakeKubernetesApi``), as in test_torchx_jobs.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torchx")
pytest.importorskip("kubernetes")
yaml = pytest.importorskip("yaml")

from fulmen.errors import LaunchError  # noqa: E402
from fulmen.launcher import sweep_run  # noqa: E402
from fulmen.launcher import torchx as torchx_backend  # noqa: E402
from fulmen.launcher.sweep_cli import trial_rows  # noqa: E402
from fulmen.launcher.sweep_run import read_trial_state, run_sweep, trial_dir  # noqa: E402
from fulmen.launcher.sweep_status import sweep_screen  # noqa: E402
from fulmen.sweep import TRIAL_VARIABLE  # noqa: E402
from fulmen.sweep.space import SweepSpace, parse_sweep_option  # noqa: E402

from .test_torchx import FakeKubernetesApi, k8s_spec  # noqa: E402

SPACE = SweepSpace((parse_sweep_option("lr=0.1,0.2"),))
POST = "POST"


@pytest.fixture
def fake_cluster(monkeypatch, tmp_path: Path) -> FakeKubernetesApi:
    from torchx.runner import get_runner

    fake = FakeKubernetesApi()
    monkeypatch.setattr(torchx_backend, "open_runner", lambda: get_runner(client=fake.client()))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return fake


def spec_in(tmp_path: Path, **overrides):
    return k8s_spec(nodes=1, run_root=str(tmp_path / "runs"), **overrides)


def posted(fake: FakeKubernetesApi) -> list[dict]:
    """The Volcano jobs submitted, as plain JSON (the client posts V1Pod objects inside a dict)."""
    from kubernetes.client import ApiClient

    return [ApiClient().sanitize_for_serialization(body) for method, _, body in fake.calls if method == POST]


def container_env(job: dict) -> dict[str, str]:
    container = job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]
    return {item["name"]: item["value"] for item in container["env"]}


def test_dry_run_prints_one_volcano_job_per_trial_and_creates_nothing(tmp_path: Path, capsys) -> None:
    assert run_sweep(spec_in(tmp_path), SPACE, dry_run=True) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "runs").exists()
    parts = [part for part in out.split("# trial_") if part.strip()]
    assert [part.splitlines()[0] for part in parts] == ["0000: --epochs 2 --lr 0.1", "0001: --epochs 2 --lr 0.2"]
    for index, part in enumerate(parts):
        job = yaml.safe_load("\n".join(line for line in part.splitlines()[1:]))
        env = container_env(job)
        sweep_name = env["FULMEN_RUN_DIR"].split("/")[-2]
        assert sweep_name.startswith("train-sweep-")
        # the pods' run dir is <run_root>/<sweep>/trial_NNNN: trials of two sweeps never share one
        assert env["FULMEN_RUN_DIR"] == f"{tmp_path}/runs/{sweep_name}/trial_{index:04d}"
        trial = json.loads(env[TRIAL_VARIABLE])
        assert trial == {"sweep_dir": f"{tmp_path}/runs/{sweep_name}", "index": index, "values": {"lr": [0.1, 0.2][index]}}
        command = " ".join(job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["command"])
        assert f"--lr {[0.1, 0.2][index]}" in command
        assert job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["image"] == k8s_spec().k8s.image


def test_parallel_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match=r"--parallel 2: on --cluster k8s(.|\n)*HINT: drop --parallel"):
        run_sweep(spec_in(tmp_path), SPACE, parallel=2, dry_run=True)


def test_each_trial_is_submitted_as_its_own_job_and_recorded(fake_cluster, tmp_path: Path) -> None:
    assert run_sweep(spec_in(tmp_path), SPACE) == 0
    bodies = posted(fake_cluster)
    assert len(bodies) == 2
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    assert [t["values"] for t in json.loads((sweep_dir / "sweep.json").read_text())["trials"]] == [{"lr": 0.1}, {"lr": 0.2}]
    for index, body in enumerate(bodies):
        state = read_trial_state(sweep_dir, index)
        assert state["state"] == "SUBMITTED"
        assert state["job_id"] == f"kubernetes://torchx/ml:{body['metadata']['name']}"
        assert (trial_dir(sweep_dir, index) / "torchx.json").is_file()
        assert container_env(body)["FULMEN_RUN_DIR"].endswith(f"{sweep_dir.name}/trial_{index:04d}")


def test_states_come_from_the_cluster_and_are_kept_once_final(fake_cluster, tmp_path: Path) -> None:
    run_sweep(spec_in(tmp_path), SPACE)
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    assert [row["state"] for row in trial_rows(sweep_dir)] == ["RUNNING", "RUNNING"]
    screen = sweep_screen(sweep_dir)
    assert screen.live and "2 RUNNING" in screen.lines[0]
    fake_cluster.phase = "Completed"
    assert [row["state"] for row in trial_rows(sweep_dir)] == ["COMPLETED", "COMPLETED"]
    fake_cluster.phase = "Running"  # a final state is not asked again
    assert read_trial_state(sweep_dir, 1)["k8s_state"] == "SUCCEEDED"
    assert [row["state"] for row in trial_rows(sweep_dir)] == ["COMPLETED", "COMPLETED"]
    assert not sweep_screen(sweep_dir).live


def test_resume_resubmits_only_trials_that_failed_or_never_ran(fake_cluster, tmp_path: Path, capsys) -> None:
    spec = spec_in(tmp_path)
    run_sweep(spec, SPACE)
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    resumed = spec_in(tmp_path, run_dir=str(sweep_dir))
    fake_cluster.calls.clear()
    assert run_sweep(resumed, SPACE) == 0  # both still running: nothing is submitted twice
    assert posted(fake_cluster) == []
    assert "still live or of unknown state: trial_0000 (RUNNING), trial_0001 (RUNNING)" in capsys.readouterr().err
    fake_cluster.phase = "Completed"
    sweep_run.trial_state(sweep_dir, 0)  # trial 0 finishes
    fake_cluster.phase = "Failed"
    assert sweep_run.trial_state(sweep_dir, 1) == "FAILED"
    first_handle = read_trial_state(sweep_dir, 1)["job_id"]
    fake_cluster.phase = "Running"
    assert run_sweep(resumed, SPACE) == 0
    (body,) = posted(fake_cluster)
    assert "--lr 0.2" in " ".join(body["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["command"])
    again = read_trial_state(sweep_dir, 1)
    assert again["state"] == "SUBMITTED" and again["job_id"] != first_handle
    assert read_trial_state(sweep_dir, 0)["state"] == "COMPLETED"


def test_an_unreachable_cluster_shows_unknown_and_blocks_no_other_row(fake_cluster, tmp_path: Path, monkeypatch,
                                                                      capsys) -> None:
    run_sweep(spec_in(tmp_path), SPACE)
    (sweep_dir,) = (tmp_path / "runs").iterdir()

    def unreachable():
        raise ConnectionError("connection refused")

    monkeypatch.setattr(torchx_backend, "open_runner", unreachable)
    rows = trial_rows(sweep_dir)
    assert [row["state"] for row in rows] == ["UNKNOWN", "UNKNOWN"]
    assert rows[0]["job_id"].startswith("kubernetes://torchx/ml:")
    assert "kubectl get vcjob" in capsys.readouterr().err


def test_wait_follows_every_trial_and_names_the_failed_ones(fake_cluster, tmp_path: Path, monkeypatch,
                                                            capsys) -> None:
    from fulmen.launcher import sweep_k8s

    monkeypatch.setattr(sweep_k8s, "POLL_INTERVAL_S", 0.0)
    fake_cluster.phase = "Failed"
    assert run_sweep(spec_in(tmp_path), SPACE, wait=True) == 1
    assert "2 of 2 trial(s) FAILED: trial_0000 (exit 1; lr=0.1)" in capsys.readouterr().err


def test_sweep_cancel_deletes_the_live_trials_volcano_jobs(fake_cluster, tmp_path: Path) -> None:
    from fulmen.launcher.sweep_cli import cancel

    run_sweep(spec_in(tmp_path), SPACE)
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    names = [body["metadata"]["name"] for body in posted(fake_cluster)]
    assert cancel(str(sweep_dir), trial=1) == 0
    deleted = [path for method, path, _ in fake_cluster.calls if method == "DELETE"]
    assert len(deleted) == 1 and deleted[0].endswith(f"/namespaces/ml/jobs/{names[1]}")
    assert [row["state"] for row in trial_rows(sweep_dir)] == ["RUNNING", "FAILED"]


def test_a_failed_submission_says_how_many_went_through_and_how_to_resume(fake_cluster, tmp_path: Path,
                                                                          monkeypatch) -> None:
    from fulmen.launcher.torchx import TorchxBackend

    real_submit = TorchxBackend.submit
    calls = []

    def submit_once(self, request):
        calls.append(request)
        if len(calls) > 1:
            raise ValueError("No host specified.")
        return real_submit(self, request)

    monkeypatch.setattr(TorchxBackend, "submit", submit_once)
    with pytest.raises(LaunchError, match=r"trial_0001 failed \(ValueError: No host specified.\); 1 of 2(.|\n)*--run-dir"):
        run_sweep(spec_in(tmp_path), SPACE)
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    assert read_trial_state(sweep_dir, 0)["state"] == "SUBMITTED"
    assert read_trial_state(sweep_dir, 1) is None
    monkeypatch.setattr(TorchxBackend, "submit", real_submit)
    fake_cluster.calls.clear()
    assert run_sweep(spec_in(tmp_path, run_dir=str(sweep_dir)), SPACE) == 0
    (body,) = posted(fake_cluster)
    assert body["metadata"]["name"] and read_trial_state(sweep_dir, 1)["state"] == "SUBMITTED"
