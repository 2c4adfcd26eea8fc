"""The code's git commit, for experiments that record which code produced them (test_tube's
``create_git_tag``). The one place that shells out to ``git``."""

from __future__ import annotations

import os
import subprocess

from fulmen.errors import MisconfigurationException

__all__ = ["code_commit", "create_annotated_tag"]


def _git(args: list[str], cwd: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as err:
        raise MisconfigurationException(
            "create_git_tag=True needs the `git` command, which is not installed here.\n"
            "HINT: install git, or pass create_git_tag=False."
        ) from err


def code_commit(cwd: str | os.PathLike[str] | None = None) -> str:
    """The commit hash of ``HEAD`` in the repository holding ``cwd`` (default: the working folder).

    Raises ``MisconfigurationException`` outside a git repository (or one without commits):
    recording "the code's commit" there would silently record nothing.
    """
    where = os.fspath(cwd if cwd is not None else os.getcwd())
    result = _git(["rev-parse", "--verify", "HEAD"], where)
    if result.returncode != 0:
        raise MisconfigurationException(
            f"create_git_tag=True records the code's git commit, but {where} is not inside a git repository "
            f"with a commit (git said: {result.stderr.strip() or result.returncode}).\n"
            "HINT: run the script from the repository of its code (after a first commit), or pass create_git_tag=False."
        )
    return result.stdout.strip()


def create_annotated_tag(name: str, message: str, cwd: str | os.PathLike[str] | None = None) -> bool:
    """Create the annotated tag ``name`` on ``HEAD``; False (and nothing changed) when it already exists.

    A continued experiment (the same version again) keeps the tag of its first run.
    """
    where = os.fspath(cwd if cwd is not None else os.getcwd())
    if _git(["rev-parse", "--verify", "--quiet", f"refs/tags/{name}"], where).returncode == 0:
        return False
    result = _git(["tag", "-a", name, "-m", message], where)
    if result.returncode != 0:
        raise MisconfigurationException(
            f"git could not create the tag {name!r} in {where}: {result.stderr.strip()}\n"
            "HINT: check that the repository is writable, or pass create_git_tag=False."
        )
    return True
