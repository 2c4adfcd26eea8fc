"""``launch`` and ``fulmen {launch,status,logs,cancel,list}``: argv -> JobSpec -> backend.

Thin on purpose: every check that needs no I/O lives in ``JobSpec``; the backend is looked up
by name (``fulmen.launcher.backends``) and imported only when used (the local one needs torch,
the SLURM one submitit, k8s torchx), so ``launch --help`` and argument errors are instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from fulmen.errors import FulmenError, LaunchError
from fulmen.jobs.spec import CLUSTERS, JobSpec, KubernetesOptions, SlurmOptions

LAUNCH_EXAMPLES = """\
examples:
  launch train.py --lr 0.1                       one process, script args after the script
  launch --nproc-per-node 2 train.py             2 DDP ranks on this machine (CPU or whatever the script picks)
  launch --gpus 4 train.py                       4 GPU ranks, one per GPU
  launch -m mypkg.train --epochs 3               run a module, like python -m
  launch --nproc-per-node 2 --max-restarts 2 train.py    restart the group (resuming) if a rank dies
  launch --run-dir fulmen_runs/train-2026... train.py     relaunch a preempted run; it resumes at the exact step
  launch --nodes 2 --node-rank 0 --master-addr node-a --master-port 29400 --gpus 8 train.py   (on node-a, then node-rank 1 on node-b)
  launch --cluster slurm --nodes 2 --gpus 4 --partition gpu --time 4:00:00 train.py
  launch --cluster slurm --dry-run train.py      print the sbatch script, submit nothing
  launch --cluster k8s --image repo/img:tag --nodes 2 --gpus 8 train.py

