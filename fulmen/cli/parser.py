"""``LightningArgumentParser``: jsonargparse's parser that knows the Lightning classes.

Trainer / LightningModule / LightningDataModule / Callback arguments come from their ``__init__``
signatures; optimizer and LR-scheduler groups are registered separately (``add_optimizer_args``,
``add_lr_scheduler_args``) so that ``LightningCLI`` can build ``configure_optimizers`` from them.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable
from typing import Any, Union

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from fulmen.cli._extra import ArgumentParser, Namespace, class_from_function
from fulmen.core.callback import Callback
from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule
from fulmen.errors import MisconfigurationException
from fulmen.runtime.trainer import Trainer


class ReduceLROnPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """torch's ReduceLROnPlateau plus the metric it follows (``monitor``), which a CLI flag sets."""

    def __init__(self, optimizer: Optimizer, monitor: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(optimizer, *args, **kwargs)
        self.monitor = monitor


# the CLI takes this ReduceLROnPlateau (it has `monitor`), not torch's
LRSchedulerTypeTuple = (LRScheduler, ReduceLROnPlateau)
LRSchedulerTypeUnion = Union[LRScheduler, ReduceLROnPlateau]  # noqa: UP007 (a runtime value, as in Lightning)
LRSchedulerType = Union[type[LRScheduler], type[ReduceLROnPlateau]]  # noqa: UP007
ArgsType = Union[list[str], dict[str, Any], Namespace, None]  # noqa: UP007
OptimizerCallable = Callable[[Iterable], Optimizer]
LRSchedulerCallable = Callable[[Optimizer], Union[LRScheduler, ReduceLROnPlateau]]  # noqa: UP007

_LIGHTNING_CLASSES = (Trainer, LightningModule, LightningDataModule, Callback)
ClassRegistry = dict[str, tuple[Union[type, tuple[type, ...]], str]]  # noqa: UP007


class LightningArgumentParser(ArgumentParser):
    """jsonargparse's ``ArgumentParser`` with Lightning's defaults (``PL_`` env prefix, env off)."""

    def __init__(
        self,
        *args: Any,
        description: str = "Lightning Trainer command line tool",
        env_prefix: str = "PL",
        default_env: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, description=description, env_prefix=env_prefix, default_env=default_env, **kwargs)
        load_lightning_classes()
        self.callback_keys: list[str] = []
        # which optimizer / scheduler groups were added, and where each is linked ("AUTOMATIC" or a key)
        self._optimizers: ClassRegistry = {}
        self._lr_schedulers: ClassRegistry = {}

    def add_lightning_class_args(
        self,
        lightning_class: Any,
        nested_key: str,
        subclass_mode: bool = False,
        required: bool = True,
    ) -> list[str]:
        """Add the ``__init__`` arguments of a Trainer / module / datamodule / callback class under ``nested_key``.

        A function returning one of them counts as its class. ``subclass_mode`` takes any subclass,
        chosen on the command line (``--model=MyModel --model.init_args.x=1``). Returns the added keys.
        """
        if callable(lightning_class) and not isinstance(lightning_class, type):
            lightning_class = class_from_function(lightning_class)
        if not (isinstance(lightning_class, type) and issubclass(lightning_class, _LIGHTNING_CLASSES)):
            raise MisconfigurationException(
                f"Cannot add arguments from: {lightning_class}. You should provide either a callable or a subclass of: "
                "Trainer, LightningModule, LightningDataModule, or Callback."
            )
        if issubclass(lightning_class, Callback):
            self.callback_keys.append(nested_key)
        if subclass_mode:
            return self.add_subclass_arguments(lightning_class, nested_key, fail_untyped=False, required=required)
        return self.add_class_arguments(
            lightning_class,
            nested_key,
            fail_untyped=False,
            instantiate=not issubclass(lightning_class, Trainer),
            sub_configs=True,
        )

    def add_optimizer_args(
        self,
        optimizer_class: type[Optimizer] | tuple[type[Optimizer], ...] = (Optimizer,),
        nested_key: str = "optimizer",
        link_to: str = "AUTOMATIC",
    ) -> None:
        """Add an optimizer group (``--optimizer=Adam --optimizer.lr=0.1``); a tuple allows subclasses.

        ``link_to="AUTOMATIC"`` lets LightningCLI write ``configure_optimizers``; any other value is
        a parser key the optimizer's ``class_path``/``init_args`` are linked to (the user builds it).
        """
        classes = optimizer_class if isinstance(optimizer_class, tuple) else (optimizer_class,)
        _require_subclasses(classes, (Optimizer,), "add_optimizer_args", "torch.optim.Optimizer")
        kwargs: dict[str, Any] = {"instantiate": False, "fail_untyped": False, "skip": {"params"}}
        if isinstance(optimizer_class, tuple):
            self.add_subclass_arguments(optimizer_class, nested_key, **kwargs)
        else:
            self.add_class_arguments(optimizer_class, nested_key, sub_configs=True, **kwargs)
        self._optimizers[nested_key] = (optimizer_class, link_to)

    def add_lr_scheduler_args(
        self,
        lr_scheduler_class: LRSchedulerType | tuple[LRSchedulerType, ...] = LRSchedulerTypeTuple,
        nested_key: str = "lr_scheduler",
        link_to: str = "AUTOMATIC",
    ) -> None:
        """Add an LR-scheduler group (``--lr_scheduler=StepLR --lr_scheduler.step_size=2``), as ``add_optimizer_args``."""
        classes = lr_scheduler_class if isinstance(lr_scheduler_class, tuple) else (lr_scheduler_class,)
        _require_subclasses(classes, LRSchedulerTypeTuple, "add_lr_scheduler_args", "LRScheduler or ReduceLROnPlateau")
        kwargs: dict[str, Any] = {"instantiate": False, "fail_untyped": False, "skip": {"optimizer"}}
        if isinstance(lr_scheduler_class, tuple):
            self.add_subclass_arguments(lr_scheduler_class, nested_key, **kwargs)
        else:
            self.add_class_arguments(lr_scheduler_class, nested_key, sub_configs=True, **kwargs)
        self._lr_schedulers[nested_key] = (lr_scheduler_class, link_to)


@functools.cache
def load_lightning_classes() -> None:
    """Import every callback and logger class, so that short names resolve (``--trainer.logger=CSVLogger``).

    jsonargparse finds a class named on the command line among the imported subclasses of the
    annotated type; Lightning imports all of them with the package, fulmen loads them on first
    use, so the CLI loads them here. One whose optional extra is missing is skipped.
    """
    for package_name in ("fulmen.callbacks", "fulmen.loggers"):
        package = importlib.import_module(package_name)
        for name in package.__all__:
            try:
                getattr(package, name)
            except ImportError:
                continue


def _require_subclasses(classes: tuple[Any, ...], bases: tuple[type, ...], method: str, expected: str) -> None:
    bad = [c for c in classes if not (isinstance(c, type) and issubclass(c, bases))]
    if bad:
        raise MisconfigurationException(
            f"{method} got {bad}, which are not subclasses of {expected}.\n"
            f"HINT: pass a class such as torch.optim.Adam (or a tuple of classes to choose from on the command line)."
        )


def class_path_of(class_type: type) -> str:
    """``module.Name``: how a config file names a class."""
    return f"{class_type.__module__}.{class_type.__name__}"


def with_class_path(class_type: type, init_args: Namespace | dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"class_path": ..., "init_args": ...}`` for a group added with one fixed class (no class_path of its own)."""
    if isinstance(init_args, Namespace):
        init_args = init_args.as_dict()
    return {"class_path": class_path_of(class_type), "init_args": init_args or {}}


def instantiate_class(args: Any | tuple[Any, ...], init: dict[str, Any]) -> Any:
    """Build ``init["class_path"](*args, **init["init_args"])``: an optimizer from its parameters,
    a scheduler from its optimizer (Lightning's ``pl.cli.instantiate_class``)."""
    kwargs = init.get("init_args", {})
    if not isinstance(args, tuple):
        args = (args,)
    module_name, class_name = init["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)(*args, **kwargs)
