"""JobSpec -> torchx AppDef: a pure translation, no I/O, no scheduler.

One role with ``spec.nodes`` replicas (one replica per node, i.e. one pod on Kubernetes). Each
replica runs fulmen's own local backend (``launch``), which starts the node's ranks under the
torch.distributed.elastic agent; the replica's node rank comes from torchx's ``replica_id``
macro and the rendezvous host from the variable torchx names in its ``rank0_env`` macro
(``TORCHX_RANK0_HOST=localhost`` on replica 0, Volcano's ``VC_<ROLE>_0_HOSTS`` elsewhere).
That is the same scheme as torchx's own ``dist.ddp`` component, with fulmen's launcher in place
of torchrun, so a script behaves the same under ``launch``, ``srun`` and Kubernetes.

torchx substitutes macros with ``string.Template``, so every literal ``$`` we pass through
(user arguments, environment values) is escaped as ``$$``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from fulmen.errors import LaunchError
from fulmen.jobs.spec import JobSpec

if TYPE_CHECKING:
    from torchx.specs import AppDef

#: Working directory of the fulmen image (docker/Dockerfile): relative run roots live under it.
POD_WORKDIR = "/workspace"
#: Rendezvous port on replica 0 for multi-node jobs (each pod has its own IP, so a fixed port is
#: safe there); ``spec.master_port`` overrides it.
DEFAULT_RDZV_PORT = 29500
#: Name of the rendezvous port in the role's port map (torchx's dist.ddp uses the same).
RDZV_PORT_NAME = "c10d"


#: Length caps for the app and role names. Volcano names each pod (and its DNS host name, at
#: most 63 characters) ``<app>-<torchx suffix, ~14>-<role>-<replica>-0``.
APP_NAME_MAX = 24
ROLE_NAME_MAX = 16


def dns_label(text: str, fallback: str = "fulmen", max_len: int = APP_NAME_MAX) -> str:
    """``text`` as a Kubernetes/Volcano name: lowercase ``[a-z0-9-]``, starts with a letter.

    Volcano derives pod names and the ``VC_<ROLE>_0_HOSTS`` variable from the role name, and the
    API server rejects names with ``_`` or capitals, so the job name ``my_train`` becomes ``my-train``.
    """
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    label = re.sub(r"-{2,}", "-", label)
    if not label or not label[0].isalpha():
        label = f"{fallback}-{label}".rstrip("-")
    return label[:max_len].rstrip("-")


def role_name(spec: JobSpec) -> str:
    """The AppDef's single role name: the job name in ``[a-z0-9]`` (also used to read logs).

    No ``-`` either: torchx names the rendezvous variable ``VC_<ROLE>_0_HOSTS`` after the role,
    and a ``-`` there is not a valid shell variable name (``${VC_MY-TRAIN_0_HOSTS}`` would
    expand to ``TRAIN_0_HOSTS`` on replicas other than 0).
    """
    label = dns_label(spec.job_name, fallback="trainer", max_len=2 * ROLE_NAME_MAX)
    return label.replace("-", "")[:ROLE_NAME_MAX]


def pod_run_dir(spec: JobSpec, run_dir_name: str) -> str:
    """The run directory as seen inside a pod.

    ``run_dir_name`` is the run folder's name on the submitting machine (``<job>-<run id>``), so
    both sides talk about the same run. An absolute ``run_root`` (a volume mounted at the same
    path in every pod) is kept; a relative one goes on the first ``--volume`` (a
    PersistentVolumeClaim: checkpoints outlive the pod, so a restarted pod resumes), and without
    one under the image's working directory, where it lasts only as long as the pod.
    """
    root = PurePosixPath(spec.run_root)
    if not root.is_absolute():
        volumes = spec.k8s.volumes
        root = PurePosixPath(volumes[0][1] if volumes else POD_WORKDIR) / root
    return str(root / run_dir_name)


def _template_escape(text: str) -> str:
    """Protect a literal string from torchx's ``string.Template`` macro substitution."""
    return text.replace("$", "$$")


class _Raw(str):
    """A command token that is already shell syntax (a macro or a variable expansion)."""


