"""What the local backend runs in each rank: ``python -u -m fulmen.launcher.rank_entry ENTRY ARGS``.

It does five things before handing over to the user's code, and nothing else (it imports
no torch, so it costs a few milliseconds):

- sends stderr into the same file as stdout when stdout is a log file, so ``logs/rank_N.log``
  holds one rank's whole story in order (the elastic agent would open them as two files); the
  console rank's stdout is a pipe to the launcher, and its two streams stay apart, as they are
  under ``python script.py``;
- asks Linux to send this rank SIGTERM if the launcher dies (``PR_SET_PDEATHSIG``): ranks
  run in their own sessions, so a launcher killed with SIGKILL would otherwise leave them
  running; SIGTERM lets them save the resume checkpoint and exit (PreemptionHandler);
- runs the entry exactly as ``python script.py ARGS`` / ``python -m module ARGS`` would:
  ``__name__ == "__main__"``, ``sys.argv``, and ``sys.path[0]`` set to the script's folder;
  an uncaught exception is printed as python prints it (without this module's and runpy's
  frames) and exits with 1;
- registers ``faulthandler`` on ``fulmen.jobs.hang.STACK_DUMP_SIGNAL`` (SIGURG), writing every
  thread's stack to ``<run_dir>/stacks/rank_N.txt``: the launcher's progress watchdog asks every
  rank for its stack that way when one makes no progress;
- turns a launch that contradicts the script (``ClusterMismatchError``, raised the same way on
  every rank) into one message without a traceback, printed by local rank 0 only, and exit
  code :data:`CONFIGURATION_ERROR_EXIT_CODE` on every rank (``fulmen.jobs.exit_codes.report_configuration_error``,
  shared with the SLURM rank entry).
"""

from __future__ import annotations

import atexit
import os
import runpy
import stat
import sys
from types import TracebackType

from fulmen.jobs.hang import register_stack_dump, tidy_rank_files

MODULE_FLAG = "--module"


def main(argv: list[str]) -> None:
    """``argv``: ``[--module] ENTRY ARGS...``."""
    as_module = bool(argv) and argv[0] == MODULE_FLAG
    if as_module:
        argv = argv[1:]
    if not argv:
        raise SystemExit("usage: python -m fulmen.launcher.rank_entry [--module] ENTRY [ARGS...]")
    entry, args = argv[0], argv[1:]
    _join_stderr_to_log_file()
    _die_with_launcher()
    rank_text = os.environ.get("RANK", "")
    run_dir, rank = os.environ.get("FULMEN_RUN_DIR"), int(rank_text) if rank_text.isdigit() else None
    register_stack_dump(run_dir, rank)
    atexit.register(tidy_rank_files, run_dir, rank)
    from fulmen.errors import ClusterMismatchError
    from fulmen.jobs.exit_codes import report_configuration_error

    try:
        if as_module:
            sys.argv = [entry, *args]
            runpy.run_module(entry, run_name="__main__", alter_sys=True)
        else:
            script = os.path.abspath(entry)
            sys.argv = [entry, *args]
            sys.path[0] = os.path.dirname(script)
            runpy.run_path(script, run_name="__main__")
    except ClusterMismatchError as error:
        code = report_configuration_error(error, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
        raise SystemExit(code) from None  # the message says it all; no chained traceback
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001 - reported exactly as python reports it, then exit 1
        trimmed = _user_frames(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(trimmed), trimmed)
        sys.exit(1)


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback without this module's and runpy's frames: what ``python script.py`` shows."""
    ours = {os.path.abspath(__file__), os.path.abspath(runpy.__file__), "<frozen runpy>"}
    while tb is not None and (tb.tb_frame.f_code.co_filename in ours
                              or os.path.abspath(tb.tb_frame.f_code.co_filename) in ours):
        tb = tb.tb_next
    return tb


def _join_stderr_to_log_file() -> None:
    if not stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode):
        return  # the console rank: a pipe (or a terminal); stdout and stderr stay two streams
    sys.stderr.flush()
    os.dup2(sys.stdout.fileno(), sys.stderr.fileno())


def _die_with_launcher() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    launcher = os.getppid()
    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != launcher:  # the launcher died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    main(sys.argv[1:])
