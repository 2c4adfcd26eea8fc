"""``LightningCLI``: a training script's whole command line from the classes it trains.

``LightningCLI(MyModel, MyData)`` builds a jsonargparse parser from the ``__init__`` signatures of
the Trainer, the model and the datamodule (``--trainer.max_epochs``, ``--model.lr``, ``--config
x.yaml``, ``--print_config``), parses, seeds, instantiates, and runs the chosen subcommand
(``fit | validate | test | predict``). The order of the steps and every public hook and
attribute follow Lightning 2.6 (``before_instantiate_classes``, ``before_fit``, ``cli.model``,
``cli.config``, ...), so subclasses written for Lightning work unchanged.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.optim import Optimizer

import fulmen
from fulmen.cli._extra import KEEP_NONE_WHEN_SAVING, ActionConfigFile, Namespace, class_from_function, instantiate
from fulmen.cli.instantiation import InstantiatorFn
from fulmen.cli.optimizers import install_configure_optimizers, link_optimizers_and_lr_schedulers
from fulmen.cli.parser import ArgsType, LightningArgumentParser, LRSchedulerTypeTuple, LRSchedulerTypeUnion, ReduceLROnPlateau
from fulmen.cli.save_config import SaveConfigCallback
from fulmen.core.callback import Callback
from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule
from fulmen.runtime.trainer import Trainer
from fulmen.utilities.rank_zero import rank_zero_warn
from fulmen.utilities.seed import seed_everything


class LightningCLI:
    """A configurable command line for a LightningModule (and LightningDataModule), as in Lightning.

    Args mirror Lightning's: ``model_class`` / ``datamodule_class`` (None: any subclass, chosen with
    ``--model=Class``), ``save_config_callback`` (+ ``save_config_kwargs``), ``trainer_class``,
    ``trainer_defaults`` (``callbacks`` there are always added, not configurable),
    ``seed_everything_default``, ``parser_kwargs`` (per subcommand when keyed by its name),
    ``parser_class``, ``subclass_mode_model`` / ``subclass_mode_data``, ``args`` (a list, like
    argv, or a dict / Namespace of config), ``run`` (False: instantiate only),
    ``auto_configure_optimizers``, ``load_from_checkpoint_support`` (the model's hparams are its
    parsed config, so ``load_from_checkpoint`` rebuilds it as the CLI did).
    """

    def __init__(
        self,
        model_class: type[LightningModule] | Callable[..., LightningModule] | None = None,
        datamodule_class: type[LightningDataModule] | Callable[..., LightningDataModule] | None = None,
        save_config_callback: type[SaveConfigCallback] | None = SaveConfigCallback,
        save_config_kwargs: dict[str, Any] | None = None,
        trainer_class: type[Trainer] | Callable[..., Trainer] = Trainer,
        trainer_defaults: dict[str, Any] | None = None,
        seed_everything_default: bool | int = True,
        parser_kwargs: dict[str, Any] | dict[str, dict[str, Any]] | None = None,
        parser_class: type[LightningArgumentParser] = LightningArgumentParser,
        subclass_mode_model: bool = False,
        subclass_mode_data: bool = False,
        args: ArgsType = None,
        run: bool = True,
        auto_configure_optimizers: bool = True,
        load_from_checkpoint_support: bool = True,
    ) -> None:
        self.save_config_callback = save_config_callback
        self.save_config_kwargs = save_config_kwargs or {}
        self.trainer_class = trainer_class
        self.trainer_defaults = trainer_defaults or {}
        self.seed_everything_default = seed_everything_default
        self.parser_kwargs = parser_kwargs or {}
        self.parser_class = parser_class
        self.auto_configure_optimizers = auto_configure_optimizers
        self.model_class = model_class
        self._model_class = model_class or LightningModule
        self.subclass_mode_model = (model_class is None) or subclass_mode_model
        self.datamodule_class = datamodule_class
        self._datamodule_class = datamodule_class or LightningDataModule
        self.subclass_mode_data = (datamodule_class is None) or subclass_mode_data
        self.load_from_checkpoint_support = load_from_checkpoint_support
        self._instantiators: list[tuple[Callable[..., Any], type, bool]] = []

        main_kwargs, subparser_kwargs = self._setup_parser_kwargs(self.parser_kwargs)
        self.setup_parser(run, main_kwargs, subparser_kwargs)
        self.parse_arguments(self.parser, args)
        self._parse_ckpt_path()
        self.subcommand = self.config["subcommand"] if run else None
        self._set_seed()
        if load_from_checkpoint_support:
            self._add_instantiators()
        self.before_instantiate_classes()
        self.instantiate_classes()
        self.after_instantiate_classes()
        if self.subcommand is not None:
            self._run_subcommand(self.subcommand)

    # ---- parser --------------------------------------------------------------------------------
    def _setup_parser_kwargs(self, parser_kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        names = self.subcommands().keys()
        main_kwargs = {k: v for k, v in parser_kwargs.items() if k not in names}
        subparser_kwargs = {k: v for k, v in parser_kwargs.items() if k in names}
        return main_kwargs, subparser_kwargs

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """The parser of the CLI (or of one subcommand), with ``-c/--config``."""
        kwargs.setdefault("dump_header", [f"fulmen=={fulmen.__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument(
            "-c", "--config", action=ActionConfigFile, help="Path to a configuration file in json or yaml format."
        )
        return parser

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]) -> None:
        """Build ``self.parser``: with one sub-parser per subcommand when ``run``, else flat."""
        self.parser = self.init_parser(**main_kwargs)
        if add_subcommands:
            self._subcommand_method_arguments: dict[str, list[str]] = {}
            self._add_subcommands(self.parser, **subparser_kwargs)
        else:
            self._add_arguments(self.parser)

    def add_default_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """``--seed_everything``."""
        parser.add_argument(
            "--seed_everything",
            type=bool | int,
            default=self.seed_everything_default,
            help=(
                "Set to an int to run seed_everything with this value before classes instantiation."
                "Set to True to use a random seed."
            ),
        )

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """``--trainer.*``, ``--model.*`` and ``--data.*`` (data optional without a datamodule class)."""
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({"trainer." + k: v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=self.subclass_mode_model)
        parser.add_lightning_class_args(
            self._datamodule_class,
            "data",
            subclass_mode=self.subclass_mode_data,
            required=self.datamodule_class is not None,
        )

    def _add_arguments(self, parser: LightningArgumentParser) -> None:
        self.add_default_arguments_to_parser(parser)
        self.add_core_arguments_to_parser(parser)
        self.add_arguments_to_parser(parser)
        if self.auto_configure_optimizers:
            if not parser._optimizers:  # the user's add_arguments_to_parser may have added them
                parser.add_optimizer_args((Optimizer,))
            if not parser._lr_schedulers:
                parser.add_lr_scheduler_args(LRSchedulerTypeTuple)
        self.link_optimizers_and_lr_schedulers(parser)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Override to add arguments (``parser.add_argument``) or links (``parser.link_arguments``)."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """The subcommands (Trainer methods) and their arguments that the CLI fills itself."""
        return {
            "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
            "validate": {"model", "dataloaders", "datamodule"},
            "test": {"model", "dataloaders", "datamodule"},
            "predict": {"model", "dataloaders", "datamodule"},
        }

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        self._subcommand_parsers: dict[str, LightningArgumentParser] = {}
        subcommands = parser.add_subcommands()
        trainer_class = self.trainer_class if isinstance(self.trainer_class, type) else class_from_function(self.trainer_class)
        for subcommand in self.subcommands():
            description = _first_line(getattr(trainer_class, subcommand))
            subparser_kwargs = kwargs.get(subcommand, {})
            subparser_kwargs.setdefault("description", description)
            subcommand_parser = self._prepare_subcommand_parser(trainer_class, subcommand, **subparser_kwargs)
            self._subcommand_parsers[subcommand] = subcommand_parser
            subcommands.add_subcommand(subcommand, subcommand_parser, help=description)

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = self.init_parser(**kwargs)
        self._add_arguments(parser)
        skip: set[str | int] = set(self.subcommands()[subcommand])
        self._subcommand_method_arguments[subcommand] = parser.add_method_arguments(klass, subcommand, skip=skip)
        return parser

    @staticmethod
    def link_optimizers_and_lr_schedulers(parser: LightningArgumentParser) -> None:
        """Link the optimizer / scheduler groups that name a ``link_to`` key."""
        link_optimizers_and_lr_schedulers(parser)

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse ``args`` (``sys.argv`` when None) into ``self.config``."""
        if args is not None and len(sys.argv) > 1:
            rank_zero_warn(
                "LightningCLI's args parameter is intended to run from within Python like if it were from the command "
                "line. To prevent mistakes it is not recommended to provide both args and command line arguments, got: "
                f"sys.argv[1:]={sys.argv[1:]}, args={args}."
            )
        if isinstance(args, dict | Namespace):
            self.config = parser.parse_object(args)
        else:
            self.config = parser.parse_args(args)

    def _parse_ckpt_path(self) -> None:
        """With ``--ckpt_path`` (a file), the model's config starts from the checkpoint's hyperparameters."""
        if not self.config.get("subcommand"):
            return
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if not (ckpt_path and Path(ckpt_path).is_file()):
            return
        hparams = dict(torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters", {}))
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({self.config.subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def config_dump(self) -> dict[str, Any]:
        """The parsed config as plain data (of the running subcommand), computed once."""
        if not hasattr(self, "_config_dump"):
            dump = yaml.safe_load(self.parser.dump(self.config, skip_link_targets=False, format="yaml", **KEEP_NONE_WHEN_SAVING))
            self._config_dump = dump[self.config.subcommand] if "subcommand" in self.config else dump
        return self._config_dump

    def _add_instantiators(self) -> None:
        """Build model and datamodule inside the hparams context (``load_from_checkpoint_support``)."""
        self._instantiators = [
            (InstantiatorFn(cli=self, key="model"), _module_type(self._model_class), self.subclass_mode_model),
            (InstantiatorFn(cli=self, key="data"), _module_type(self._datamodule_class), self.subclass_mode_data),
        ]

    # ---- instantiate and run -------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        """Override to run code before the classes are instantiated."""

    def instantiate_classes(self) -> None:
        """Instantiate datamodule, model and Trainer from the parsed config."""
        self.config_init = instantiate(self.parser, self.config, self._instantiators)
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "model")
        self._add_configure_optimizers_method_to_model(self.subcommand)
        self.trainer = self.instantiate_trainer()

    def after_instantiate_classes(self) -> None:
        """Override to run code after the classes are instantiated."""

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer from its config, ``kwargs`` and the extra callbacks (config callbacks, defaults, SaveConfig)."""
        extra_callbacks = [self._get(self.config_init, c) for c in self._parser(self.subcommand).callback_keys]
        trainer_config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        return self._instantiate_trainer(trainer_config, extra_callbacks)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        if "callbacks" not in config:
            rank_zero_warn(
                f"The `{self.trainer_class.__qualname__}` class does not expose the `callbacks` argument so they will"
                " not be included."
            )
            return self.trainer_class(**config)
        value = config["callbacks"]
        config["callbacks"] = [] if value is None else (list(value) if isinstance(value, list) else [value])
        config["callbacks"].extend(callbacks)
        if "callbacks" in self.trainer_defaults:
            default = self.trainer_defaults["callbacks"]
            config["callbacks"] += default if isinstance(default, list) else [default]
        if self.save_config_callback and not config.get("fast_dev_run", False):
            config["callbacks"].append(
                self.save_config_callback(
                    self._parser(self.subcommand),
                    self.config.get(str(self.subcommand), self.config),
                    **self.save_config_kwargs,
                )
            )
        return self.trainer_class(**config)

    def _parser(self, subcommand: str | None) -> LightningArgumentParser:
        return self.parser if subcommand is None else self._subcommand_parsers[subcommand]

    @staticmethod
    def configure_optimizers(
        lightning_module: LightningModule, optimizer: Optimizer, lr_scheduler: LRSchedulerTypeUnion | None = None
    ) -> Any:
        """Override to change what the automatic ``configure_optimizers`` returns."""
        if lr_scheduler is None:
            return optimizer
        if isinstance(lr_scheduler, ReduceLROnPlateau):
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "monitor": lr_scheduler.monitor}}
        return [optimizer], [lr_scheduler]

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        """Give the model a ``configure_optimizers`` from ``--optimizer`` / ``--lr_scheduler`` when chosen."""
        if not self.auto_configure_optimizers:
            return
        install_configure_optimizers(
            type(self).__name__,
            self.configure_optimizers,
            self.model,
            self._parser(subcommand),
            lambda key: self._get(self.config_init, key),
        )

    def _get(self, config: Namespace, key: str, default: Any | None = None) -> Any:
        """A config value, inside the running subcommand's part when there is one."""
        return config.get(str(self.subcommand), config).get(key, default)

    def _run_subcommand(self, subcommand: str) -> None:
        """``before_<subcommand>``, then ``self.<subcommand>`` or the Trainer's, then ``after_<subcommand>``."""
        before_fn = getattr(self, f"before_{subcommand}", None)
        if callable(before_fn):
            before_fn()
        fn = getattr(self, subcommand, getattr(self.trainer, subcommand))
        fn(**self._prepare_subcommand_kwargs(subcommand))
        after_fn = getattr(self, f"after_{subcommand}", None)
        if callable(after_fn):
            after_fn()

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        """The subcommand's own options (``--ckpt_path`` ...) plus the model and datamodule."""
        allowed = self._subcommand_method_arguments[subcommand]
        fn_kwargs = {k: v for k, v in self.config_init[subcommand].items() if k in allowed}
        fn_kwargs["model"] = self.model
        if self.datamodule is not None:
            fn_kwargs["datamodule"] = self.datamodule
        return fn_kwargs

    def _set_seed(self) -> None:
        """``seed_everything`` as configured; the seed used is written back into the config (so it is saved)."""
        config_seed = self._get(self.config, "seed_everything")
        if config_seed is False:
            return
        config_seed = seed_everything(workers=True) if config_seed is True else seed_everything(config_seed, workers=True)
        if self.subcommand:
            self.config[self.subcommand]["seed_everything"] = config_seed
        else:
            self.config["seed_everything"] = config_seed


def _module_type(value: Any) -> type:
    """The class a model/datamodule argument stands for (a function: its return annotation)."""
    if callable(value) and not isinstance(value, type):
        return inspect.signature(value).return_annotation
    return value


def _first_line(fn: Any) -> str | None:
    """The first line of a docstring: the subcommand's help."""
    doc = getattr(fn, "__doc__", None)
    return doc.strip().splitlines()[0] if doc and doc.strip() else None
