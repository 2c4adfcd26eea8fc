"""``SaveConfigCallback``: the run's parsed CLI config, written once as ``config.yaml`` in the log dir.

The file is what makes a CLI run reproducible (``--config <log_dir>/config.yaml``), so an existing
one is never replaced silently: rank 0 checks, every rank learns the answer (a broadcast), and all
of them raise together instead of rank 0 failing while the others wait in a collective.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fulmen.cli._extra import KEEP_NONE_WHEN_SAVING
from fulmen.core.callback import Callback
from fulmen.core.hooks import is_overridden

if TYPE_CHECKING:
    from fulmen.cli._extra import Namespace
    from fulmen.cli.parser import LightningArgumentParser
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer


class SaveConfigCallback(Callback):
    """Save the LightningCLI config to ``trainer.log_dir/config_filename`` at the first ``setup``.

    Raises:
        RuntimeError: the file exists already and ``overwrite`` is False (Lightning's error).
    """

    def __init__(
        self,
        parser: LightningArgumentParser,
        config: Namespace,
        config_filename: str = "config.yaml",
        overwrite: bool = False,
        multifile: bool = False,
        save_to_log_dir: bool = True,
    ) -> None:
        self.parser = parser
        self.config = config
        self.config_filename = config_filename
        self.overwrite = overwrite
        self.multifile = multifile
        self.save_to_log_dir = save_to_log_dir
        self.already_saved = False
        if not save_to_log_dir and not is_overridden(self, "save_config", SaveConfigCallback):
            raise ValueError(
                "`save_to_log_dir=False` only makes sense when subclassing SaveConfigCallback to implement "
                "`save_config` and it is desired to disable the standard behavior of saving to log_dir."
            )

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Write the file on rank 0 (once per CLI run, also when fit is followed by test)."""
        if self.already_saved:
            return
        if self.save_to_log_dir:
            self._save_to_log_dir(trainer)
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        # every rank skips the next setup() the same way
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def _save_to_log_dir(self, trainer: Trainer) -> None:
        log_dir = trainer.strategy.broadcast(trainer.log_dir)
        if log_dir is None:
            raise RuntimeError(
                f"{type(self).__name__} cannot save {self.config_filename}: trainer.log_dir is None "
                "(the first logger has no directory).\nHINT: give the logger a save_dir, or set "
                "`LightningCLI(save_config_callback=None)`."
            )
        config_path = os.path.join(log_dir, self.config_filename)
        if not self.overwrite:
            exists = os.path.isfile(config_path) if trainer.is_global_zero else False
            if trainer.strategy.broadcast(exists):
                raise RuntimeError(
                    f"{self.__class__.__name__} expected {config_path} to NOT exist. Aborting to avoid overwriting"
                    " results of a previous run. You can delete the previous config file,"
                    " set `LightningCLI(save_config_callback=None)` to disable config saving,"
                    ' or set `LightningCLI(save_config_kwargs={"overwrite": True})` to overwrite the config file.'
                )
        if trainer.is_global_zero:
            # the logger has not written anything yet, so its folder may not exist
            os.makedirs(log_dir, exist_ok=True)
            # None values are written too: the file states every option
            self.parser.save(
                self.config, config_path, overwrite=self.overwrite, multifile=self.multifile, **KEEP_NONE_WHEN_SAVING
            )

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Override to store the config somewhere else too (a logger's hyperparameters, ...).

        Runs on rank 0 only, so it must not call collectives (the other ranks would not join).
        """
