"""docker/Dockerfile, read as text: no docker engine runs here, so nothing is built.

The checks pin what users rely on: a CUDA PyTorch base, fulmen installed with its extras in a
dependency layer that comes before the source, the ``launch`` entry point, and a non-root user.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def _args(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [rest for kw, rest in instructions if kw == keyword]


def _index(instructions: list[tuple[str, str]], keyword: str, predicate) -> int:
    for i, (kw, rest) in enumerate(instructions):
        if kw == keyword and predicate(rest):
            return i
    raise AssertionError(f"no {keyword} matching the condition in {DOCKERFILE}")


def test_parser_joins_continuations_and_skips_comments() -> None:
    parsed = parse_dockerfile("# c\nFROM a:b\nRUN x \\\n    && y\n\nUSER u\n")
    assert parsed == [("FROM", "a:b"), ("RUN", "x && y"), ("USER", "u")]


def test_base_is_a_cuda_pytorch_runtime_image(instructions) -> None:
    defaults = dict(
        rest.split("=", 1) for kw, rest in instructions if kw == "ARG" and "=" in rest
    )
    (base,) = _args(instructions, "FROM")
    base = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], base)
    repo, _, tag = base.partition(":")
    assert repo == "pytorch/pytorch"
    assert re.fullmatch(r"\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime", tag), tag


def test_package_installed_with_slurm_and_torchx_extras(instructions) -> None:
    installs = [rest for rest in _args(instructions, "RUN") if "pip install" in rest]
    extras = set()
    for rest in installs:
        extras |= {e for m in re.finditer(r'"\.\[([^\]]+)\]"', rest) for e in m.group(1).split(",")}
    assert {"slurm", "torchx"} <= extras
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {"slurm", "torchx"} <= set(declared["optional-dependencies"])


def test_dependency_layer_comes_before_the_source_copy(instructions) -> None:
    meta = _index(instructions, "COPY", lambda r: "pyproject.toml" in r)
    deps = _index(instructions, "RUN", lambda r: 'pip install ".[' in r)
    source = _index(instructions, "COPY", lambda r: r.split()[0] == "fulmen")
    final = _index(instructions, "RUN", lambda r: "--no-deps" in r)
    assert meta < deps < source < final
    copied_before_deps = " ".join(r for kw, r in instructions[:deps] if kw == "COPY")
    assert "fulmen" not in copied_before_deps.replace("/opt/fulmen", "")


def test_entry_point_is_launch_from_the_package(instructions) -> None:
    (entry,) = _args(instructions, "ENTRYPOINT")
    assert json.loads(entry) == ["launch"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "launch" in scripts


def test_runs_as_a_non_root_user_created_in_the_image(instructions) -> None:
    users = _args(instructions, "USER")
    assert users, "no USER instruction: the image would run as root"
    final_user = users[-1].split(":")[0]
    assert final_user not in {"root", "0"}
    last_user = max(i for i, (kw, _) in enumerate(instructions) if kw == "USER")
    assert all(kw != "RUN" for kw, _ in instructions[last_user:]), "RUN after USER runs as that user"
    commands = [part.strip() for rest in _args(instructions, "RUN") for part in rest.split("&&")]
    created = [shlex.split(cmd)[-1] for cmd in commands if cmd.startswith("useradd")]
    assert final_user in created


def test_workdir_matches_the_pod_run_root() -> None:
    from fulmen.launcher.torchx_appdef import POD_WORKDIR

    workdirs = _args(parse_dockerfile(DOCKERFILE.read_text()), "WORKDIR")
    assert workdirs[-1] == POD_WORKDIR


def test_dockerignore_sends_only_what_the_image_copies() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    for needed in ("!pyproject.toml", "!README.md", "!fulmen/", "!examples/"):
        assert needed in lines
