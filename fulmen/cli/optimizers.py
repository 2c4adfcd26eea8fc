"""LightningCLI's automatic ``configure_optimizers``: ``--optimizer=Adam --lr_scheduler=StepLR`` without code.

When exactly one optimizer group (and at most one scheduler group) is registered as
``"AUTOMATIC"`` and the user chose an optimizer, the model's ``configure_optimizers`` is replaced
by one that returns the configured optimizer and scheduler, as Lightning does.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, update_wrapper
from types import MethodType
from typing import Any

from torch.optim import Optimizer

from fulmen.cli.parser import ClassRegistry, LightningArgumentParser, LRSchedulerTypeTuple, instantiate_class, with_class_path
from fulmen.core.hooks import is_overridden
from fulmen.core.module import LightningModule
from fulmen.errors import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn


def automatic_keys(registry: ClassRegistry, base: type | tuple[type, ...]) -> list[str]:
    """The registered groups whose classes derive from ``base`` and that are linked ``"AUTOMATIC"``."""
    keys = []
    for key, (classes, link_to) in registry.items():
        classes = classes if isinstance(classes, tuple) else (classes,)
        if link_to == "AUTOMATIC" and any(issubclass(c, base) for c in classes):
            keys.append(key)
    return keys


def link_optimizers_and_lr_schedulers(parser: LightningArgumentParser) -> None:
    """Link every optimizer / scheduler group that names a ``link_to`` key to that key."""
    for key, (class_type, link_to) in {**parser._optimizers, **parser._lr_schedulers}.items():
        if link_to == "AUTOMATIC":
            continue
        if isinstance(class_type, tuple):
            parser.link_arguments(key, link_to)
        else:
            parser.link_arguments(key, link_to, compute_fn=partial(with_class_path, class_type))


def install_configure_optimizers(
    cli_name: str,
    configure: Callable[..., Any],
    model: LightningModule,
    parser: LightningArgumentParser,
    config_init: Callable[[str], Any],
) -> None:
    """Replace ``model.configure_optimizers`` with ``configure(model, optimizer, lr_scheduler)`` built
    from the automatic groups; nothing when the user chose no optimizer.

    ``config_init(key)`` reads the instantiated config of the running subcommand.
    """
    optimizers = automatic_keys(parser._optimizers, Optimizer)
    lr_schedulers = automatic_keys(parser._lr_schedulers, LRSchedulerTypeTuple)
    if not optimizers:
        return
    if len(optimizers) > 1 or len(lr_schedulers) > 1:
        raise MisconfigurationException(
            f"`{cli_name}.add_configure_optimizers_method_to_model` expects at most one optimizer "
            f"and one lr_scheduler to be 'AUTOMATIC', but found {optimizers + lr_schedulers}. In this case the "
            "user is expected to link the argument groups and implement `configure_optimizers`, see "
            "https://lightning.ai/docs/pytorch/stable/common/lightning_cli.html"
            "#optimizers-and-learning-rate-schedulers"
        )
    optimizer_init = _init_of(parser._optimizers[optimizers[0]][0], config_init(optimizers[0]))
    if not optimizer_init:
        return  # the groups are there by default; the user did not pick an optimizer
    lr_scheduler_init = None
    if lr_schedulers:
        lr_scheduler_init = _init_of(parser._lr_schedulers[lr_schedulers[0]][0], config_init(lr_schedulers[0]))
    if is_overridden(model, "configure_optimizers", LightningModule):
        rank_zero_warn(
            f"`{model.__class__.__name__}.configure_optimizers` will be overridden by `{cli_name}.configure_optimizers`."
        )
    optimizer = instantiate_class(model.parameters(), optimizer_init)
    lr_scheduler = instantiate_class(optimizer, lr_scheduler_init) if lr_scheduler_init else None
    fn = partial(configure, optimizer=optimizer, lr_scheduler=lr_scheduler)
    update_wrapper(fn, configure)
    model.configure_optimizers = MethodType(fn, model)


def _init_of(class_type: type | tuple[type, ...], value: Any) -> Any:
    """A group added with one class has no class_path in the config: add it (as Lightning does)."""
    return value if isinstance(class_type, tuple) else with_class_path(class_type, value)
