"""A SLURM task's output: every rank's log, and rank 0's streams alone for the console."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from fulmen.slurm.submit import ConsoleStreams
from fulmen.slurm.task_output import console_stream_path

TASK = """\
import os, sys
from pathlib import Path
from fulmen.slurm.task_output import capture_task_output
output = capture_task_output(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] or None)
output.note("fulmen: started")
sys.stdout.write("out 1\\n"); sys.stdout.flush()
sys.stderr.write("\\rbar 1\\rbar 2"); sys.stderr.flush()
os.system("echo from a child")  # fds 1 and 2 are inherited
sys.stdout.write("unfinished"); sys.stdout.flush()
output.close()
print("after close")  # back on the task's own stdout (srun's file under SLURM)
"""


def run_task(tmp_path: Path, rank: int, job_id: str) -> subprocess.CompletedProcess[bytes]:
    script = tmp_path / "task.py"
    script.write_text(TASK)
    return subprocess.run([sys.executable, str(script), str(tmp_path / "run"), str(rank), job_id],
                          capture_output=True, timeout=60, check=True)


def test_rank_0_writes_each_stream_alone_and_both_into_its_log(tmp_path: Path) -> None:
    proc = run_task(tmp_path, 0, "42")
    run = tmp_path / "run"
    assert console_stream_path(run, "42", "stdout").read_bytes() == b"out 1\nfrom a child\nunfinished"
    assert console_stream_path(run, "42", "stderr").read_bytes() == b"\rbar 1\rbar 2"
    log = (run / "logs" / "rank_0.log").read_bytes()
    # Both streams, in the order the copier saw them (two pipes: no order between them within a moment).
    assert log.startswith(b"fulmen: started\n")
    body = log[len(b"fulmen: started\n"):]
    assert body.replace(b"\rbar 1\rbar 2", b"", 1) == b"out 1\nfrom a child\nunfinished"
    assert proc.stdout == b"after close\n" and proc.stderr == b""


def test_other_ranks_write_only_their_log_and_a_requeue_keeps_the_earlier_one(tmp_path: Path) -> None:
    run_task(tmp_path, 1, "42")
    run_task(tmp_path, 1, "42")
    logs = tmp_path / "run" / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["rank_1.attempt_0.log", "rank_1.log"]
    assert (logs / "rank_1.log").read_bytes() == b"fulmen: started\nout 1\n\rbar 1\rbar 2from a child\nunfinished"


def test_console_copies_bytes_and_a_late_note_starts_its_own_line(tmp_path: Path) -> None:
    out, err = io.BytesIO(), io.BytesIO()
    streams = ConsoleStreams(tmp_path, "7", out, err)
    streams.pump()  # nothing written yet (the job is queued): no error
    (tmp_path / "logs").mkdir()
    console_stream_path(tmp_path, "7", "stdout").write_bytes(b"epoch 0\r")
    streams.pump()
    with console_stream_path(tmp_path, "7", "stdout").open("ab") as handle:
        handle.write(b"epoch 1")
    console_stream_path(tmp_path, "7", "stderr").write_bytes(b"Traceback ...\nValueError: x")
    streams.pump()
    streams.note("fulmen: job 7 ended: FAILED (exit 1:0)")
    assert out.getvalue() == b"epoch 0\repoch 1"
    assert err.getvalue() == b"Traceback ...\nValueError: x\nfulmen: job 7 ended: FAILED (exit 1:0)\n"
