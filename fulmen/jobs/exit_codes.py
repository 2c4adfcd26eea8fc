"""Exit codes that mean something between ranks, launchers and schedulers.

They live in the lowest layer because both sides read them: a rank exits with one
(``fulmen.runtime.preemption``, the SLURM rank entry) and a launcher or backend decides from it
whether to restart, requeue or report a failure.
"""

from __future__ import annotations

PREEMPTED_EXIT_CODE = 75
"""Exit code of a rank (and a launcher) that stopped for a signal after saving the resume
checkpoint: 75 is EX_TEMPFAIL ("try again later"). Launchers treat it as "restart me"."""

CANCELLED_EXIT_CODE = 130
"""Exit code of a launcher whose job ended neither in success nor in failure (cancelled, state
unknown, or the launcher stopped waiting): 128 + SIGINT, as a shell reports Ctrl-C."""


def final_state_for(exit_code: int) -> str:
    """The state a foreground launcher records for the exit code its ranks ended with."""
    return {0: "COMPLETED", PREEMPTED_EXIT_CODE: "PREEMPTED"}.get(exit_code, "FAILED")
