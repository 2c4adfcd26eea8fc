"""`launch --cluster slurm` and the job commands against the real local cluster.

Each test submits its own small job from its own folder, so pytest-xdist can run them side by
side. Training jobs (Trainer, DDP, exact resume) are in test_training_real.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fulmen.slurm import commands
from tests.integration.slurm.conftest import fulmen_cli

pytestmark = [pytest.mark.slurm, pytest.mark.integration, pytest.mark.slow]

WHOAMI = """\
import json, os, sys
from fulmen.runtime.cluster import detect
info = detect(os.environ)
print("WHOAMI " + json.dumps(dict(rank=info.global_rank, local=info.local_rank, node=info.node_rank,
      world=info.world_size, nodes=info.num_nodes, host=os.environ["SLURMD_NODENAME"],
      master=info.master_addr, port=info.master_port, source=info.source, argv=sys.argv[1:],
      cwd=os.getcwd(), run_dir=os.environ["FULMEN_RUN_DIR"], gpus=os.environ.get("CUDA_VISIBLE_DEVICES"))), flush=True)
"""


def only_run_dir(project: Path) -> Path:
    runs = [p for p in (project / "fulmen_runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def job_id_from(stderr: str) -> str:
    match = re.search(r"Submitted SLURM job (\d+)", stderr)
    assert match, stderr
    return match.group(1)


def test_two_nodes_two_gpus_each_rank_knows_its_place(project: Path, job_env: dict[str, str]) -> None:
    (project / "whoami.py").write_text(WHOAMI)
    proc = fulmen_cli(["launch", "--cluster", "slurm", "--nodes", "2", "--gpus", "2", "--time", "5", "--wait",
                       "whoami.py", "--flag", "x"], job_env, project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job_id = job_id_from(proc.stderr)
    # --wait streamed rank 0's output, and only that: a completed job needs no last word.
    assert proc.stdout.startswith("WHOAMI ") and proc.stdout.count("\n") == 1 and '"rank": 0' in proc.stdout
    assert "ended" not in proc.stderr
    run_dir = only_run_dir(project)
    seen = []
    for rank in range(4):
        line = next(ln for ln in (run_dir / "logs" / f"rank_{rank}.log").read_text().splitlines() if ln.startswith("WHOAMI"))
        seen.append(json.loads(line[len("WHOAMI "):]))
    assert [(s["rank"], s["local"], s["node"]) for s in seen] == [(0, 0, 0), (1, 1, 0), (2, 0, 1), (3, 1, 1)]
    hosts = [s["host"] for s in seen]  # which nodes depends on what else runs on the cluster
    assert hosts[0] == hosts[1] != hosts[2] == hosts[3]
    assert {(s["world"], s["nodes"], s["master"], s["source"]) for s in seen} == {(4, 2, hosts[0], "slurm")}
    assert len({s["port"] for s in seen}) == 1
    assert all(s["argv"] == ["--flag", "x"] and s["cwd"] == str(project) for s in seen)  # where launch ran
    assert all(s["gpus"] is not None and len(s["gpus"].split(",")) == 2 for s in seen)

    status = fulmen_cli(["status", job_id], job_env, project)
    assert status.returncode == 0 and "state: COMPLETED" in status.stdout, status.stdout + status.stderr
    logs = fulmen_cli(["logs", job_id, "--rank", "3"], job_env, project)
    assert logs.returncode == 0 and '"rank": 3' in logs.stdout and '"rank": 0' not in logs.stdout
    listing = fulmen_cli(["list"], job_env, project)
    assert re.search(rf"^{job_id}\s+slurm\s+COMPLETED\s+whoami", listing.stdout, re.M), listing.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "4", "--gpus", "1"], "--nodes 4 asks for more nodes than partition 'debug' has (3 node(s))"),
        (["--partition", "gpu-large"], "--partition 'gpu-large' does not exist on this cluster"),
        (["--nodes", "2"], "--nodes 2 was given without --gpus or --nproc-per-node"),
        (["--name", "run\n#SBATCH --partition=high"], "contains a control character"),
    ],
)
def test_wrong_input_fails_at_submit_time(project: Path, job_env: dict[str, str], args: list[str], message: str) -> None:
    (project / "t.py").write_text("print('never runs')\n")
    proc = fulmen_cli(["launch", "--cluster", "slurm", *args, "t.py"], job_env, project, timeout=60)
    assert proc.returncode != 0
    assert message in proc.stderr and "HINT" in proc.stderr, proc.stderr
    assert not (project / "fulmen_runs").exists()


def test_a_submission_sbatch_refuses_leaves_no_run_dir(project: Path, job_env: dict[str, str]) -> None:
    (project / "t.py").write_text("print('never runs')\n")
    proc = fulmen_cli(["launch", "--cluster", "slurm", "--constraint", "no-such-feature", "--time", "2", "t.py"],
                      job_env, project, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "sbatch refused the job" in proc.stderr and "Invalid feature specification" in proc.stderr
    assert "removed its unfinished run dir" in proc.stderr and "Traceback" not in proc.stderr
    assert list((project / "fulmen_runs").iterdir()) == []  # no spec, snapshot or submitit folder left
    listed = fulmen_cli(["list"], job_env, project, timeout=60)
    assert listed.returncode == 0 and "no jobs" in listed.stdout + listed.stderr


def test_secret_env_reaches_the_ranks_but_not_the_run_records(project: Path, job_env: dict[str, str]) -> None:
    import stat

    secret = "hf-slurm-secret-0123"
    (project / "tok.py").write_text(
        "import os, sys\n"
        f"print('TOKEN', os.environ.get('HF_TOKEN') == {secret!r}, sys.argv[1:] == ['--api-key', {secret!r}], flush=True)\n"
    )
    proc = fulmen_cli(["launch", "--cluster", "slurm", "--nproc-per-node", "1", "--time", "5", "--wait",
                       "--env", f"HF_TOKEN={secret}", "tok.py", "--api-key", secret], job_env, project)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TOKEN True True" in proc.stdout
    run_dir = only_run_dir(project)
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    for record in (run_dir / "spec.json", run_dir / "job.json"):
        assert secret not in record.read_text() and "HF_TOKEN" in record.read_text()
        assert stat.S_IMODE(record.stat().st_mode) == 0o600
    pickles = list((run_dir / "submitit").glob("*.pkl"))
    assert pickles  # submitit's task (it holds the --env values the ranks get) ...
    for pickled in pickles:
        assert stat.S_IMODE(pickled.stat().st_mode) == 0o600, pickled  # ... readable by the owner only


def test_missing_script_fails_at_submit_time(project: Path, job_env: dict[str, str]) -> None:
    proc = fulmen_cli(["launch", "--cluster", "slurm", "nope.py"], job_env, project, timeout=60)
    assert proc.returncode != 0 and "'nope.py' does not exist" in proc.stderr


def test_failing_script_fails_the_job_and_the_wait(project: Path, job_env: dict[str, str]) -> None:
    (project / "bad.py").write_text("import sys\nprint('about to fail', flush=True)\nsys.exit(3)\n")
    proc = fulmen_cli(["launch", "--cluster", "slurm", "--nproc-per-node", "1", "--wait", "bad.py"], job_env, project)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout == "about to fail\n"
    assert re.search(r"^fulmen: job \d+ ended: FAILED \(exit 3:0\)$", proc.stderr, re.M), proc.stderr


def test_callable_result_is_fetched(project: Path, job_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from fulmen.jobs.spec import JobSpec
    from fulmen.launcher.api import submit

    monkeypatch.chdir(project)

    def square_on_rank(x: int) -> tuple[int, str, str]:
        import os

        return x * x, os.environ["SLURM_PROCID"], os.environ["SLURMD_NODENAME"]

    job = submit(square_on_rank, 7, spec=JobSpec(entry="square", cluster="slurm", nodes=2, nproc_per_node=1))
    first = job.result()
    assert first[:2] == (49, "0")
    results = job.results()
    assert results[0] == first and results[1][:2] == (49, "1") and results[1][2] != first[2]
    assert (job.run_dir / "job.json").is_file()


def wait_for_line(path: Path, pattern: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and re.search(pattern, path.read_text(), re.M):
            return time.time()
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} did not appear in {path} within {timeout}s")


SLEEPER = """\
import os, time
VERSION = "A"
print(f"VERSION {VERSION} restart={os.environ['FULMEN_RESTART_COUNT']}", flush=True)
if os.environ["FULMEN_RESTART_COUNT"] == "0":
    time.sleep(120)  # wait here for the signal
