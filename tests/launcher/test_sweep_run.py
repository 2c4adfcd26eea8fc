"""The sweep driver's pure parts: a trial's spec, the sweep dir, the space a resumed sweep runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fulmen.errors import LaunchError
from fulmen.jobs.spec import JobSpec, KubernetesOptions
from fulmen.launcher import sweep_run
from fulmen.launcher.sweep_run import device_slots, pin_space, read_sweep, run_sweep, sweep_dir_for, trial_spec, write_sweep
from fulmen.sweep import TRIAL_VARIABLE
from fulmen.sweep.space import SweepSpace, parse_sweep_option

SPEC = JobSpec(entry="train.py", args=("--lr", "9", "--epochs", "2"), env=(("A", "1"),), nproc_per_node=2)


def test_a_trial_is_the_users_launch_in_its_own_run_dir_with_its_values(tmp_path: Path) -> None:
    trial = SweepSpace((parse_sweep_option("lr=0.1,0.01"),)).generate()[1]
    one = trial_spec(SPEC, trial, tmp_path)
    assert one.run_dir == str(tmp_path / "trial_0001")
    assert one.args == ("--epochs", "2", "--lr", "0.01")
    assert one.nproc_per_node == 2
    env = dict(one.env)
    assert env["A"] == "1"
    assert json.loads(env[TRIAL_VARIABLE]) == {"sweep_dir": str(tmp_path), "index": 1, "values": {"lr": 0.01}}


def test_a_new_sweep_dir_is_named_after_the_job_and_run_dir_resumes_one(tmp_path: Path) -> None:
    fresh = sweep_dir_for(JobSpec(entry="train.py", run_root=str(tmp_path)))
    assert fresh.parent == tmp_path.resolve() and fresh.name.startswith("train-sweep-")
    assert sweep_dir_for(JobSpec(entry="train.py", run_dir=str(tmp_path / "s"))) == (tmp_path / "s").resolve()


def test_an_unseeded_random_sweep_keeps_its_seed_so_a_resume_regenerates_the_same_trials(tmp_path: Path) -> None:
    space = SweepSpace((parse_sweep_option("lr=range(1, 100, 100)"),), "random", trials=5)
    pinned = pin_space(space, tmp_path)
    assert pinned.seed is not None
    write_sweep(tmp_path, SPEC, pinned, pinned.generate())
    resumed = pin_space(space, tmp_path)  # the same command, no --sweep-seed
    assert [t.texts for t in resumed.generate()] == [t.texts for t in pinned.generate()]
    assert read_sweep(tmp_path)["trials"][0]["dir"] == "trial_0000"  # type: ignore[index]


def test_resuming_with_another_space_or_a_single_runs_dir_is_refused(tmp_path: Path) -> None:
    space = SweepSpace((parse_sweep_option("lr=0.1,0.01"),))
    write_sweep(tmp_path, SPEC, space, space.generate())
    with pytest.raises(LaunchError, match="same --sweep options"):
        pin_space(SweepSpace((parse_sweep_option("lr=0.1,0.02"),)), tmp_path)
    single = tmp_path / "single"
    single.mkdir()
    (single / "spec.json").write_text("{}")
    with pytest.raises(LaunchError, match="not a sweep"):
        pin_space(space, single)


def test_parallel_zero_and_other_clusters_are_refused(tmp_path: Path) -> None:
    space = SweepSpace((parse_sweep_option("lr=0.1"),))
    with pytest.raises(LaunchError, match="--parallel must be >= 1"):
        run_sweep(SPEC, space, parallel=0)
    with pytest.raises(LaunchError, match="--cluster torchx-local sweeps are not built"):
        run_sweep(JobSpec(entry="train.py", cluster="torchx-local", k8s=KubernetesOptions(image="img")), space)


def test_dry_run_lists_the_trials_to_run_and_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = JobSpec(entry="train.py", run_root=str(tmp_path / "runs"))
    space = SweepSpace((parse_sweep_option("lr=0.1,0.01"), parse_sweep_option("hidden=8")))
    assert run_sweep(spec, space, parallel=2, dry_run=True) == 0
    out = capsys.readouterr().out.splitlines()
    assert "2 trial(s), 2 to run, 2 at a time" in out[0]
    assert out[1:] == ["  trial_0000: --lr 0.1 --hidden 8", "  trial_0001: --lr 0.01 --hidden 8"]
    assert not (tmp_path / "runs").exists()


def test_device_slots_are_disjoint_groups_of_the_visible_gpus() -> None:
    assert device_slots(8, 2, None) == [("0", "1"), ("2", "3"), ("4", "5"), ("6", "7")]
    assert device_slots(4, 3, None) == [("0", "1", "2")]
    assert device_slots(4, 2, "3,5,6,7") == [("3", "5"), ("6", "7")]
    with pytest.raises(LaunchError, match="lists 2"):
        device_slots(4, 2, "0,1")
    with pytest.raises(LaunchError, match="between 1 and --gpus 4"):
        device_slots(4, 5, None)


@pytest.mark.parametrize(
    ("spec", "parallel", "message"),
    [
        (JobSpec(entry="train.py", gpus_per_node=4), 3, "HINT: --parallel 2"),
        (JobSpec(entry="train.py"), 1, "no --gpus was given"),
        (JobSpec(entry="train.py", cluster="slurm", gpus_per_node=4), 1, "its own allocation"),
    ],
)
def test_gpus_per_trial_never_oversubscribes(tmp_path: Path, spec: JobSpec, parallel: int, message: str) -> None:
    space = SweepSpace((parse_sweep_option("lr=0.1,0.01"),))
    with pytest.raises(LaunchError, match=message):
        run_sweep(spec, space, parallel=parallel, gpus_per_trial=2, dry_run=True)


RECORD_DEVICES = """\
import json, os, sys, time
spec = json.loads(sys.stdin.read())
start = time.time()
time.sleep(0.6)
path = os.path.join(spec["run_dir"], "devices.json")
json.dump({"devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "gpus": spec["gpus_per_node"],
           "start": start, "end": time.time()}, open(path, "w"))
"""


def test_concurrent_local_trials_each_get_their_own_gpu_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_run, "TRIAL_COMMAND", (sys.executable, "-c", RECORD_DEVICES))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    spec = JobSpec(entry="train.py", gpus_per_node=4, run_root=str(tmp_path))
    space = SweepSpace((parse_sweep_option("lr=1,2,3,4,5"),))
    assert run_sweep(spec, space, parallel=2, gpus_per_trial=2) == 0
    seen = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("*/trial_*/devices.json"))]
    assert len(seen) == 5 and {s["gpus"] for s in seen} == {2}
    assert {s["devices"] for s in seen} == {"0,1", "2,3"}
    for a in seen:  # two trials running at the same moment never share a GPU
        for b in seen:
            if a is not b and a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["devices"] != b["devices"]
