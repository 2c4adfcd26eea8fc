"""Where ModelCheckpoint writes: Lightning's name templates, default folder, atomic links.

Pure functions (apart from ``link_atomic``), so the naming rules can be tested with plain data.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer


def interpolate_filename(
    filename: str | None,
    metrics: dict[str, Any],
    prefix: str = "",
    auto_insert_metric_name: bool = True,
    join_char: str = "-",
    equals_char: str = "=",
) -> str:
    """Fill a template like ``"{epoch}-{val_loss:.2f}"`` from ``metrics`` (Lightning's rules).

    With ``auto_insert_metric_name`` each field becomes ``name=value``; a field missing from
    ``metrics`` is filled with 0 (and added to ``metrics``, as Lightning does); names may
    contain dots and slashes. No template means ``"{epoch}-{step}"``.
    """
    if not filename:
        filename = "{epoch}" + join_char + "{step}"
    # longest names first, so that "{epoch" does not eat part of "{epoch_test"
    groups = sorted(re.findall(r"(\{.*?)[:\}]", filename), key=len, reverse=True)
    for group in groups:
        name = group[1:]
        if auto_insert_metric_name:
            filename = filename.replace(group, name + equals_char + "{" + name)
        # "{0[name]" instead of "{name" lets metric names contain dots
        filename = filename.replace(group, f"{{0[{name}]")
        if name not in metrics:
            metrics[name] = torch.tensor(0)
    filename = filename.format(metrics)
    if prefix:
        filename = join_char.join([prefix, filename])
    return filename


def free_filepath(
    name_with_version: Callable[[int | None], str], taken: Callable[[str], bool], replaced: str | None, start: int
) -> str:
    """The unversioned name, or the first ``-v<start>``, ``-v<start+1>``... that is not ``taken``.

    ``replaced`` (the file the save supersedes) counts as free: the new file reuses its name.
    """
    filepath = name_with_version(None)
    version = start
    while taken(filepath) and filepath != replaced:
        filepath = name_with_version(version)
        version += 1
    return filepath


def default_checkpoint_dir(trainer: Trainer) -> str:
    """``<save_dir>/<name>/version_N/checkpoints`` of the first logger, else ``<default_root_dir>/checkpoints``."""
    loggers = getattr(trainer, "loggers", None) or []
    if loggers:
        first = loggers[0]
        save_dir = first.save_dir if first.save_dir is not None else trainer.default_root_dir
        version = first.version if isinstance(first.version, str) else f"version_{first.version}"
        return os.path.join(save_dir, str(first.name), version, "checkpoints")
    return os.path.join(trainer.default_root_dir, "checkpoints")


def link_atomic(target: str, linkpath: str) -> None:
    """Make ``linkpath`` a symlink to ``target``, swapping any previous one in a single rename."""
    temp = f"{linkpath}.fulmen-tmp-{os.getpid()}"
    if os.path.lexists(temp):
        os.remove(temp)
    same_dir = os.path.dirname(os.path.abspath(target)) == os.path.dirname(os.path.abspath(linkpath))
    # a relative link keeps working when the whole folder is moved
    os.symlink(os.path.basename(target) if same_dir else target, temp)
    os.replace(temp, linkpath)


def write_best_k_yaml(best_k_models: dict[str, Any], filepath: str | os.PathLike[str]) -> None:
    """``{path: score}`` as YAML (ModelCheckpoint.to_yaml)."""
    import yaml

    with open(filepath, "w", encoding="utf-8") as handle:
        yaml.dump({path: float(score) for path, score in best_k_models.items()}, handle)
