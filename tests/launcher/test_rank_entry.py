"""The rank entry runs a script or module exactly like python would; a log file gets stderr too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = (
    "import sys\n"
    "print('name', __name__, 'argv', sys.argv, 'path0', sys.path[0])\n"
    "print('to stderr', file=sys.stderr)\n"
)


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-u", "-m", "fulmen.launcher.rank_entry", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_script_sees_main_argv_and_its_folder(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    (tmp_path / "pkg").mkdir()
    script = tmp_path / "pkg" / "train.py"
    script.write_text(PROBE)
    done = _run([str(script), "--lr", "0.1"], subprocess_env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"name __main__ argv ['{script}', '--lr', '0.1'] path0 {script.parent}" in done.stdout
    assert "to stderr" in done.stderr and "to stderr" not in done.stdout  # a pipe: the streams stay apart


def test_stderr_joins_a_log_file(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    script = tmp_path / "train.py"
    script.write_text(PROBE)
    log = tmp_path / "rank_1.log"
    with log.open("wb") as stdout:
        done = subprocess.run([sys.executable, "-u", "-m", "fulmen.launcher.rank_entry", str(script)],
                              env=subprocess_env, cwd=tmp_path, stdout=stdout, stderr=subprocess.PIPE, timeout=60)
    assert done.returncode == 0 and done.stderr == b""
    assert log.read_text().splitlines()[1] == "to stderr"  # in order, after the first print


def test_module_runs_as_main(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "train.py").write_text(PROBE)
    env = dict(subprocess_env, PYTHONPATH=subprocess_env["PYTHONPATH"] + ":" + str(tmp_path))
    done = _run(["--module", "mypkg.train", "x"], env, tmp_path)
    assert done.returncode == 0, done.stdout
    assert "name __main__" in done.stdout and "'x'" in done.stdout


def test_exit_code_and_traceback_pass_through(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    script = tmp_path / "fail.py"
    script.write_text("raise SystemExit(75)\n")
    assert _run([str(script)], subprocess_env, tmp_path).returncode == 75
    script.write_text("def f():\n    raise ValueError('boom')\nf()\n")
    done = _run([str(script)], subprocess_env, tmp_path)
    as_python = subprocess.run([sys.executable, str(script)], env=subprocess_env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)
    assert done.returncode == as_python.returncode == 1
    assert done.stderr == as_python.stderr  # no frames of the rank entry or runpy
    assert done.stderr.count("File ") == 2 and done.stderr.endswith("ValueError: boom\n")


def test_topology_mismatch_prints_one_message_on_local_rank0_and_none_elsewhere(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    from fulmen.jobs.exit_codes import CONFIGURATION_ERROR_EXIT_CODE

    script = tmp_path / "train.py"
    script.write_text(
        "from fulmen.errors import ClusterMismatchError\n"
        "raise ClusterMismatchError('Trainer(num_nodes=1) does not match the 2 node(s)\\nHINT: leave it out')\n"
    )
    outputs = {}
    for local_rank in ("0", "1"):
        done = _run([str(script)], dict(subprocess_env, LOCAL_RANK=local_rank), tmp_path)
        assert done.returncode == CONFIGURATION_ERROR_EXIT_CODE, done.stderr
        assert done.stdout == ""
        outputs[local_rank] = done.stderr
    assert outputs["0"] == "fulmen: error: Trainer(num_nodes=1) does not match the 2 node(s)\nHINT: leave it out\n"
    assert outputs["1"] == ""
