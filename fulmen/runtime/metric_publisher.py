"""Where ``self.log`` values go: the stage's ``ResultCollection``, then the Trainer's three
metric dicts (``callback_metrics``, ``logged_metrics``, ``progress_bar_metrics``) and the loggers.

The loops decide *when* (after a batch, at an epoch end); this object decides *where*, with
Lightning's rules: the logger step is the count of batches that stepped, eval step values carry
their own counter and no "epoch" column, a logged "step" value is the step loggers see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from fulmen.errors import MisconfigurationException
from fulmen.runtime.results import EVERY_LOADER, EveryLoader, ResultCollection, to_float_dict
from fulmen.runtime.stages import RunningStage
from fulmen.runtime.training_progress import TrainingProgress
from fulmen.sweep.trial import current_trial


class MetricPublisher:
    """The ResultCollections of one Trainer, its published metric dicts and its loggers."""

    def __init__(self, reduce: Callable[[Tensor, str], Tensor], loggers: list[Any], progress: TrainingProgress) -> None:
        self.loggers = loggers
        self.progress = progress  # read only: the epoch and logger step of what is published
        self.train = ResultCollection("train", reduce)
        self.val = ResultCollection("validate", reduce)
        self.test = ResultCollection("test", reduce)
        self.results: ResultCollection | None = None  # where self.log writes now (None: outside a loop)
        self.callback_metrics: dict[str, Tensor] = {}
        self.logged_metrics: dict[str, Any] = {}
        self.progress_bar_raw: dict[str, Any] = {}
        self.eval_log_step = 0  # eval step rows count from 0 per validate/test call (Lightning)

    def for_stage(self, stage: RunningStage) -> ResultCollection:
        """The collection ``stage`` logs into (the sanity check shares validation's)."""
        if stage is RunningStage.TRAINING:
            return self.train
        return self.test if stage is RunningStage.TESTING else self.val

    def activate(self, results: ResultCollection | None) -> None:
        """Send ``self.log`` calls to ``results`` from now on."""
        self.results = results

    def clear(self) -> None:
        """Forget the published values: each run (and the sanity check) reports its own (Lightning)."""
        self.callback_metrics.clear()
        self.logged_metrics.clear()
        self.progress_bar_raw.clear()

    # ---- publication ----------------------------------------------------------------
    def publish_step(self, should_log: bool, accumulating: bool = False, batch_done: bool = True,
                     force_log: bool = False) -> None:  # fmt: skip
        """The training batch's step values into the dicts; to the loggers when due."""
        results = self.train
        if not results.logged_this_batch:
            return
        callback, log, pbar = results.step_metrics()
        self.callback_metrics.update(callback)
        self.progress_bar_raw.update(pbar)
        if batch_done:  # after the batch-end hooks, whether or not the loggers are called (Lightning)
            self.logged_metrics.update(log)
        if log and not accumulating and (should_log or force_log or self.progress.should_stop):
            self.log_to_loggers(log, self.progress.batches_that_stepped)

    def publish_eval_step(self, results: ResultCollection, sanity: bool = False) -> None:
        """An eval batch's step values: progress bar and logged_metrics, and the loggers at the eval
        step counter unless this is the sanity check (shown while it runs, never logged: Lightning)."""
        _, log, pbar = results.step_metrics()
        self.progress_bar_raw.update(pbar)
        if sanity:
            self.logged_metrics.update(log)
        elif log:
            self.log_to_loggers(log, self.eval_log_step, add_epoch=False)
            self.eval_log_step += 1

    def publish_epoch(self, results: ResultCollection, log: bool, step: int | None = None,
                      loader: int | None | EveryLoader = EVERY_LOADER) -> dict[str, Tensor]:  # fmt: skip
        """Epoch values into the dicts (and the loggers when ``log``); returns what validate/test
        return to the caller: the epoch values meant for loggers (Lightning). ``loader``: only the
        values logged while that eval loader ran (see ``ResultCollection.epoch_metrics``)."""
        callback, logged, pbar = results.epoch_metrics(loader)
        self.callback_metrics.update(callback)
        self.progress_bar_raw.update(pbar)
        self.logged_metrics.update(logged)  # readable before the loggers get them (Lightning's property)
        if log and logged:
            self.log_to_loggers(logged, self.progress.batches_that_stepped if step is None else step)
        return logged

    def log_to_loggers(self, metrics: dict[str, Tensor], step: int, add_epoch: bool = True) -> None:
        """Record ``metrics`` in logged_metrics (even without loggers, like Lightning 2.6) and send them on."""
        self.logged_metrics.update(metrics)
        if not self.loggers:
            return
        scalars = to_float_dict(metrics)
        if "step" in scalars:  # a logged "step" value is the step loggers see (Lightning)
            step = int(scalars.pop("step"))
        elif add_epoch:
            scalars.setdefault("epoch", self.progress.current_epoch)
        for logger in self.loggers:
            logger.log_metrics(scalars, step=step)
            logger.save()

    def log_hyperparams(self, module: Any, datamodule: Any) -> None:
        """Send saved hyperparameters (module and datamodule, merged) to every logger (Lightning's rules)."""
        if not self.loggers:
            return
        from_module = getattr(module, "_log_hyperparams", False)
        from_dm = datamodule is not None and getattr(datamodule, "_log_hyperparams", False)
        params: dict[str, Any] | None = None
        if from_module and from_dm:
            params = dict(module.hparams_initial)
            for key, value in datamodule.hparams_initial.items():
                if key in params and params[key] != value:
                    raise MisconfigurationException(
                        f"Hyperparameter {key!r} is {params[key]!r} in the module but {value!r} in the datamodule; "
                        "the logger cannot record both.\nHINT: rename one, or save_hyperparameters(logger=False)."
                    )
                params[key] = value
        elif from_module:
            params = dict(module.hparams_initial)
        elif from_dm:
            params = dict(datamodule.hparams_initial)
        trial = current_trial()  # a sweep's trial: its values reach TensorBoard's HParams tab too
        if trial:
            params = {**trial, **(params or {})}
        for logger in self.loggers:
            if params is not None:
                logger.log_hyperparams(params)
            log_graph = getattr(logger, "log_graph", None)
            if callable(log_graph):
                log_graph(module)
            logger.save()
