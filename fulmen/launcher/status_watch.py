"""``fulmen status --watch``: redraw a job's (or a sweep's) screen every few seconds until it ends.

On a terminal the screen is redrawn in place. Anywhere else (a pipe, a log file, CI) a redraw
would be noise, so each poll prints one timestamped line, and only when the job's digest (state,
step, attempts) changed since the last one. Ctrl-C stops watching and exits 0: the job goes on.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import TextIO

CLEAR_SCREEN = "\x1b[H\x1b[2J"


@dataclasses.dataclass(frozen=True)
class Screen:
    """One look at a job: the lines ``fulmen status`` prints, a one-line digest, and whether it may go on."""

    lines: list[str]
    digest: str  # what a non-terminal prints when it changed (no clock-relative text in it)
    live: bool


def watch_screen(render: Callable[[], Screen], every_s: float, *, out: TextIO | None = None,
                 sleep: Callable[[float], None] = time.sleep, is_tty: bool | None = None) -> int:  # fmt: skip
    """Show ``render()`` every ``every_s`` seconds until it says the job is over; returns the exit code (0).

    ``every_s`` below 0.1 is raised to 0.1, so a typo cannot turn the command into a busy loop.
    """
    out = sys.stdout if out is None else out
    tty = out.isatty() if is_tty is None else is_tty
    every_s = max(0.1, every_s)
    previous: str | None = None
    try:
        while True:
            screen = render()
            if tty:
                footer = f"(every {every_s:g}s; Ctrl-C stops watching)" if screen.live else "(the job has ended)"
                out.write(CLEAR_SCREEN + "\n".join(screen.lines) + f"\n\n{footer}\n")
            elif screen.digest != previous:
                out.write(f"{time.strftime('%H:%M:%S')}  {screen.digest}\n")
            previous = screen.digest
            out.flush()
            if not screen.live:
                if not tty:
                    out.write("\n".join(screen.lines) + "\n")
                    out.flush()
                return 0
            sleep(every_s)
    except KeyboardInterrupt:
        out.write("\n")
        out.flush()
        return 0
