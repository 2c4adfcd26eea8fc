"""The protocol every backend implements (torchx's ``Scheduler`` is the model).

``launch`` and ``fulmen status / logs / cancel / list`` talk to every backend the same way:

- ``dryrun(spec) -> request``: everything decided, nothing created or submitted. The request's
  ``render()`` is what ``--dry-run`` prints, and the same object is what ``submit`` sends.
- ``submit(request) -> Submitted``: create the run, hand it to the scheduler. Foreground
  backends (local, torchx-local) run the job to its end here and say so with ``exit_code``.
- ``wait(submitted) -> int``: follow a background job (SLURM, Kubernetes) to its end.
- ``describe(record)``, ``cancel(record)``, ``logs(record, rank=..., follow=...)``: the job
  commands, for a job found through its record (``fulmen.jobs.records``). ``logs`` yields
  text to print as it is; a rank that wrote nothing yet raises ``LaunchError``.

Implementations: ``fulmen.launcher.local.LocalBackend``, ``fulmen.slurm.submit.SlurmBackend``,
``fulmen.launcher.torchx.TorchxBackend``; ``fulmen.launcher.backends`` finds them by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fulmen.jobs.records import JobRecord
from fulmen.jobs.spec import JobSpec


class Request(Protocol):
    """What a backend will submit; ``render()`` is its ``--dry-run`` text."""

    spec: JobSpec

    def render(self) -> str: ...


@dataclass(frozen=True)
class Submitted:
    """A job the scheduler accepted. ``exit_code`` is set when it already ran to its end."""

    job_id: str
    run_dir: Path
    exit_code: int | None = None


@dataclass(frozen=True)
class JobDescription:
    """A job's state in the scheduler's words, where it came from, and other facts to show."""

    state: str
    source: str | None = None
    details: tuple[tuple[str, str], ...] = ()


class Backend(Protocol):
    """One way of running a JobSpec (see the module docstring for the contract)."""

    def dryrun(self, spec: JobSpec) -> Request: ...

    def submit(self, request: Request) -> Submitted: ...

    def wait(self, submitted: Submitted) -> int: ...

    def describe(self, record: JobRecord) -> JobDescription: ...

    def cancel(self, record: JobRecord) -> None: ...

    def logs(self, record: JobRecord, *, rank: int, follow: bool) -> Iterator[str]: ...