"""


def test_signal_requeues_and_the_requeued_run_uses_the_snapshot(project: Path, job_env: dict[str, str]) -> None:
    (project / "sleeper.py").write_text(SLEEPER)
    proc = fulmen_cli(["launch", "--cluster", "slurm", "--nproc-per-node", "1", "sleeper.py"], job_env, project)
    assert proc.returncode == 0, proc.stderr
    job_id = job_id_from(proc.stderr)
    run_dir = only_run_dir(project)
    log = run_dir / "logs" / "rank_0.log"
    wait_for_line(log, r"VERSION A restart=0", 60)
    # Edit the script while the job runs: the requeued run must still run the snapshot.
    (project / "sleeper.py").write_text(SLEEPER.replace('VERSION = "A"', 'VERSION = "B"'))
    signalled = time.time()
    commands.cancel(job_id, signal="USR2")
    started = wait_for_line(log, r"restart 1 .*started at", 90)
    text = log.read_text()
    restarted_at = float(re.search(r"restart 1 .*started at ([\d.]+)", text).group(1))
    assert "VERSION A restart=1" in wait_and_read(log, r"VERSION \w restart=1", 30)
    print(f"signal-to-requeued-run latency: {restarted_at - signalled:.1f}s (seen {started - signalled:.1f}s)")
    earlier = (run_dir / "logs" / "rank_0.attempt_0.log").read_text()
    assert "stopped by SIGUSR2 outside Trainer.fit" in earlier and f"requeued job {job_id}" in earlier
    assert wait_until_final(job_id, 60).state == "COMPLETED"
    assert commands.job_state(job_id).restarts == 1


def wait_and_read(path: Path, pattern: str, timeout: float) -> str:
    wait_for_line(path, pattern, timeout)
    return path.read_text()


def wait_until_final(job_id: str, timeout: float) -> commands.JobState:
    from fulmen.slurm.submit import job_has_ended

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = job_has_ended(job_id)
        if state is not None:
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not end within {timeout}s: {commands.job_state(job_id)}")


def test_max_requeues_zero_lets_a_signalled_job_end(project: Path, job_env: dict[str, str]) -> None:
    (project / "sleeper.py").write_text(SLEEPER)
    proc = fulmen_cli(["launch", "--cluster", "slurm", "--nproc-per-node", "1", "--max-requeues", "0", "sleeper.py"],
                      job_env, project)
    job_id = job_id_from(proc.stderr)
    log = only_run_dir(project) / "logs" / "rank_0.log"
    wait_for_line(log, r"VERSION A restart=0", 60)
    commands.cancel(job_id, signal="USR2")
    final = wait_until_final(job_id, 60)
    assert final.state == "FAILED" and final.exit_code == "75:0"
    assert "limit is --max-requeues 0" in log.read_text()



def test_cancel_and_follow_from_the_job_commands(project: Path, job_env: dict[str, str]) -> None:
    (project / "sleeper.py").write_text(SLEEPER)
    job_id = job_id_from(fulmen_cli(["launch", "--cluster", "slurm", "sleeper.py"], job_env, project).stderr)
    wait_for_line(only_run_dir(project) / "logs" / "rank_0.log", r"VERSION A restart=0", 60)
    follower = subprocess.Popen(
        [sys.executable, "-m", "fulmen.launcher", "logs", job_id, "--follow"], cwd=project, env=job_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    cancel = fulmen_cli(["cancel", job_id], job_env, project)
    assert cancel.returncode == 0 and f"cancelled job {job_id}" in cancel.stdout
    out, _ = follower.communicate(timeout=60)  # --follow returns once the job has ended
    assert "VERSION A restart=0" in out and "CANCELLED" in out
    assert "state: CANCELLED" in fulmen_cli(["status", job_id], job_env, project).stdout


TWO_STREAMS = """\
import os, sys, time
sys.stdout.write("first line\\n"); sys.stdout.flush()
sys.stderr.write("a warning\\n"); sys.stderr.flush()
for i in range(4):  # a progress bar redrawn in place
    sys.stderr.write(f"\\rprogress {i}/3"); sys.stderr.flush(); time.sleep(0.05)