def launch_argv(
    spec: JobSpec, *, run_dir: str, rendezvous_port: int, restart_in_replica: bool = False
) -> list[str]:
    """The ``launch`` command one replica runs, as a list of tokens.

    ``--run-dir`` makes every replica's local backend use the run directory the submitter
    created (otherwise each would start a new one); ``--name`` keeps the job name, from which
    the local backend derives the multi-node rendezvous id. Single-node jobs leave rendezvous to
    the local backend (it picks a free port itself); with more than one node, the node rank and
    rendezvous host are shell expansions of torchx macros, returned unquoted as ``_Raw`` tokens
    for ``rank_entry_script`` to splice in as they are. ``restart_in_replica`` hands
    ``--max-restarts`` to the local backend, for schedulers that do not restart replicas.
    """
    argv: list[str] = ["launch", "--run-dir", run_dir]
    if spec.name:
        argv += ["--name", spec.name]
    if restart_in_replica and spec.max_restarts:
        argv += ["--max-restarts", str(spec.max_restarts)]
    if spec.gpus_per_node is not None:
        argv += ["--gpus", str(spec.gpus_per_node)]
    elif spec.nproc_per_node is not None:
        argv += ["--nproc-per-node", str(spec.nproc_per_node)]
    if spec.nodes > 1:
        argv += [
            "--nodes",
            str(spec.nodes),
            "--node-rank",
            _Raw("${replica_id}"),
            "--master-addr",
            # After torchx substitutes ${rank0_env} this reads e.g. ${VC_TRAIN_0_HOSTS:=localhost}
            # and bash expands it in the pod; "$$" keeps the outer "$" away from Template.
            _Raw("$${${rank0_env}:=localhost}"),
            "--master-port",
            str(rendezvous_port),
        ]
    if spec.entry_is_module:
        argv += ["-m", spec.entry]
    else:
        argv.append(spec.entry)
    argv += list(spec.args)
    return argv


def rank_entry_script(argv: list[str]) -> str:
    """Join ``launch_argv`` into the ``bash -c`` script a replica runs.

    ``exec`` makes the launcher the container's main process, so the signals Kubernetes sends on
    eviction or deletion reach fulmen's handlers directly rather than an idle bash.
    """
    tokens = [tok if isinstance(tok, _Raw) else _template_escape(shlex.quote(tok)) for tok in argv]
    return "exec " + " ".join(tokens)


def build_appdef(
    spec: JobSpec,
    *,
    image: str,
    run_dir: str,
    rendezvous_port: int | None = None,
    path_prefix: str | None = None,
    restart_in_replica: bool = False,
) -> AppDef:
    """The torchx AppDef that runs ``spec``: one role, ``spec.nodes`` replicas.

    ``run_dir`` is the run directory as the replicas see it (``FULMEN_RUN_DIR``);
    ``path_prefix`` is put first on the replicas' ``PATH`` (torchx-local uses it so ``launch``
    and ``torchrun`` come from this interpreter's environment; on Kubernetes the image's
    ``PATH`` is already right). ``spec.max_restarts`` becomes the role's ``max_retries`` with
    the APPLICATION policy: a failed pod restarts the whole job, which then resumes from the
    run's resume checkpoint. torchx's local scheduler ignores ``max_retries``, so torchx-local
    sets ``restart_in_replica`` and the local backend in the replica restarts the ranks instead.
    """
    from torchx import specs

    if not image:
        raise LaunchError(
            "The job has no container image.\n"
            "HINT: pass --image REGISTRY/fulmen:TAG (see docker/README.md to build one)."
        )
    port = rendezvous_port or spec.master_port or DEFAULT_RDZV_PORT
    argv = launch_argv(
        spec, run_dir=run_dir, rendezvous_port=port, restart_in_replica=restart_in_replica
    )
    env = {
        "FULMEN_RUN_DIR": run_dir,
        # Rank output goes to the pod log line by line instead of in 4 KiB blocks.
        "PYTHONUNBUFFERED": "1",
    }
    env.update(dict(spec.env))
    if path_prefix:
        env["PATH"] = path_prefix
    role = specs.Role(
        name=role_name(spec),
        image=image,
        entrypoint="bash",
        args=["-c", rank_entry_script(argv)],
        env={key: _template_escape(value) for key, value in env.items()},
        num_replicas=spec.nodes,
        max_retries=spec.max_restarts,
        retry_policy=specs.RetryPolicy.APPLICATION,
        resource=specs.Resource(
            cpu=spec.k8s.cpu,
            gpu=spec.gpus_per_node or 0,
            memMB=spec.k8s.mem_mb,
        ),
        port_map={RDZV_PORT_NAME: port},
        mounts=[specs.VolumeMount(src=claim, dst_path=mount) for claim, mount in spec.k8s.volumes],
    )
    return specs.AppDef(name=dns_label(spec.job_name), roles=[role])
