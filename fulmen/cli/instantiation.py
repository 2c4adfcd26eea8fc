"""``load_from_checkpoint_support``: the module and datamodule remember the config they were built from.

LightningCLI instantiates them inside ``given_hyperparameters_context``, so ``save_hyperparameters()``
stores the parsed config (``_class_path`` too in subclass mode) and ``_instantiator``; a checkpoint
then rebuilds the object through ``instantiate_module`` (jsonargparse again), which also rebuilds
arguments that are classes given by ``class_path``. ``fulmen.core.saving`` allows this instantiator
and no other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from fulmen.cli._extra import INSTANTIATE_METHOD, ArgumentParser
from fulmen.core.hparams import given_hyperparameters_context

if TYPE_CHECKING:
    from fulmen.cli.lightning_cli import LightningCLI

ModuleType = TypeVar("ModuleType")
INSTANTIATOR_PATH = "fulmen.cli.instantiate_module"


class InstantiatorFn:
    """jsonargparse's instantiator for the CLI's ``model`` or ``data`` key."""

    def __init__(self, cli: LightningCLI, key: str) -> None:
        self.cli = cli
        self.key = key

    def __call__(self, class_type: type[ModuleType], *args: Any, applied_instantiation_links: dict, **kwargs: Any) -> ModuleType:
        hparams = self.cli.config_dump().get(self.key, {})
        if "class_path" in hparams:
            # the same hparams in either mode: the arguments at the top, the class under `_class_path`
            hparams = {"_class_path": hparams["class_path"], **hparams.get("init_args", {}), **hparams.get("dict_kwargs", {})}
        for key, value in applied_instantiation_links.items():  # values linked in from other keys
            if not key.startswith(f"{self.key}."):
                continue
            key = key[len(f"{self.key}.") :]
            _set_nested(hparams, key.removeprefix("init_args."), value)
        with given_hyperparameters_context(hparams=hparams, instantiator=INSTANTIATOR_PATH):
            return class_type(*args, **kwargs)


def _set_nested(data: dict, dotted_key: str, value: Any) -> None:
    *parents, leaf = dotted_key.split(".")
    for part in parents:
        data = data[part]
    data[leaf] = value


def instantiate_module(class_type: type[ModuleType], config: dict[str, Any]) -> ModuleType:
    """Build ``class_type`` from the hparams of a CLI-made checkpoint (``load_from_checkpoint``)."""
    parser = ArgumentParser(exit_on_error=False)
    if "_class_path" in config:
        parser.add_subclass_arguments(class_type, "module", fail_untyped=False)
        config = {"class_path": config["_class_path"], "dict_kwargs": {k: v for k, v in config.items() if k != "_class_path"}}
    else:
        parser.add_class_arguments(class_type, "module", fail_untyped=False)
    cfg = parser.parse_object({"module": config})
    return getattr(parser, INSTANTIATE_METHOD)(cfg).module