sys.stderr.write("\\n")
print("FOO=" + os.environ.get("FOO", "unset"), flush=True)
sys.stdout.write("last line without newline"); sys.stdout.flush()
sys.stderr.write("last words without newline"); sys.stderr.flush()
"""


def test_wait_console_is_exactly_what_rank_0_prints(project: Path, job_env: dict[str, str]) -> None:
    (project / "two_streams.py").write_text(TWO_STREAMS)
    plain = subprocess.run([sys.executable, "two_streams.py"], cwd=project, env={**job_env, "FOO": "bar"},
                           capture_output=True, timeout=60, check=True)
    proc = subprocess.run(
        [sys.executable, "-m", "fulmen.launcher", "launch", "--cluster", "slurm", "--nodes", "1",
         "--nproc-per-node", "2", "--time", "5", "--setup", "export FOO=bar", "--wait", "two_streams.py"],
        cwd=project, env=job_env, capture_output=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == plain.stdout  # bytes: \r, the unfinished last line, nothing of fulmen's or submitit's
    job_id = job_id_from(proc.stderr.decode())
    run_dir = only_run_dir(project)
    submitted = (f"Submitted SLURM job {job_id} (1 node(s) x 2 rank(s)); run dir {run_dir}\n"
                 f"  fulmen status {job_id}   fulmen logs {job_id} --rank N   fulmen cancel {job_id}\n").encode()
    assert proc.stderr == submitted + plain.stderr
    # `fulmen logs` still tells the whole story: fulmen's line and both streams, interleaved.
    logs = fulmen_cli(["logs", job_id, "--rank", "0"], job_env, project)
    assert re.search(r"^fulmen: rank 0/2 .* started at", logs.stdout, re.MULTILINE), logs.stdout
    assert "first line\n" in logs.stdout and "a warning\n" in logs.stdout and "FOO=bar\n" in logs.stdout
    rank1 = (run_dir / "logs" / "rank_1.log").read_text()
    assert "FOO=bar\n" in rank1 and "last words without newline" in rank1


def test_setup_lines_run_before_every_rank(project: Path, job_env: dict[str, str]) -> None:
    (project / "env.py").write_text("import os\nprint('SETUP', os.environ.get('FOO'), os.environ.get('BAR'), flush=True)\n")
    proc = fulmen_cli(["launch", "--cluster", "slurm", "--nodes", "2", "--nproc-per-node", "1", "--time", "5",
                       "--setup", "export FOO=bar", "--setup", 'export BAR="$FOO-and-more"', "--wait", "env.py"],
                      job_env, project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == "SETUP bar bar-and-more\n"
    run_dir = only_run_dir(project)
    assert "SETUP bar bar-and-more\n" in (run_dir / "logs" / "rank_1.log").read_text()
    submitted = next((run_dir / "submitit").glob("*_submission.sh")).read_text()
    assert "# setup\nexport FOO=bar\nexport BAR=\"$FOO-and-more\"\n" in submitted
