"""Import cost of fulmen relative to torch: ``import fulmen`` must cost at most 1.07x ``import torch``.

Each repetition starts two fresh interpreters, in alternating order so that drift on a shared
machine affects both sides alike: one runs ``import torch``, the other
``import fulmen; fulmen.Trainer; fulmen.LightningModule`` (fulmen imports torch itself). Each
child times its own imports, both in wall time (``perf_counter``) and in CPU time
(``process_time``; interpreter start-up is excluded, it is the same for both). On a shared
machine the CPU-time ratio is the steadier figure: wall time there includes waiting for a core.
The parent also records each child's whole wall time. A third child imports torch and then
fulmen, timing each part: on a busy machine this in-process split (``split_ratio_cpu``:
(torch + fulmen's extra) / torch, per child, median) is the steadiest measure of what fulmen
adds. Prints one JSON line with the medians and their ratios; ``ratio`` is the wall-time one
across processes.

    python bench/import_time.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

CHILDREN = {
    "torch": "import torch",
    "fulmen": "import fulmen; fulmen.Trainer; fulmen.LightningModule",
}
TEMPLATE = (
    "import time; _t, _c = time.perf_counter(), time.process_time(); {stmt}; "
    "print(time.perf_counter() - _t, time.process_time() - _c)"
)


SPLIT = (
    "import time; _c = time.process_time(); import torch; _t = time.process_time() - _c; "
    "_c = time.process_time(); import fulmen; fulmen.Trainer; fulmen.LightningModule; "
    "print(_t, time.process_time() - _c)"
)


def run_split_child(env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds of ``import torch``, CPU seconds fulmen adds on top), in one process."""
    result = subprocess.run([sys.executable, "-c", SPLIT], env=env, capture_output=True, text=True, check=True)
    torch_cpu, extra_cpu = (float(x) for x in result.stdout.strip().splitlines()[-1].split())
    return torch_cpu, extra_cpu


def run_child(statement: str, env: dict[str, str]) -> tuple[float, float, float]:
    """(wall seconds in the imports, CPU seconds in the imports, wall seconds of the whole child)."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", TEMPLATE.format(stmt=statement)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    import_wall, import_cpu = (float(x) for x in result.stdout.strip().splitlines()[-1].split())
    return import_wall, import_cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="pairs of child processes (default 15)")
    args = parser.parse_args()

    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # Warm the OS file cache so the first measured pair is not an outlier.
    for statement in CHILDREN.values():
        run_child(statement, env)

    imports: dict[str, list[float]] = {name: [] for name in CHILDREN}
    cpus: dict[str, list[float]] = {name: [] for name in CHILDREN}
    walls: dict[str, list[float]] = {name: [] for name in CHILDREN}
    split_ratios: list[float] = []
    extras: list[float] = []
    for rep in range(args.repeats):
        order = list(CHILDREN) if rep % 2 == 0 else list(reversed(CHILDREN))
        for name in order:
            import_s, cpu_s, wall_s = run_child(CHILDREN[name], env)
            imports[name].append(import_s)
            cpus[name].append(cpu_s)
            walls[name].append(wall_s)
        torch_cpu, extra_cpu = run_split_child(env)
        split_ratios.append((torch_cpu + extra_cpu) / torch_cpu)
        extras.append(extra_cpu)

    med = {name: statistics.median(values) for name, values in imports.items()}
    cpu_med = {name: statistics.median(values) for name, values in cpus.items()}
    wall_med = {name: statistics.median(values) for name, values in walls.items()}
    ratio = med["fulmen"] / med["torch"]
    cpu_ratio = cpu_med["fulmen"] / cpu_med["torch"]
    print(
        json.dumps(
            {
                "bench": "import_time",
                "repeats": args.repeats,
                "torch_import_s": round(med["torch"], 4),
                "fulmen_import_s": round(med["fulmen"], 4),
                "ratio": round(ratio, 4),
                "torch_import_cpu_s": round(cpu_med["torch"], 4),
                "fulmen_import_cpu_s": round(cpu_med["fulmen"], 4),
                "cpu_ratio": round(cpu_ratio, 4),
                "process_wall_ratio": round(wall_med["fulmen"] / wall_med["torch"], 4),
                "fulmen_extra_cpu_ms": round(1000 * statistics.median(extras), 1),
                "split_ratio_cpu": round(statistics.median(split_ratios), 4),
                "target_ratio": 1.07,
                "meets_target_wall": ratio <= 1.07,
                "meets_target_cpu": cpu_ratio <= 1.07,
                "meets_target_split_cpu": statistics.median(split_ratios) <= 1.07,
                "load_average_1min": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
