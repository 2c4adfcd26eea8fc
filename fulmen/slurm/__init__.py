"""Everything SLURM-specific, used inside ranks and on the submitting shell.

- ``environment``: SLURM_* variables -> ``RankInfo``; nodelist syntax; allocation checks (pure)
- ``commands``: the one seam to scontrol / squeue / sacct / scancel
- ``sbatch``: JobSpec -> submitit parameters -> the sbatch script (what ``--dry-run`` prints)
- ``validation``: submit-time checks (script, ranks per node, partition, node and GPU counts)
- ``submit``: the ``--cluster slurm`` backend (``run(spec, dry_run=..., wait=...)``)
- ``rank_entry``: what each SLURM task runs (rank setup, per-rank log, snapshot, runpy)
- ``requeue``: ``scontrol requeue`` from inside the job, capped by ``--max-requeues``

Submodules are imported on use; importing this package has no side effects.
"""
