"""``launch`` and ``fulmen {launch,status,logs,cancel,list,events,report,sweep}``: argv -> JobSpec -> backend.

The job subcommands are declared and dispatched in ``fulmen.launcher.job_cli``.

Thin on purpose: every check that needs no I/O lives in ``JobSpec``; the backend is looked up
by name (``fulmen.launcher.backends``) and imported only when used (the local one needs torch,
the SLURM one submitit, k8s torchx), so ``launch --help`` and argument errors are instant.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from fulmen.errors import FulmenError, LaunchError
from fulmen.jobs.spec import CLUSTERS, JobSpec, KubernetesOptions, SlurmOptions, parse_memory_mb, parse_volume
from fulmen.launcher.job_cli import add_job_parsers, run_job_command
from fulmen.launcher.sweep_cli import add_sweep_options, space_from_args

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
  launch --cluster slurm --setup 'module load cuda' --setup 'source venv/bin/activate' --gpus 4 train.py
  launch --cluster k8s --image repo/img:tag --nodes 2 --gpus 8 train.py
  launch --cluster k8s --image repo/img:tag --volume runs-pvc:/mnt/runs --cpu 16 --memory 64G --max-restarts 3 train.py

torchrun's spellings work too: --nproc_per_node, --nnodes, --node_rank, --master_addr,
--master_port, --rdzv-endpoint HOST:PORT, --standalone.

exit codes: 0 success; 75 the ranks were preempted and saved a resume checkpoint (relaunch to
continue); 69 the other nodes did not join within --rdzv-timeout; 2 a usage error; otherwise the
first failing rank's exit code (128+N for signal N).
"""


