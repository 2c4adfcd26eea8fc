"""CLI: argv -> JobSpec, backend dispatch, errors before anything starts."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from fulmen.errors import LaunchError
from fulmen.jobs.backend import Submitted
from fulmen.jobs.spec import JobSpec
from fulmen.launcher import backends, cli


def test_script_and_its_args_are_separated_from_launcher_options() -> None:
    spec, dry_run, wait = cli.parse_launch_args(["--nproc-per-node", "2", "train.py", "--lr", "0.1", "--nodes", "3"])
    assert (spec.entry, spec.args, spec.nproc_per_node, spec.nodes) == ("train.py", ("--lr", "0.1", "--nodes", "3"), 2, 1)
    assert not dry_run and not wait and not spec.entry_is_module


def test_module_takes_everything_after_it() -> None:
    spec, _, _ = cli.parse_launch_args(["--gpus", "2", "-m", "pkg.train", "--epochs", "3", "-m", "x"])
    assert spec.entry_is_module and spec.entry == "pkg.train"
    assert spec.args == ("--epochs", "3", "-m", "x") and spec.gpus_per_node == 2


def test_every_jobspec_field_has_a_flag() -> None:
    argv = [
        "--cluster", "slurm", "--nodes", "2", "--gpus", "4", "--node-rank", "1", "--master-addr", "h",
        "--master-port", "1234", "--max-restarts", "2", "--job-name", "exp", "--run-root", "/r",
        "--run-dir", "/r/x", "--env", "A=1", "--env", "B=x=y", "--partition", "p", "--time", "1:00:00",
        "--account", "acc", "--qos", "hi", "--constraint", "a100", "--mem", "64G", "--cpus-per-task", "8",
        "--exclusive", "--sbatch-arg", "gres=gpu:4", "--signal", "USR1@120", "--max-requeues", "5",
        "--requeue-on-failure", "--image", "img:1", "--namespace", "ns", "--queue", "q", "--dry-run", "--wait",
        "train.py", "a",
    ]
    spec, dry_run, wait = cli.parse_launch_args(argv)
    assert dry_run and wait
    assert spec.to_dict() == JobSpec.from_dict({**spec.to_dict()}).to_dict()
    assert (spec.cluster, spec.nodes, spec.gpus_per_node, spec.node_rank) == ("slurm", 2, 4, 1)
    assert (spec.master_addr, spec.master_port, spec.max_restarts, spec.name) == ("h", 1234, 2, "exp")
    assert (spec.run_root, spec.run_dir, spec.env) == ("/r", "/r/x", (("A", "1"), ("B", "x=y")))
    s = spec.slurm
    assert (s.partition, s.time, s.account, s.qos, s.constraint, s.mem, s.cpus_per_task) == (
        "p", "1:00:00", "acc", "hi", "a100", "64G", 8)
    assert s.exclusive and s.requeue_on_failure and (s.signal, s.max_requeues) == ("USR1@120", 5)
    assert s.extra == (("gres", "gpu:4"),)
    assert (spec.k8s.image, spec.k8s.namespace, spec.k8s.queue) == ("img:1", "ns", "q")


def test_bad_key_value_has_hint() -> None:
    with pytest.raises(LaunchError, match="HINT"):
        cli.parse_launch_args(["--env", "NOVALUE", "t.py"])


def test_missing_entry_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse_launch_args(["--nproc-per-node", "2"])
    assert exc.value.code == 2 and "give the script" in capsys.readouterr().err


def test_torchrun_spellings_give_the_same_spec_as_ours() -> None:
    ours, _, _ = cli.parse_launch_args(
        ["--nproc-per-node", "2", "--nodes", "2", "--node-rank", "1", "--master-addr", "h", "--master-port", "29400",
         "--max-restarts", "1", "t.py"])
    torchrun, _, _ = cli.parse_launch_args(
        ["--nproc_per_node", "2", "--nnodes", "2", "--node_rank", "1", "--master_addr", "h", "--master_port", "29400",
         "--max_restarts", "1", "t.py"])
    endpoint, _, _ = cli.parse_launch_args(
        ["--nproc_per_node=2", "--nnodes=2", "--node_rank=1", "--rdzv-endpoint", "h:29400", "--max_restarts=1", "t.py"])
    assert ours == torchrun == endpoint
    standalone, _, _ = cli.parse_launch_args(["--standalone", "--nproc_per_node", "2", "t.py"])
    assert (standalone.nodes, standalone.nproc_per_node, standalone.master_addr) == (1, 2, None)


def test_rendezvous_timeout_flag_reaches_the_spec() -> None:
    assert cli.parse_launch_args(["t.py"])[0].rdzv_timeout == 900
    assert cli.parse_launch_args(["--rdzv-timeout", "2.5", "t.py"])[0].rdzv_timeout == 2.5
    with pytest.raises(LaunchError, match="must be > 0"):
        cli.parse_launch_args(["--rdzv-timeout", "0", "t.py"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rdzv-endpoint", "h", "t.py"], "is not HOST:PORT"),
        (["--rdzv_endpoint", "h:1", "--master-addr", "other", "t.py"], "disagrees with --master-addr other"),
        (["--standalone", "--nnodes", "2", "t.py"], "--standalone is torchrun's one-node mode"),
    ],
)
def test_contradicting_rendezvous_spellings_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(LaunchError, match=message):
        cli.parse_launch_args(argv)


@pytest.mark.parametrize(
    ("flag", "suggested"),
    [("--nprocs", "--nproc-per-node"), ("--gpu", "--gpus"), ("--partiton", "--partition"),
     ("--dryrun", "--dry-run"), ("--max-restart=2", "--max-restarts"), ("--nproc_per_nodes", "--nproc-per-node")],
)
def test_unknown_option_is_answered_with_a_close_one_in_two_lines(
    flag: str, suggested: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse_launch_args([flag, "2", "t.py"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.splitlines() == [
        f"launch: error: unknown option {flag.split('=')[0]}; did you mean {suggested}?",
        "HINT: `launch --help` lists the options.",
    ]


def test_unknown_option_without_a_close_one_and_bad_values_stay_short(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--frobnicate", "t.py"], ["--nodes", "two", "t.py"]):
        with pytest.raises(SystemExit) as exc:
            cli.parse_launch_args(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and len(err.splitlines()) == 2 and "usage:" not in err
    with pytest.raises(SystemExit):
        cli.parse_launch_args(["--frobnicate", "t.py"])
    assert "unknown option --frobnicate\n" in capsys.readouterr().err


def test_options_after_the_script_still_belong_to_the_script() -> None:
    spec, _, _ = cli.parse_launch_args(["t.py", "--nprocs", "4", "--nnodes", "3"])
    assert spec.args == ("--nprocs", "4", "--nnodes", "3") and spec.nodes == 1


def test_dispatches_to_the_cluster_backend(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI finds the backend by cluster name; --dry-run prints the request, a run submits that request."""
    seen: list[tuple[str, object]] = []

    class FakeRequest:
        def __init__(self, spec: JobSpec) -> None:
            self.spec = spec

        def render(self) -> str:
            return f"request for {self.spec.entry} on {self.spec.cluster}"

    class FakeBackend:
        def __init__(self, name: str) -> None:
            self.name = name

        def dryrun(self, spec: JobSpec) -> FakeRequest:
            request = FakeRequest(spec)
            seen.append(("dryrun", request))
            return request

        def submit(self, request: FakeRequest) -> Submitted:
            seen.append(("submit", request))
            return Submitted("1", Path("/r"), exit_code=7)

    fake = types.ModuleType("fake_backend")
    fake.FakeBackend = FakeBackend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_backend", fake)
    monkeypatch.setitem(backends.BACKENDS, "slurm", "fake_backend:FakeBackend")
    assert cli.launch_main(["--cluster", "slurm", "--dry-run", "t.py"]) == 0
    assert capsys.readouterr().out == "request for t.py on slurm\n"
    assert [step for step, _ in seen] == ["dryrun"]
    assert cli.main(["launch", "--cluster", "slurm", "t.py"]) == 7
    assert [step for step, _ in seen[1:]] == ["dryrun", "submit"] and seen[1][1] is seen[2][1]


