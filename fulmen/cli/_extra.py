"""The one place that imports jsonargparse, so a missing optional extra is one clear error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fulmen.errors import MissingExtraError

try:
    import docstring_parser  # noqa: F401  (part of jsonargparse[signatures]: help text from docstrings)
    import jsonargparse
except ImportError as error:  # pragma: no cover - exercised by tests with the import blocked
    raise MissingExtraError(
        "jsonargparse[signatures]", "cli", "fulmen.cli (LightningCLI, LightningArgumentParser)"
    ) from error

ActionConfigFile = jsonargparse.ActionConfigFile
ArgumentParser = jsonargparse.ArgumentParser
Namespace = jsonargparse.Namespace
class_from_function = jsonargparse.class_from_function

# jsonargparse 4.49 renamed a few names (the old ones warn); the extra allows >= 4.27, so pick by version
_NEW_NAMES = tuple(int(part) for part in jsonargparse.__version__.split(".")[:2]) >= (4, 49)
KEEP_NONE_WHEN_SAVING = {"skip_unset": False} if _NEW_NAMES else {"skip_none": False}
INSTANTIATE_METHOD = "instantiate" if _NEW_NAMES else "instantiate_classes"


def instantiate(parser: Any, config: Any, instantiators: list[tuple[Callable[..., Any], type, bool]]) -> Any:
    """``parser``'s classes built from ``config``, through ``instantiators`` (instantiator, class, subclasses)
    where given: passed to ``instantiate`` from 4.49 on, registered on the parser before."""
    if _NEW_NAMES:
        return parser.instantiate(config, instantiators=instantiators)
    for instantiator, class_type, subclasses in instantiators:
        parser.add_instantiator(instantiator, class_type, subclasses=subclasses)
    return parser.instantiate_classes(config)