class ShortErrorParser(argparse.ArgumentParser):
    """argparse that answers a mistake in one or two lines instead of the whole usage block.

    An unknown option gets the closest known one ("did you mean --nproc-per-node?"), because
    the usual cause is a typo or another launcher's spelling. Abbreviations are off: with
    torchrun's aliases most prefixes would be ambiguous, and a guessed expansion is worse than
    a suggestion.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\nHINT: `{self.prog} --help` lists the options.\n")

    def reject_unknown(self, extras: Sequence[str]) -> None:
        """Exit 2 naming the first unknown option (and a close known one), if ``extras`` has one."""
        unknown = [arg for arg in extras if arg.startswith("-") and arg != "-"]
        if not unknown and extras:
            self.error(f"unexpected argument {extras[0]!r} (options go before the script, its arguments after it)")
        if unknown:
            flag = unknown[0].split("=", 1)[0]
            guess = suggest_option(flag, self._option_string_actions)
            self.error(f"unknown option {flag}" + (f"; did you mean {guess}?" if guess else ""))


def suggest_option(flag: str, known: dict[str, argparse.Action]) -> str | None:
    """The known long option closest to ``flag`` (underscores count as dashes), or None.

    Answers with an action's first spelling, so torchrun's aliases are never suggested over
    ours.
    """
    def norm(option: str) -> str:
        return option.lstrip("-").replace("_", "-").lower()

    canonical = {norm(option): action.option_strings[0] for option, action in known.items() if option.startswith("--")}
    word = norm(flag)
    # A shortened or lengthened name ("--gpu", "--nnode"), then the longest shared start
    # ("--nprocs" -> nproc-per-node, not nodes), then plain similarity ("--dryrun").
    close = [name for name in canonical if name.startswith(word) or word.startswith(name)]
    if not close:
        shared = {name: len(os.path.commonprefix([name, word])) for name in canonical}
        best = max(shared.values(), default=0)
        close = [name for name, length in shared.items() if length == best and best >= 4]
    if not close:
        close = difflib.get_close_matches(word, list(canonical), n=1, cutoff=0.6)
    return canonical[close[0]] if close else None


def build_launch_parser(prog: str = "launch") -> argparse.ArgumentParser:
    """The argument parser of ``launch`` (also used by ``fulmen launch``)."""
    parser = ShortErrorParser(
        prog=prog,
        description="Run a training script as one process, N DDP ranks, or a cluster job.",
        epilog=LAUNCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_topology_options(parser.add_argument_group("where and how many"))
    _add_run_options(parser.add_argument_group("the run"))
    _add_slurm_options(parser.add_argument_group("SLURM (--cluster slurm)"))
    _add_kubernetes_options(parser.add_argument_group("Kubernetes (--cluster k8s)"))
    add_sweep_options(parser.add_argument_group("sweeps (many runs over option values)"))
    parser.add_argument("-m", dest="module", metavar="MODULE", help="run a module (like python -m) instead of a script")
    parser.add_argument("entry", nargs="?", help="the script to run (or the first module argument with -m)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    return parser


def _add_topology_options(where: argparse._ArgumentGroup) -> None:
    where.add_argument("--cluster", choices=CLUSTERS, default="local", help="backend (default: local)")
    where.add_argument("--nodes", "--nnodes", type=int, default=1, help="machines (default: 1)")
    where.add_argument("--gpus", type=int, dest="gpus_per_node", metavar="N", help="GPU ranks per node, one per GPU")
    where.add_argument("--nproc-per-node", "--nproc_per_node", type=int, metavar="N",
                       help="ranks per node on any accelerator (CPU here)")
    where.add_argument("--node-rank", "--node_rank", type=int, default=0,
                       help="this machine's node index (local, multi-node)")
    where.add_argument("--master-addr", "--master_addr", help="node 0's address (local, multi-node)")
    where.add_argument("--master-port", "--master_port", type=int,
                       help="rendezvous port (default: derived per run; MASTER_PORT)")
    where.add_argument("--rdzv-endpoint", "--rdzv_endpoint", metavar="HOST:PORT",
                       help="torchrun's spelling of --master-addr HOST --master-port PORT")
    where.add_argument("--rdzv-timeout", "--rdzv_timeout", type=float, default=JobSpec.rdzv_timeout, metavar="S",
                       help=f"seconds the nodes wait for each other (default: {JobSpec.rdzv_timeout:g})")
    where.add_argument("--standalone", action="store_true", help="torchrun's one-node mode (the default here)")
    where.add_argument("--max-restarts", "--max_restarts", type=int, default=0,
                       help="restart the ranks this often after a failure")
    where.add_argument("--force", action="store_true", help="local: allow more --nproc-per-node ranks than CPUs")
    where.add_argument("--hang-timeout", type=float, default=600.0, metavar="SECONDS",
                       help="local: stop the job (exit 124, stacks in the run dir) when a rank makes no "
                            "progress this long (default: 600)")


def _add_run_options(run: argparse._ArgumentGroup) -> None:
    run.add_argument("--name", "--job-name", dest="name", help="job name (default: the script's name)")
    run.add_argument("--run-root", default="fulmen_runs", help="folder for new run directories")
    run.add_argument("--run-dir", help="use this run directory (relaunch/resume an existing run)")
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set in every rank (repeat)")
    run.add_argument("--dry-run", action="store_true", help="print what would run or be submitted; start nothing")
    run.add_argument("--wait", action="store_true", help="cluster backends: wait for the job to end")


def _add_slurm_options(slurm: argparse._ArgumentGroup) -> None:
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
    slurm.add_argument("--setup", action="append", default=[], metavar="LINE",
                       help="shell line run before the ranks start, e.g. 'module load cuda' (repeat)")


def _add_kubernetes_options(k8s: argparse._ArgumentGroup) -> None:
    k8s.add_argument("--image", help="container image with fulmen and the code")
    k8s.add_argument("--namespace", default=KubernetesOptions.namespace)
    k8s.add_argument("--queue", help="Volcano queue")
    k8s.add_argument("--volume", action="append", default=[], metavar="CLAIM:/PATH",
                     help="mount a PersistentVolumeClaim in every pod; the run dir goes on the first (repeat)")
    k8s.add_argument("--cpu", type=int, default=KubernetesOptions.cpu, help="CPUs per replica (pod)")
    k8s.add_argument("--memory", metavar="SIZE", help=f"memory per replica, e.g. 64G (default: {KubernetesOptions.mem_mb}M)")


def parse_launch_args(argv: Sequence[str], prog: str = "launch") -> tuple[JobSpec, bool, bool]:
    """argv -> (JobSpec, dry_run, wait). Raises LaunchError / SystemExit(2) on bad input."""
    ns, spec = parse_launch_namespace(argv, prog)
    return spec, ns.dry_run, ns.wait


def parse_launch_namespace(argv: Sequence[str], prog: str = "launch") -> tuple[argparse.Namespace, JobSpec]:
    """argv -> (the parsed options, JobSpec): the options hold what is not part of a job (sweeps)."""
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
    ns, extras = parser.parse_known_args(argv)
    parser.reject_unknown(extras)
    master_addr, master_port = _rendezvous_address(ns)
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
        master_addr=master_addr,
        master_port=master_port,
        rdzv_timeout=ns.rdzv_timeout,
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
            setup=tuple(ns.setup),
        ),
        k8s=KubernetesOptions(
            image=ns.image, namespace=ns.namespace, queue=ns.queue, cpu=ns.cpu,
            mem_mb=KubernetesOptions.mem_mb if ns.memory is None else parse_memory_mb(ns.memory),
            volumes=tuple(parse_volume(item) for item in ns.volume),
        ),
        force=ns.force,
    )
    return ns, spec


def _rendezvous_address(ns: argparse.Namespace) -> tuple[str | None, int | None]:
    """(master address, port) from --master-addr/--master-port or torchrun's --rdzv-endpoint."""
    addr, port = ns.master_addr, ns.master_port
    if ns.standalone and (ns.nodes > 1 or ns.rdzv_endpoint):
        raise LaunchError(
            f"--standalone is torchrun's one-node mode, but --nodes {ns.nodes}"
            + (f" --rdzv-endpoint {ns.rdzv_endpoint}" if ns.rdzv_endpoint else "") + " was given too.\n"
            "HINT: drop --standalone (one node needs no rendezvous settings here), or drop the multi-node options."
        )
    if ns.rdzv_endpoint:
        host, sep, port_text = ns.rdzv_endpoint.rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise LaunchError(
                f"--rdzv-endpoint {ns.rdzv_endpoint!r} is not HOST:PORT.\nHINT: e.g. --rdzv-endpoint node-a:29400"
            )
        if (addr is not None and addr != host) or (port is not None and port != int(port_text)):
            raise LaunchError(
                f"--rdzv-endpoint {ns.rdzv_endpoint} disagrees with --master-addr {addr} --master-port {port}.\n"
                "HINT: give one of the two spellings."
            )
        addr, port = host, int(port_text)
    return addr, port


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
    ns, spec = parse_launch_namespace(argv, prog)
    space = space_from_args(ns)
    if space is not None:
        from fulmen.launcher.sweep_run import run_sweep

        return run_sweep(spec, space, parallel=ns.parallel or 1, dry_run=ns.dry_run, wait=ns.wait,
                         gpus_per_trial=ns.gpus_per_trial)
    from fulmen.launcher.backends import launch

    return launch(spec, dry_run=ns.dry_run, wait=ns.wait)


def build_main_parser() -> argparse.ArgumentParser:
    """``fulmen`` with its subcommands (``launch`` is parsed by its own parser)."""
    parser = ShortErrorParser(
        prog="fulmen",
        description="Launch training runs and look after them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run `fulmen launch --help` for the launch options and examples",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("launch", help="run a script (same as the `launch` command)", add_help=False)
    add_job_parsers(sub)
    return parser


def run_main(argv: Sequence[str]) -> int:
    """``fulmen ARGV``."""
    argv = list(argv)
    if argv and argv[0] == "launch":
        return run_launch(argv[1:], prog="fulmen launch")
    return run_job_command(build_main_parser().parse_args(argv))


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
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass  # a closed console (`| head`): nothing left to tell it
    os._exit(code)


def launch_main(argv: Sequence[str] | None = None) -> int:
    """Console script ``launch``."""
    return _entry_point(run_launch, argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``fulmen``."""
    return _entry_point(run_main, argv)