def test_missing_script_fails_before_anything_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.launch_main(["--nproc-per-node", "2", "--run-root", str(tmp_path), str(tmp_path / "nope.py")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # no run directory was created


def test_gpus_beyond_this_machine_suggests_nproc_per_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    script = tmp_path / "t.py"
    script.write_text("")
    wanted = torch.cuda.device_count() + 1
    assert cli.launch_main(["--gpus", str(wanted), str(script)]) == 2
    err = capsys.readouterr().err
    assert f"has {wanted - 1} GPU" in err and f"--nproc-per-node {wanted}" in err


def test_help_has_examples_and_is_fast(subprocess_env: dict[str, str]) -> None:
    out = subprocess.run([sys.executable, "-m", "fulmen.launcher", "launch", "--help"], capture_output=True, text=True,
                         env=subprocess_env, timeout=60)
    assert out.returncode == 0 and "examples:" in out.stdout and "--nproc-per-node" in out.stdout
    probe = "import sys; from fulmen.launcher import cli; cli.build_launch_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=subprocess_env, timeout=60).stdout.strip() == "False"


def test_setup_is_repeatable_and_dry_run_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.py").write_text("")
    argv = ["--cluster", "slurm", "--setup", "module load cuda", "--setup", "export FOO='a b'", "--dry-run", "t.py"]
    spec, _, _ = cli.parse_launch_args(argv)
    assert spec.slurm.setup == ("module load cuda", "export FOO='a b'")
    assert JobSpec.from_dict(spec.to_dict()) == spec
    assert cli.launch_main(argv) == 0
    out = capsys.readouterr().out
    assert "\n# setup\nmodule load cuda\nexport FOO='a b'\n\n# command\n" in out
    assert out.index("# setup") < out.index("\nsrun ")


def test_kubernetes_volume_cpu_and_memory_flags() -> None:
    spec, _, _ = cli.parse_launch_args(["--cluster", "k8s", "--volume", "runs-pvc:/mnt/runs/", "--volume", "d:/data",
                                        "--cpu", "16", "--memory", "1.5Ti", "t.py"])
    assert spec.k8s.volumes == (("runs-pvc", "/mnt/runs"), ("d", "/data"))
    assert (spec.k8s.cpu, spec.k8s.mem_mb) == (16, int(1.5 * 1024 * 1024))
    assert JobSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--volume", "foo"], r"--volume 'foo': it is not CLAIM:/MOUNT/PATH\.\nExpected the name of a PersistentVolumeClaim"),
        (["--volume", "Runs_PVC:/mnt"], r"'Runs_PVC' is not a Kubernetes claim name"),
        (["--volume", "runs:mnt/runs"], r"the mount path 'mnt/runs' is not absolute"),
        (["--volume", "a:/m", "--volume", "b:/m"], r"two claims are mounted at the same path"),
        (["--memory", "12XB"], r"--memory '12XB' is not a memory size\.\nExpected a number with an optional unit M, G or T"),
        (["--memory", "0"], r"--memory must be at least 1M"),
        (["--cpu", "0"], r"--cpu must be >= 1"),
    ],
)
def test_bad_kubernetes_values_say_what_was_expected(argv: list[str], message: str) -> None:
    with pytest.raises(LaunchError, match=message) as caught:
        cli.parse_launch_args(["--cluster", "k8s", *argv, "t.py"])
    assert "HINT" in str(caught.value) or "must be" in str(caught.value)


def test_volume_outside_kubernetes_is_refused() -> None:
    with pytest.raises(LaunchError, match=r"--volume is for --cluster k8s.*\nHINT: .*--run-root"):
        cli.parse_launch_args(["--cluster", "slurm", "--volume", "runs:/mnt/runs", "t.py"])
