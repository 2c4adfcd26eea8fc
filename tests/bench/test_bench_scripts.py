"""Every benchmark still starts: its imports resolve against today's package layout.

The benches run by hand, not in the suite, so a moved module broke ``bench/ddp_startup.py``
(``fulmen.launcher.ports`` became ``fulmen.jobs.ports``) without any test noticing. Loading each
script without running its ``__main__`` block catches that in a second, and measures nothing.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

SCRIPTS = sorted(path.name for path in (REPO_ROOT / "bench").glob("*.py"))


def test_the_benches_are_found() -> None:
    assert {"loop_overhead.py", "checkpoint_io.py", "ddp_startup.py", "compile_speed.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_loads(script: str) -> None:
    code = f"import runpy; runpy.run_path({str(REPO_ROOT / 'bench' / script)!r}, run_name='bench_load_check')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"bench/{script} does not load:\n{proc.stderr[-3000:]}"
