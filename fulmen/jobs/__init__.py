"""The lowest layer: what a job *is*, shared by the launcher, the backends and the ranks.

- ``spec``: ``JobSpec`` (+ ``SlurmOptions``, ``KubernetesOptions``), validated, no I/O
- ``rundir``: the run directory (``spec.json``, per-rank logs) and ``new_run`` (the preamble
  every backend shares: run id, folder, spec pinned to it, job record)
- ``records``: job records (``job.json``) and the per-user index behind ``fulmen list``
- ``ports``: the one rendezvous-port derivation (hash of a run or job id), probe and claim
- ``exit_codes``: ``PREEMPTED_EXIT_CODE`` and the other codes ranks and launchers agree on
- ``logs``: following log files (``LogFollower``, ``file_lines``)
- ``snapshot``: the copy of the code a queued job runs

Imports nothing of fulmen's above it (only ``fulmen.errors``); checked by import-linter.
"""
