"""``fulmen.utilities.git``: the code's commit and the experiment's tag, against a real repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fulmen.errors import MisconfigurationException
from fulmen.utilities.git import code_commit, create_annotated_tag

IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    path = tmp_path / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    return path


def test_code_commit_is_head_of_the_repository(repo: Path) -> None:
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "one"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
    assert code_commit(repo) == head.stdout.strip()


def test_code_commit_refuses_a_repository_without_commits_and_a_plain_folder(repo: Path) -> None:
    with pytest.raises(MisconfigurationException, match="with a commit"):
        code_commit(repo)
    plain = repo.parent / "plain"
    plain.mkdir()
    with pytest.raises(MisconfigurationException, match=r"not inside a git repository(.|\n)*HINT"):
        code_commit(plain)


def test_annotated_tag_is_created_once(repo: Path) -> None:
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "one"], cwd=repo, check=True)
    assert create_annotated_tag("tt_exp_v0", "Test tube exp: exp - no description", repo) is True
    assert create_annotated_tag("tt_exp_v0", "again", repo) is False
    message = subprocess.run(["git", "tag", "-n1", "tt_exp_v0"], cwd=repo, capture_output=True, text=True, check=True)
    assert "Test tube exp: exp - no description" in message.stdout
