"""The rendezvous port of a run: derived from a run-unique id, probed, claimed, overridable.

Why not "29500" or the last digits of a job id: two runs started at the same moment on one
machine would pick the same port and one of them would fail (or, worse, join the other's
store). Here the first candidate is a hash of an id that is unique per run, spread over a
wide range; each candidate is probed by binding it, and a claim file (created with O_EXCL in
a per-user folder) makes the choice exclusive between fulmen runs on this machine until the
run releases it. ``MASTER_PORT`` in the environment, or ``--master-port``, overrides all of it.

The one derivation for every backend: the local launcher hashes its run id (``choose_port``);
SLURM tasks hash the job id and the restart count (``candidate_port(job_id, restart)``, in
``fulmen.slurm.environment``), so a requeued job meets on a fresh port.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import stat
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

from fulmen.errors import LaunchError

PORT_RANGE = (20_000, 60_000)  # wide; it overlaps the ephemeral range, which the bind probe covers
MAX_CANDIDATES = 64


def candidate_port(run_id: str, attempt: int = 0) -> int:
    """The ``attempt``-th port to try for ``run_id``: a stable hash into ``PORT_RANGE``.

    Every process that knows the id arrives at the same port without talking to the others
    (all tasks of a SLURM job, all nodes of a multi-node local run).
    """
    digest = hashlib.sha256(f"{run_id}:{attempt}".encode()).digest()
    low, high = PORT_RANGE
    return low + int.from_bytes(digest[:8], "big") % (high - low)


def is_port_free(port: int, host: str = "") -> bool:
    """True when ``port`` can be bound on ``host`` right now (a probe, not a reservation)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def claims_dir() -> Path:
    """Per-user folder of port claim files, shared by every fulmen run of this user on this machine.

    ``$TMPDIR/fulmen-ports-<uid>`` has a name anyone can predict: another user could create
    it first (or a link in its place) and fill it with claims that deny every launch. So it is
    created 0700 and used only when it is a real folder owned by us and closed to others;
    otherwise the claims go to a folder only we can write (``$XDG_RUNTIME_DIR`` or
    ``~/.cache/fulmen``), with a warning naming the folder that was refused.
    """
    uid = os.getuid() if hasattr(os, "getuid") else 0
    shared = Path(tempfile.gettempdir()) / f"fulmen-ports-{uid}"
    problem = _private_dir_problem(shared)
    if problem is None:
        return shared
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    fallback = (Path(runtime) / "fulmen-ports") if runtime else (Path.home() / ".cache" / "fulmen" / f"ports-{socket.gethostname()}")
    if _private_dir_problem(fallback) is not None:
        fallback = Path(tempfile.mkdtemp(prefix="fulmen-ports-"))  # private to this run at least
    warnings.warn(f"fulmen: port claims: {shared} {problem}; using {fallback} instead.", stacklevel=2)
    return fallback


def _private_dir_problem(path: Path) -> str | None:
    """None when ``path`` is (now) a folder of ours that only we can write; else what is wrong."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        return f"cannot be created ({exc.strerror})"
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return "is not a folder (a link or a file is in its place)"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return f"belongs to uid {info.st_uid}, not to us (uid {os.getuid()})"
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)  # ours, but open to others (an older fulmen made it 0755)
    return None


def claim_port(port: int, directory: Path | None = None) -> bool:
    """Claim ``port`` for this process; False when a live process already holds it.

    A claim whose owner process has exited is stale and taken over.
    """
    directory = directory or claims_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / str(port)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:
            if _claim_is_live(path):
                return False
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        return True
    return False


def release_port(port: int, directory: Path | None = None) -> None:
    """Drop this process's claim on ``port`` (no-op when it holds none)."""
    path = (directory or claims_dir()) / str(port)
    try:
        owner = int(path.read_text() or "0")
    except (OSError, ValueError):
        return
    if owner == os.getpid():
        path.unlink(missing_ok=True)


def _claim_is_live(path: Path) -> bool:
    try:
        text = path.read_text()
        age = time.time() - path.stat().st_mtime
    except OSError:
        return False  # vanished meanwhile: its owner released it
    if not text.strip():
        # Created but not yet written by its owner (a claim in progress), unless it stayed
        # empty long enough that the owner must have died between create and write.
        return age < 10.0
    try:
        pid = int(text)
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def choose_port(
    run_id: str,
    *,
    explicit: int | None = None,
    environ: Mapping[str, str] | None = None,
    claims: Path | None = None,
) -> tuple[int, bool]:
    """The port for run ``run_id`` and whether this process claimed it (and must release it).

    Precedence: ``explicit`` (``--master-port``), then ``MASTER_PORT``, then the first
    derived candidate that is free and unclaimed.
    """
    env = os.environ if environ is None else environ
    if explicit is not None:
        return explicit, False
    if env.get("MASTER_PORT"):
        try:
            return int(env["MASTER_PORT"]), False
        except ValueError:
            raise LaunchError(f"MASTER_PORT={env['MASTER_PORT']!r} is not a port number.") from None
    for attempt in range(MAX_CANDIDATES):
        port = candidate_port(run_id, attempt)
        if not claim_port(port, claims):
            continue
        if is_port_free(port):
            return port, True
        release_port(port, claims)
    low, high = PORT_RANGE
    raise LaunchError(
        f"No free port found for run {run_id} after {MAX_CANDIDATES} candidates in [{low}, {high}).\n"
        "HINT: pass --master-port PORT (or set MASTER_PORT) to a port you know is free."
    )


def listen_socket(host: str, port: int, *, flag: str = "--master-port") -> socket.socket:
    """A listening socket bound to ``host``:``port`` only, for the rendezvous store to take over.

    torch's TCPStore would listen on every interface whatever ``host`` says, and accepts writes
    from anyone who can reach it; bound to the master address (loopback for a one-node run)
    it is reachable only where it must be. A busy port or an address that is not this
    machine's is a one-line LaunchError naming it, not a traceback from inside torch.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise LaunchError(
            f"--master-addr {host!r} does not resolve ({exc.strerror}).\n"
            "HINT: pass node 0's address or host name as --master-addr (127.0.0.1 for one machine)."
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(512)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise LaunchError(
                f"{flag} {port} is in use on {host} (another process listens there).\n"
                f"HINT: choose a free port with {flag} PORT, or leave {flag} and MASTER_PORT unset "
                "to get a free one derived per run."
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise LaunchError(
                f"--master-addr {host} is not an address of this machine, so node 0 cannot listen there.\n"
                "HINT: on node 0, --master-addr must name this machine (its host name or one of its addresses)."
            ) from None
        raise LaunchError(f"cannot listen on {host}:{port} for the rendezvous: {exc.strerror}.") from None
    return sock