exit codes: 0 success; 75 the ranks were preempted and saved a resume checkpoint (relaunch to
continue); 2 a usage error; otherwise the first failing rank's exit code (128+N for signal N).
"""


def build_launch_parser(prog: str = "launch") -> argparse.ArgumentParser:
    """The argument parser of ``launch`` (also used by ``fulmen launch``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a training script as one process, N DDP ranks, or a cluster job.",
        epilog=LAUNCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_argument_group("where and how many")
    where.add_argument("--cluster", choices=CLUSTERS, default="local", help="backend (default: local)")
    where.add_argument("--nodes", type=int, default=1, help="machines (default: 1)")
    where.add_argument("--gpus", type=int, dest="gpus_per_node", metavar="N", help="GPU ranks per node, one per GPU")
    where.add_argument("--nproc-per-node", type=int, metavar="N", help="ranks per node on any accelerator (CPU here)")
    where.add_argument("--node-rank", type=int, default=0, help="this machine's node index (local, multi-node)")
    where.add_argument("--master-addr", help="node 0's address (local, multi-node)")
    where.add_argument("--master-port", type=int, help="rendezvous port (default: derived per run; MASTER_PORT)")
    where.add_argument("--max-restarts", type=int, default=0, help="restart the ranks this often after a failure")
    where.add_argument("--hang-timeout", type=float, default=600.0, metavar="SECONDS",
                       help="local: stop the job (exit 124, stacks in the run dir) when a rank makes no "
                            "progress this long (default: 600)")

    run = parser.add_argument_group("the run")
    run.add_argument("--name", "--job-name", dest="name", help="job name (default: the script's name)")
    run.add_argument("--run-root", default="fulmen_runs", help="folder for new run directories")
    run.add_argument("--run-dir", help="use this run directory (relaunch/resume an existing run)")
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set in every rank (repeat)")
    run.add_argument("--dry-run", action="store_true", help="print what would run or be submitted; start nothing")
    run.add_argument("--wait", action="store_true", help="cluster backends: wait for the job to end")

    slurm = parser.add_argument_group("SLURM (--cluster slurm)")
    slurm.add_argument("--partition")
    slurm.add_argument("--time", help="time limit, sbatch syntax (60, 1:00:00, 2-00:00:00)")
    slurm.add_argument("--account")
    slurm.add_argument("--qos")
    slurm.add_argument("--constraint")
    slurm.add_argument("--mem", help="memory per node, sbatch syntax (e.g. 64G)")
    slurm.add_argument("--cpus-per-task", type=int)
    slurm.add_argument("--exclusive", action="store_true")
    slurm.add_argument("--sbatch-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="any other #SBATCH directive (repeat)")
    slurm.add_argument("--signal", default=SlurmOptions.signal,
                       help=f"warning signal before the time limit (default: {SlurmOptions.signal})")
    slurm.add_argument("--max-requeues", type=int, default=SlurmOptions.max_requeues)
    slurm.add_argument("--requeue-on-failure", action="store_true", help="requeue after crashes too, not only preemption")

    k8s = parser.add_argument_group("Kubernetes (--cluster k8s)")
    k8s.add_argument("--image", help="container image with fulmen and the code")
    k8s.add_argument("--namespace", default=KubernetesOptions.namespace)
    k8s.add_argument("--queue", help="Volcano queue")

    parser.add_argument("-m", dest="module", metavar="MODULE", help="run a module (like python -m) instead of a script")
    parser.add_argument("entry", nargs="?", help="the script to run (or the first module argument with -m)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    return parser


def parse_launch_args(argv: Sequence[str], prog: str = "launch") -> tuple[JobSpec, bool, bool]:
    """argv -> (JobSpec, dry_run, wait). Raises LaunchError / SystemExit(2) on bad input."""
    argv = list(argv)
    module_args: list[str] | None = None
    # Like python: everything after `-m MODULE` belongs to the module, options included.
    if "-m" in argv:
        at = argv.index("-m")
        if at + 1 >= len(argv):
            build_launch_parser(prog).error("-m needs a module name")
        module_args = argv[at + 2 :]
        argv = argv[: at + 2]
    parser = build_launch_parser(prog)
    ns = parser.parse_args(argv)
    if ns.module:
        entry, args, is_module = ns.module, list(module_args or []), True
    elif ns.entry:
        entry, args, is_module = ns.entry, list(ns.args), False
    else:
        parser.error("give the script to run (launch [options] script.py [args]) or -m module")
    spec = JobSpec(
        entry=entry,
        args=tuple(args),
        entry_is_module=is_module,
        cluster=ns.cluster,
        nodes=ns.nodes,
        gpus_per_node=ns.gpus_per_node,
        nproc_per_node=ns.nproc_per_node,
        node_rank=ns.node_rank,
        master_addr=ns.master_addr,
        master_port=ns.master_port,
        name=ns.name,
        run_root=ns.run_root,
        run_dir=ns.run_dir,
        max_restarts=ns.max_restarts,
        hang_timeout=ns.hang_timeout,
        env=tuple(_key_values(ns.env, "--env")),
        slurm=SlurmOptions(
            partition=ns.partition,
            time=ns.time,
            account=ns.account,
            qos=ns.qos,
            constraint=ns.constraint,
            mem=ns.mem,
            cpus_per_task=ns.cpus_per_task,
            exclusive=ns.exclusive,
            signal=ns.signal,
            max_requeues=ns.max_requeues,
            requeue_on_failure=ns.requeue_on_failure,
            extra=tuple(_key_values(ns.sbatch_arg, "--sbatch-arg")),
        ),
        k8s=KubernetesOptions(image=ns.image, namespace=ns.namespace, queue=ns.queue),
    )
    return spec, ns.dry_run, ns.wait


def _key_values(items: Sequence[str], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LaunchError(f"{flag} {item!r} is not KEY=VALUE.\nHINT: e.g. {flag} NCCL_DEBUG=INFO")
        pairs.append((key, value))
    return pairs


def run_launch(argv: Sequence[str], prog: str = "launch") -> int:
    """``launch ARGV``: parse, then hand the JobSpec to its backend."""
    spec, dry_run, wait = parse_launch_args(argv, prog)
    from fulmen.launcher.backends import launch

    return launch(spec, dry_run=dry_run, wait=wait)


def _job_commands() -> Any:
    return importlib.import_module("fulmen.launcher.job_commands")


def build_main_parser() -> argparse.ArgumentParser:
    """``fulmen`` with its subcommands (``launch`` is parsed by its own parser)."""
    parser = argparse.ArgumentParser(
        prog="fulmen",
        description="Launch training runs and look after them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run `fulmen launch --help` for the launch options and examples",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("launch", help="run a script (same as the `launch` command)", add_help=False)
    status = sub.add_parser("status", help="state of a job (default: the latest)")
    status.add_argument("job", nargs="?", help="job id, run name or run directory")
    logs = sub.add_parser("logs", help="print a rank's log")
    logs.add_argument("job")
    logs.add_argument("--rank", type=int, default=None, help="global rank (default 0)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    cancel = sub.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job")
    sub.add_parser("list", help="list recorded jobs")
    return parser


def run_main(argv: Sequence[str]) -> int:
    """``fulmen ARGV``."""
    argv = list(argv)
    if argv and argv[0] == "launch":
        return run_launch(argv[1:], prog="fulmen launch")
    ns = build_main_parser().parse_args(argv)
    commands = _job_commands()
    if ns.command == "status":
        return int(commands.status(ns.job))
    if ns.command == "logs":
        return int(commands.logs(ns.job, rank=ns.rank, follow=ns.follow))
    if ns.command == "cancel":
        return int(commands.cancel(ns.job))
    return int(commands.list_jobs())


def _entry_point(body: Callable[[Sequence[str]], int], argv: Sequence[str] | None) -> int:
    try:
        code = body(sys.argv[1:] if argv is None else argv)
    except FulmenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    if argv is None and "torch" in sys.modules:
        exit_now(code)
    return code


def exit_now(code: int) -> None:
    """Leave without interpreter finalization once the run is over and reported.

    Tearing down the modules torch loaded costs about a second of CPU in the launcher after
    the ranks are gone, on every run; nothing of ours needs it (the run directory, job record
    and logs are written and closed). Only the console scripts do this, never an in-process
    caller of ``launch_main(argv)`` / ``main(argv)``.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def launch_main(argv: Sequence[str] | None = None) -> int:
    """Console script ``launch``."""
    return _entry_point(run_launch, argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``fulmen``."""
    return _entry_point(run_main, argv)
