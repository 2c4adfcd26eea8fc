"""The rank side of the progress watchdog (``fulmen.jobs.hang`` has the whole story).

A daemon thread wakes every ``timeout / 10`` seconds (at most 5 s), reads the batch counter
the loops advance anyway, and rewrites the rank's heartbeat file when it moved: nothing is
added to the training step. Under the local launcher that is all (the launcher watches).
Under torchrun/srun (``FULMEN_HANG_TIMEOUT`` set, no launcher watching) the thread acts
itself: when the counter has not moved for the timeout it writes every thread's stack with
``faulthandler`` (into ``<run_dir>/stacks/`` when there is a run dir, and to stderr), says
where the main thread is stuck, and ends the process with ``HANG_EXIT_CODE``, so the
scheduler sees a distinct failure instead of a job that sleeps until its time limit.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path

from fulmen.jobs.events import append_event
from fulmen.jobs.exit_codes import HANG_EXIT_CODE
from fulmen.jobs.hang import (
    HANG_WATCHER_VARIABLE,
    Frame,
    HeartbeatFile,
    hang_timeout_from,
    heartbeat_path,
    stack_path,
    top_user_frame,
)


class ProgressWatchdog:
    """Reports (and, with ``act``, enforces) the progress of one rank; ``start()`` / ``stop()``."""

    def __init__(
        self,
        progress: Callable[[], int],
        *,
        timeout: float,
        rank: int,
        run_dir: str | None,
        act: bool,
    ) -> None:
        self.progress = progress
        self.timeout = timeout
        self.rank = rank
        self.run_dir = run_dir
        self.act = act
        self.interval = min(5.0, max(0.02, timeout / 10))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeat = HeartbeatFile(heartbeat_path(run_dir, rank)) if run_dir else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="fulmen-progress-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread (the run is over); the heartbeat file stays for the launcher."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1.0)
        if self._heartbeat is not None:
            self._heartbeat.write(self.progress())  # the final count, whenever the thread last woke
            self._heartbeat.close()
            self._heartbeat = None

    def _watch(self) -> None:
        last, since = None, time.monotonic()
        while not self._stop.wait(self.interval):
            value = self.progress()
            now = time.monotonic()
            if value != last:
                last, since = value, now
                if self._heartbeat is not None:
                    self._heartbeat.write(value)
            elif self.act and now - since >= self.timeout:
                self._give_up(value, now - since)

    def _give_up(self, counter: int, stalled_s: float) -> None:
        """Dump every thread's stack, say where the main thread is, exit with HANG_EXIT_CODE."""
        where = main_thread_user_frame()
        place = where.describe() if where is not None else "outside the user's code"
        message = (
            f"fulmen: rank {self.rank} made no progress for {stalled_s:.0f} s (batch counter {counter}); "
            f"stuck in {place}. Every thread's stack follows"
        )
        if self.run_dir:
            path = stack_path(self.run_dir, self.rank)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.flush()
                faulthandler.dump_traceback(handle, all_threads=True)
            message += f" (also in {path})"
        print(message + f"; exiting with {HANG_EXIT_CODE}.", file=sys.stderr, flush=True)
        # the rank leaves through os._exit, past the rank entry that would log its ending
        append_event(self.run_dir, "failed", rank=self.rank, exit_code=HANG_EXIT_CODE, reason="hang",
                     stuck=place, stalled_s=round(stalled_s, 1), fsync=True)
        faulthandler.dump_traceback(sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(HANG_EXIT_CODE)  # the main thread is stuck: no clean way out through it


def main_thread_user_frame() -> Frame | None:
    """The main thread's innermost frame in the user's code (None when it has none)."""
    frame = sys._current_frames().get(threading.main_thread().ident or -1)
    if frame is None:
        return None
    frames = [Frame(f.filename, f.lineno or 0, f.name) for f in reversed(traceback.extract_stack(frame))]
    return top_user_frame(frames)


def start_progress_watchdog(
    progress: Callable[[], int], rank: int, run_dir: str | None, environ: Mapping[str, str] = os.environ
) -> ProgressWatchdog | None:
    """The watchdog for this rank, started, or None when no hang timeout is set."""
    timeout = hang_timeout_from(environ)  # type: ignore[arg-type]
    if timeout is None:
        return None
    act = environ.get(HANG_WATCHER_VARIABLE) != "launcher"
    if run_dir is not None and not Path(run_dir).is_dir():
        run_dir = None
    watchdog = ProgressWatchdog(progress, timeout=timeout, rank=rank, run_dir=run_dir, act=act)
    watchdog.start()
    return watchdog
