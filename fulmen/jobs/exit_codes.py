"""Exit codes that mean something between ranks, launchers and schedulers.

They live in the lowest layer because both sides read them: a rank exits with one
(``fulmen.runtime.preemption``, the SLURM rank entry) and a launcher or backend decides from it
whether to restart, requeue or report a failure.
"""

from __future__ import annotations

import sys

PREEMPTED_EXIT_CODE = 75
"""Exit code of a rank (and a launcher) that stopped for a signal after saving the resume
checkpoint: 75 is EX_TEMPFAIL ("try again later"). Launchers treat it as "restart me"."""

PREEMPTION_SAVE_FAILED_EXIT_CODE = 74
"""Exit code of every rank that stopped for a signal but could not save the resume checkpoint
(a full disk, say): 74 is EX_IOERR. The previous resume checkpoint, if any, is untouched and is
the one a restart uses; no requeue is asked for. Launchers treat it as a failure."""

HANG_EXIT_CODE = 124
"""Exit code of a job stopped by the progress watchdog: a rank made no training progress for
``--hang-timeout`` seconds (124, as ``timeout(1)`` reports a command it stopped). Every rank's
stack is in the run dir (``hang-stacks/``). Launchers restart it under ``--max-restarts``."""

CANCELLED_EXIT_CODE = 130
"""Exit code of a launcher whose job ended neither in success nor in failure (cancelled, state
unknown, or the launcher stopped waiting): 128 + SIGINT, as a shell reports Ctrl-C."""

CONFIGURATION_ERROR_EXIT_CODE = 78
"""Exit code of every rank that stopped on a configuration error found before any rendezvous
(a topology that contradicts the launch): 78 is EX_CONFIG. Not restarted, not requeued."""

RENDEZVOUS_TIMEOUT_EXIT_CODE = 69
"""Exit code of a launcher whose other nodes did not join the rendezvous within
``--rdzv-timeout``: 69 is EX_UNAVAILABLE (a peer it needs is not there). No rank was started."""


def final_state_for(exit_code: int) -> str:
    """The state a foreground launcher records for the exit code its ranks ended with."""
    return {0: "COMPLETED", PREEMPTED_EXIT_CODE: "PREEMPTED"}.get(exit_code, "FAILED")


def report_configuration_error(error: BaseException, *, local_rank: int) -> int:
    """Print ``error`` once per node (local rank 0), without a traceback; the exit code for every rank.

    A topology mismatch is raised identically by every rank before any rendezvous, so N
    tracebacks would say the same thing N times. The message already says what was seen,
    what was expected and a HINT; the traceback would only point into fulmen.
    """
    if local_rank == 0:
        print(f"fulmen: error: {error}", file=sys.stderr, flush=True)
    return CONFIGURATION_ERROR_EXIT_CODE
