"""Following log files (fulmen/jobs/logs.py): the one tail -F behind `launch --wait` and `fulmen logs -f`."""

from __future__ import annotations

import io
import os
from pathlib import Path

from fulmen.jobs.logs import LogFollower, earlier_attempts, file_lines


def test_log_follower_follows_a_rotated_log(tmp_path: Path) -> None:
    log = tmp_path / "rank_0.log"
    out = io.StringIO()
    follower = LogFollower(log)
    follower.pump(out)  # no file yet: nothing, no error
    log.write_text("run 1 line 1\n")
    follower.pump(out)
    with log.open("a") as handle:
        handle.write("run 1 line 2\n")
    os.replace(log, tmp_path / "rank_0.attempt_0.log")  # a requeued run rotates the log
    log.write_text("run 2 line 1\n")
    follower.pump(out)
    follower.close()
    assert out.getvalue() == "run 1 line 1\nrun 1 line 2\nrun 2 line 1\n"


def test_log_follower_passes_carriage_returns_through(tmp_path: Path) -> None:
    log = tmp_path / "rank_0.log"
    log.write_bytes("\r 10%|█ \r 20%|██\r\ndone ✓".encode())
    out = io.StringIO(newline="")
    follower = LogFollower(log)
    follower.pump(out)
    follower.close()
    assert out.getvalue() == "\r 10%|█ \r 20%|██\r\ndone ✓"  # a tqdm bar redraws in place


def test_log_follower_echoes_only_new_output(tmp_path: Path) -> None:
    path = tmp_path / "combined.log"
    out = io.StringIO()
    follower = LogFollower(path, out)
    follower.pump()  # not created yet: nothing, no error
    path.write_text("a\n")
    follower.pump()
    with path.open("a") as handle:
        handle.write("b\n")
    follower.pump()
    assert out.getvalue() == "a\nb\n"


def test_following_a_file_reads_what_is_written_until_the_job_ends(tmp_path: Path) -> None:
    path = tmp_path / "rank_0.log"
    path.write_text("first\n")
    polls = []

    def is_done() -> bool:
        # the job writes more between two polls, then ends
        polls.append(1)
        if len(polls) == 1:
            with path.open("a") as handle:
                handle.write("second\nlast without newline")
            return False
        return True

    lines = list(file_lines(path, follow=True, is_done=is_done, poll_s=0.01))
    assert lines == ["first", "second", "last without newline"]
    assert len(polls) == 2


def test_earlier_attempts_are_listed_oldest_first(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("rank_0.attempt_10.log", "rank_0.attempt_2.log", "rank_1.attempt_0.log", "rank_0.log"):
        (logs / name).write_text(name)
    assert [p.name for p in earlier_attempts(tmp_path, 0)] == ["rank_0.attempt_2.log", "rank_0.attempt_10.log"]
