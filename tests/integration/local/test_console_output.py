"""Rank 0's console is exactly what the script prints (issue 10 defect 2, issue 14 item 3).

The same script runs as a plain process, under ``launch`` (1 and 2 processes) and as
``python script.py`` with ``Trainer(devices=2)``; rank 0's stdout and stderr bytes must equal
the plain run's, apart from whole lines the launcher adds ("fulmen: ...") or shows of other
ranks ("[rankN]:..."). A tqdm bar on a terminal redraws in place.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from .conftest import child_env, launch_cmd

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

SCRIPT = Path(__file__).resolve().parent / "scripts" / "console_output.py"


def run_bytes(cmd: list[str], tmp: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, env=env or child_env(tmp), capture_output=True, timeout=90, cwd=tmp)


def plain(tmp: Path, *args: str, rank: int | None = None) -> subprocess.CompletedProcess[bytes]:
    env = child_env(tmp)
    if rank is not None:
        env["RANK"] = str(rank)
    return run_bytes([sys.executable, str(SCRIPT), *args], tmp, env)


def without_added_lines(stderr: bytes) -> tuple[bytes, list[bytes]]:
    """(rank 0's stderr, the whole lines others added): launcher notes and other ranks' lines."""
    own, added = [], []
    for line in stderr.splitlines(keepends=True):
        (added if line.startswith((b"fulmen: ", b"[rank")) else own).append(line)
    return b"".join(own), added


def run_dir_of(stderr: bytes) -> Path:
    line = next(ln for ln in stderr.decode().splitlines() if ln.startswith("fulmen: run dir "))
    return Path(line.split()[3])


def is_interleaving(merged: bytes, a: bytes, b: bytes) -> bool:
    """Whether ``merged`` is ``a`` and ``b`` interleaved, each in its own order (a rank's log)."""
    if len(merged) != len(a) + len(b):
        return False
    reachable = {(0, 0)}
    for byte in merged:
        reachable = {(i + 1, j) for i, j in reachable if i < len(a) and a[i] == byte} | {
            (i, j + 1) for i, j in reachable if j < len(b) and b[j] == byte
        }
        if not reachable:
            return False
    return True


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[bytes]:
    done = plain(tmp_path_factory.mktemp("plain"))
    assert done.returncode == 0, done.stderr
    assert b"\r" in done.stderr and not done.stdout.endswith(b"\n") and "中文".encode() in done.stdout
    return done


@pytest.mark.parametrize("how", ["launch-1", "launch-2", "python-devices-2"])
def test_rank0_output_is_the_scripts_byte_for_byte(
    how: str, reference: subprocess.CompletedProcess[bytes], tmp_path: Path
) -> None:
    cmd = {
        "launch-1": launch_cmd(str(SCRIPT)),
        "launch-2": launch_cmd("--nproc-per-node", "2", str(SCRIPT)),
        "python-devices-2": [sys.executable, str(SCRIPT), "--devices", "2"],
    }[how]
    done = run_bytes(cmd, tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    assert done.stdout == reference.stdout
    own_stderr, added = without_added_lines(done.stderr)
    # with --devices the script fits first, and its Trainer says why fit stopped, as Lightning's does
    fit_line = b"`Trainer.fit` stopped: `max_epochs=1` reached.\n" if how == "python-devices-2" else b""
    assert own_stderr == fit_line + reference.stderr
    others = [line for line in added if line.startswith(b"[rank")]
    if how == "launch-1":
        assert others == []
    else:  # rank 1's error line, whole, on a line of its own
        assert others == [b"[rank1]:ResourceWarningError: rank 1 saw a slow disk (not fatal)\n"]
    logs = run_dir_of(done.stderr) / "logs"
    assert is_interleaving((logs / "rank_0.log").read_bytes(), reference.stdout, fit_line + reference.stderr)
    if how != "launch-1":
        rank1 = plain(tmp_path, rank=1)  # what rank 1 prints; its log holds all of it
        log1 = (logs / "rank_1.log").read_bytes()
        assert is_interleaving(log1, rank1.stdout, rank1.stderr) and b"this is rank 1" in log1


def test_failing_rank0s_traceback_is_printed_once_as_python_prints_it(tmp_path: Path) -> None:
    expected = plain(tmp_path, "--fail-rank", "0")
    assert expected.returncode == 1 and b"ValueError: boom from rank 0" in expected.stderr
    done = run_bytes(launch_cmd("--nproc-per-node", "2", str(SCRIPT), "--fail-rank", "0"), tmp_path)
    assert done.returncode == 1
    assert done.stdout == expected.stdout
    own_stderr, added = without_added_lines(done.stderr)
    assert own_stderr == expected.stderr
    assert done.stderr.count(b"Traceback (most recent call last)") == 1
    assert any(b"rank 0 (pid" in line and b"failed first, with exit code 1" in line for line in added)


def test_failing_other_ranks_traceback_reaches_the_console_once(
    reference: subprocess.CompletedProcess[bytes], tmp_path: Path
) -> None:
    done = run_bytes(launch_cmd("--nproc-per-node", "2", str(SCRIPT), "--fail-rank", "1"), tmp_path)
    assert done.returncode == 1
    assert done.stdout == reference.stdout
    own_stderr, _ = without_added_lines(done.stderr)
    assert own_stderr == reference.stderr
    text = done.stderr.decode()
    assert text.count("Traceback (most recent call last)") == 1
    assert "[rank1]:Traceback (most recent call last):\n" in text
    assert f'[rank1]:  File "{SCRIPT}", line ' in text  # the whole traceback, frames included
    assert "[rank1]:ValueError: boom from rank 1\n" in text
    assert "rank 1 (pid" in text and "its output is above" in text
    log1 = (run_dir_of(done.stderr) / "logs" / "rank_1.log").read_text()
    assert log1.count("Traceback (most recent call last)") == 1 and "ValueError: boom from rank 1" in log1


TQDM_SCRIPT = """\
import time
from tqdm import tqdm
for _ in tqdm(range(40), mininterval=0, miniters=1):
    time.sleep(0.005)
print("done")
"""


def on_terminal(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 90) -> bytes:
    """What ``cmd`` shows on a terminal (stdout and stderr both on one pty)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        proc.wait(timeout=30)
    assert proc.returncode == 0, shown.decode(errors="replace")[-2000:]
    return shown


def test_tqdm_bar_redraws_in_place_under_launch(tmp_path: Path) -> None:
    script = tmp_path / "bar.py"
    script.write_text(TQDM_SCRIPT)
    env = child_env(tmp_path)
    python_shows = on_terminal([sys.executable, str(script)], tmp_path, env)
    launch_shows = on_terminal(launch_cmd(str(script)), tmp_path, env)
    python_lines = python_shows.count(b"\n")
    launcher_lines = launch_shows.count(b"fulmen: ")
    assert python_shows.count(b"\r") >= 40 and launch_shows.count(b"\r") >= 40  # redrawn, not new lines
    assert launch_shows.count(b"\n") <= python_lines + launcher_lines, launch_shows.decode(errors="replace")
    assert b"[rank0]" not in launch_shows
    assert b"40/40" in launch_shows and b"done\r\n" in launch_shows
