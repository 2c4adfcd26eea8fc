"""``fulmen status --watch``: redraw on a terminal, one line per change elsewhere, Ctrl-C exits 0."""

from __future__ import annotations

import io
from collections.abc import Iterator

from fulmen.launcher.status_watch import CLEAR_SCREEN, Screen, watch_screen


def _screens(*digests: str) -> Iterator[Screen]:
    for number, digest in enumerate(digests, start=1):
        yield Screen([f"screen {number}", digest], digest, live=number < len(digests))


def test_a_pipe_gets_one_line_per_change_then_the_final_screen() -> None:
    out, sleeps = io.StringIO(), []
    screens = _screens("step 1", "step 1", "step 2", "done")
    assert watch_screen(lambda: next(screens), 5, out=out, sleep=sleeps.append, is_tty=False) == 0
    lines = out.getvalue().splitlines()
    assert [line.split("  ", 1)[1] for line in lines[:3]] == ["step 1", "step 2", "done"]
    assert lines[3:] == ["screen 4", "done"]  # the whole last screen once the job ended
    assert sleeps == [5, 5, 5] and CLEAR_SCREEN not in out.getvalue()


def test_a_terminal_is_redrawn_every_time_until_the_job_ends() -> None:
    out, sleeps = io.StringIO(), []
    screens = _screens("a", "a", "b")
    assert watch_screen(lambda: next(screens), 0.0, out=out, sleep=sleeps.append, is_tty=True) == 0
    assert out.getvalue().count(CLEAR_SCREEN) == 3
    assert sleeps == [0.1, 0.1]  # never a busy loop
    assert out.getvalue().rstrip().endswith("(the job has ended)")


def test_ctrl_c_stops_watching_with_exit_0() -> None:
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    out = io.StringIO()
    screen = Screen(["job 1"], "running", live=True)
    assert watch_screen(lambda: screen, 1, out=out, sleep=interrupted, is_tty=False) == 0
    assert out.getvalue().splitlines()[0].endswith("running")
