"""The ClusterEnvironment interface: a new environment needs detect() and read_rank_info(), nothing else."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import fulmen.runtime
from fulmen.runtime.environments import ClusterEnvironment
from fulmen.runtime.ranks import RankInfo


class CountingEnvironment(ClusterEnvironment):
    name: ClassVar[str] = "counting"
    not_detected_hint: ClassVar[str] = "not counting"

    def __init__(self, environ: Mapping[str, str] | None = None, *, rank_info: RankInfo | None = None) -> None:
        super().__init__(environ, rank_info=rank_info)
        self.reads = 0

    @classmethod
    def detect(cls, environ: Mapping[str, str]) -> bool:
        return "COUNTING" in environ

    def read_rank_info(self) -> RankInfo:
        self.reads += 1
        return RankInfo(master_addr=self.environ["COUNTING"], master_port=1234, source=self.name)


def test_rank_info_is_read_once_and_gives_the_rendezvous() -> None:
    environment = CountingEnvironment({"COUNTING": "host-a"})
    assert environment.rank_info() is environment.rank_info()
    assert (environment.main_address, environment.main_port, environment.reads) == ("host-a", 1234, 1)
    environment.validate(None, None)
    environment.validate(1, 1)
    assert environment.creds_from_environment and environment.hand_off() is None


def test_runtime_imports_nothing_of_fulmen_slurm_at_module_level() -> None:
    """The layering this package exists for: SLURM's backend may use runtime, not the reverse."""
    offenders = []
    for path in sorted(Path(fulmen.runtime.__file__).parent.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:  # module level only; imports inside functions are on use
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names]
            offenders += [f"{path.name}: {n}" for n in names if n == "fulmen.slurm" or n.startswith("fulmen.slurm.")]
    assert offenders == []
