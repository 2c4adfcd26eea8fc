"""Trainer: Lightning's flags and entry points (fit / validate / test / predict) on one rank.

The Trainer owns its collaborators and hands them to the loops; it keeps Lightning's public
entry points and attributes and delegates (the ``Delegated`` table below):

- ``settings`` (``LoopSettings``): the loop flags, resolved once;
- ``hook_caller`` (``HookCaller``): user hooks, and which one is running;
- ``metric_publisher`` (``MetricPublisher``): ``self.log`` results, the metric dicts, the loggers;
- ``optimization`` (``OptimizationStep``): optimizers, backward, clipping, steps, schedulers;
- ``checkpoint_flow`` (``CheckpointFlow``): ``ckpt_path`` resolution, save, restore, preemption;
- ``data_sources`` (``DataSources``) and ``batch_transfer`` (``BatchTransfer``): the batches;
- ``fit_loop`` (``FitLoop``) and ``evaluation_loop`` (``EvaluationLoop``) on top of them.

A run (``_run``): attach the module, set up the strategy, prepare data, call setup, restore a
checkpoint when asked, configure optimizers, then hand over to the loops. Everything that
depends on the number of ranks goes through ``self.strategy``.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from typing import Any

import torch

from fulmen.core.callback import Callback
from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule
from fulmen.errors import _TunerExitException
from fulmen.loggers.logger import Logger  # LightningCLI reads the annotation (--trainer.logger=CSVLogger)
from fulmen.runtime.batch_transfer import BatchTransfer
from fulmen.runtime.checkpoint_flow import CheckpointFlow
from fulmen.runtime.compiled import unwrap_compiled
from fulmen.runtime.data_sources import DataSources
from fulmen.runtime.evaluation_loop import EvaluationLoop
from fulmen.runtime.fit_loop import FitLoop
from fulmen.runtime.hook_caller import HookCaller
from fulmen.runtime.legacy_flags import legacy_tune
from fulmen.runtime.legacy_optimization import keep_unused_parameters_for_1x, take_trainer_flag
from fulmen.runtime.loop_settings import LoopSettings
from fulmen.runtime.metric_publisher import MetricPublisher
from fulmen.runtime.optimization_step import OptimizationStep, check_fit_configuration
from fulmen.runtime.precision import PrecisionPlugin
from fulmen.runtime.progress_watchdog import start_progress_watchdog
from fulmen.runtime.run_result import write_fit_result
from fulmen.runtime.stages import RunningStage, TrainerFn, TrainerState, TrainerStatus
from fulmen.runtime.strategy import LightningModuleWrapper, select_strategy
from fulmen.runtime.trainer_defaults import (
    apply_determinism,
    build_callbacks,
    build_run_loggers,
    end_tuner_run,
    merge_model_callbacks,
    print_results,
    warn_legacy_hooks,
)
from fulmen.runtime.trainer_flags import normalize_flags
from fulmen.runtime.trainer_properties import install_surface
from fulmen.runtime.training_progress import TrainingProgress


class Trainer:
    """Runs a LightningModule's training, evaluation and prediction (Lightning 2.x flags).

    One deliberate difference: ``num_nodes`` defaults to None, not 1, and like
    ``devices="auto"`` it then means "the topology the launcher started" (``launch``, torchrun,
    srun), so an unchanged script runs under ``launch --nodes 2 --gpus 2``. An explicit value
    that contradicts the launch is an error. Without a launcher both mean one node.
    """

    # Lightning's attributes (current_epoch, log_dir, ...): trainer_properties.SURFACE, installed below
    tune = legacy_tune  # Lightning 1.x: auto_lr_find / auto_scale_batch_size run by trainer.tune(model)

    def __init__(
        self,
        *,
        accelerator: str = "auto",
        strategy: Any = "auto",
        devices: Any = "auto",
        num_nodes: int | None = None,
        precision: Any = "32-true",
        logger: Logger | list[Logger] | bool | None = None,
        callbacks: Callback | list[Callback] | None = None,
        fast_dev_run: int | bool = False,
        max_epochs: int | None = None,
        min_epochs: int | None = None,
        max_steps: int = -1,
        min_steps: int | None = None,
        max_time: Any = None,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        overfit_batches: int | float = 0.0,
        val_check_interval: int | float | None = None,
        check_val_every_n_epoch: int | None = 1,
        num_sanity_val_steps: int | None = None,
        log_every_n_steps: int | None = None,
        enable_checkpointing: bool | None = None,
        enable_progress_bar: bool | None = None,
        enable_model_summary: bool | None = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
        deterministic: bool | str | None = None,
        benchmark: bool | None = None,
        inference_mode: bool = True,
        use_distributed_sampler: bool = True,
        profiler: Any = None,
        detect_anomaly: bool = False,
        barebones: bool = False,
        plugins: Any = None,
        sync_batchnorm: bool = False,
        reload_dataloaders_every_n_epochs: int = 0,
        default_root_dir: str | os.PathLike[str] | None = None,
        enable_autolog_hparams: bool = True,
        model_registry: str | None = None,
        **legacy_flags: Any,
    ) -> None:
        flags = {k: v for k, v in locals().items() if k not in ("self", "legacy_flags", "__class__")}
        known = [p for p in inspect.signature(Trainer.__init__).parameters if p not in ("self", "legacy_flags")]
        # Lightning 1.x's flag: the default of the module attribute (fulmen/runtime/legacy_optimization.py)
        self.truncated_bptt_steps = take_trainer_flag(legacy_flags)
        extras = normalize_flags(flags, legacy_flags, known)
        self._flags = flags
        self.barebones: bool = flags["barebones"]
        self.enable_autolog_hparams: bool = flags["enable_autolog_hparams"]
        self._resume_from_checkpoint = extras.get("resume_from_checkpoint")
        self._legacy_tuning = extras.get("tuning", {})
        self.strategy = select_strategy(
            flags["accelerator"], flags["strategy"], flags["devices"], flags["num_nodes"], flags["sync_batchnorm"]
        )
        self.precision_plugin = PrecisionPlugin(flags["precision"], self.strategy.root_device)
        self.precision = self.precision_plugin.precision
        root = flags["default_root_dir"] or self.strategy.rank_info.run_dir or os.getcwd()
        self._default_root_dir = os.fspath(root)
        # limits, epochs/steps and validation timing, after fast_dev_run / overfit_batches
        self.settings = LoopSettings.from_flags(flags)
        self.detect_anomaly = flags["detect_anomaly"]
        apply_determinism(flags["deterministic"], flags["benchmark"])
        callbacks = build_callbacks(flags, extras["extra_callbacks"])
        loggers = build_run_loggers(flags["logger"], self.settings.fast_dev_run, self._default_root_dir)
        self.state = TrainerState()
        self._return_predictions = True
        self._build_collaborators(loggers, extras.get("track_grad_norm", -1))
        self.callbacks = callbacks  # a CallbackList kept by the hook caller (trainer_properties.SURFACE)

    def _build_collaborators(self, loggers: list[Any], track_grad_norm: Any) -> None:
        """The parts the loops work with, each with its own state, wired once."""
        flags = self._flags
        self.progress = TrainingProgress()
        self.hook_caller = HookCaller(self)
        self.metric_publisher = MetricPublisher(self.strategy.reduce, loggers, self.progress)
        self.optimization = OptimizationStep(
            self.precision_plugin, self.hook_caller, self.metric_publisher, self.progress,
            flags["gradient_clip_val"], flags["gradient_clip_algorithm"], track_grad_norm,
        )  # fmt: skip
        self.checkpoint_flow = CheckpointFlow(self)
        self.data_sources = DataSources(self.strategy, self.settings)
        self.batch_transfer = BatchTransfer(self.strategy, self.precision_plugin)
        self.evaluation_loop = EvaluationLoop(
            self.hook_caller, self.metric_publisher, self.data_sources, self.batch_transfer, self.precision_plugin,
            self.state,
        )  # fmt: skip
        self.fit_loop = FitLoop(
            self.settings, self.progress, self.hook_caller, self.metric_publisher, self.optimization,
            self.data_sources, self.batch_transfer, self.checkpoint_flow, self.strategy,
            self.evaluation_loop.validate_in_fit,
        )  # fmt: skip

    # ---- entry points -------------------------------------------------------------------
    def fit(
        self,
        model: LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | os.PathLike[str] | None = None,
        *,
        unsafe_full_unpickle: bool = False,
    ) -> None:
        """Train ``model``; validation runs as configured. ``ckpt_path`` ("last" too) resumes.

        Checkpoints load with the safe loader (``torch.load(weights_only=True)``), which every
        file fulmen writes passes unless its hyperparameters hold custom objects;
        ``unsafe_full_unpickle=True`` loads those (and such files from Lightning) with the full
        unpickler, which can run code from the file: only for files you trust. It applies to
        the run's resume checkpoint as well.
        """
        if isinstance(train_dataloaders, LightningDataModule):
            datamodule, train_dataloaders = train_dataloaders, None
        model = self._model_or_fitted(model, TrainerFn.FITTING)
        if ckpt_path is None and self._resume_from_checkpoint is not None:
            ckpt_path = self._resume_from_checkpoint
        self.data_sources.set_sources(model, datamodule, train=train_dataloaders, val=val_dataloaders)
        self._run(TrainerFn.FITTING, model, ckpt_path, unsafe_full_unpickle=unsafe_full_unpickle)

    def validate(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | None = None,
        verbose: bool = True,
        datamodule: LightningDataModule | None = None,
    ) -> list[dict[str, float]]:
        """One validation pass; returns one metrics dict per dataloader."""
        return self._run_eval(TrainerFn.VALIDATING, model, dataloaders, ckpt_path, verbose, datamodule)

    def test(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | None = None,
        verbose: bool = True,
        datamodule: LightningDataModule | None = None,
    ) -> list[dict[str, float]]:
        """One test pass (no model: the fitted one, best checkpoint if any); metrics per dataloader."""
        return self._run_eval(TrainerFn.TESTING, model, dataloaders, ckpt_path, verbose, datamodule)

    def predict(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        return_predictions: bool | None = None,
        ckpt_path: str | None = None,
    ) -> Any:
        """``predict_step`` outputs over the predict loader(s)."""
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        model = self._model_or_fitted(model, TrainerFn.PREDICTING)
        self.data_sources.set_sources(model, datamodule, predict=dataloaders)
        self._return_predictions = True if return_predictions is None else return_predictions
        return self._run(TrainerFn.PREDICTING, model, ckpt_path)

    def _run_eval(self, fn: TrainerFn, model: Any, dataloaders: Any, ckpt_path: Any, verbose: bool, dm: Any) -> Any:
        if isinstance(dataloaders, LightningDataModule):
            dm, dataloaders = dataloaders, None
        if model is None and ckpt_path is None:
            ckpt_path = "best"  # Lightning: without a model, evaluate the best checkpoint of the fit
        model = self._model_or_fitted(model, fn)
        self.data_sources.set_sources(model, dm, **{fn.stage.dataloader_prefix: dataloaders})
        results = self._run(fn, model, ckpt_path)
        if verbose and self.is_global_zero:
            print_results(fn.value, results)
        return results

    def _model_or_fitted(self, model: Any, fn: TrainerFn) -> LightningModule:
        if model is None:
            if self.lightning_module is None:
                raise TypeError(  # Lightning's type for this mistake
                    f"trainer.{fn}() got no model and this Trainer has not fitted one.\n"
                    f"HINT: call trainer.{fn}(model, ...)."
                )
            return self.lightning_module
        model = unwrap_compiled(model)  # torch.compile(module): the original, its steps compiled
        if not isinstance(model, LightningModule):
            raise TypeError(
                f"trainer.{fn}() expected a LightningModule, got {type(model).__name__}.\n"
                "HINT: subclass fulmen.LightningModule (import fulmen as pl; class M(pl.LightningModule))."
            )
        return model

    # ---- one run --------------------------------------------------------------------
    def _run(self, fn: TrainerFn, model: LightningModule, ckpt_path: Any, unsafe_full_unpickle: bool = False) -> Any:
        self.state.start(fn)
        self.should_stop = False
        self.ckpt_path = None
        fitting = fn is TrainerFn.FITTING
        if fitting:
            self.settings.resolve_epoch_limits()
        else:
            self.metric_publisher.eval_log_step = 0  # eval step rows count from 0 per call (Lightning)
        self.metric_publisher.clear()  # each run reports its own metrics (Lightning resets them too)
        self._attach(model)
        if fitting:
            check_fit_configuration(model, self.gradient_clip_val, self.accumulate_grad_batches)
        watchdog = None
        try:
            self.strategy.setup_environment()
            self.data_sources.prepare_data(self.hook_caller)
            self.hook_caller.call_setup("setup", fn.value, self.datamodule)
            self.hook_caller.call_module("configure_model")
            self._setup_model(model)
            # Lightning's order: module and callbacks restored before configure_optimizers,
            # training state (loops, optimizers) once the optimizers exist
            checkpoint = None
            if ckpt_path is not None or fitting:
                checkpoint = self.checkpoint_flow.restore_before_optimizers(ckpt_path, fn, unsafe_full_unpickle)
            if fitting:
                self.optimization.configure_optimizers()
                # Lightning: before the saved state loads (finetuning's param groups, SWA's SWALR)
                self.hook_caller.call("on_fit_start")
                self.checkpoint_flow.restore_training_state(checkpoint)
                self.checkpoint_flow.install_preemption()
            if self.enable_autolog_hparams:
                self.metric_publisher.log_hyperparams(model, self.datamodule)
            anomaly = torch.autograd.set_detect_anomaly(True) if self.detect_anomaly else contextlib.nullcontext()
            # off the hot path: a thread reads counters the loops advance anyway (issue 16.6);
            # from here, not before setup: preparing data may rightly take longer than any batch
            watchdog = start_progress_watchdog(
                self._batches_run, self.strategy.global_rank, self.strategy.rank_info.run_dir
            )
            with anomaly:
                output = self._run_stage(fn)
            self._finish_run(fn)
            return output
        except BaseException as exc:
            if isinstance(exc, _TunerExitException):  # a tuner's search ended the run: a finished one (Lightning)
                return end_tuner_run(self, fn)
            self._on_run_failure(exc)
            raise
        finally:
            if watchdog is not None:
                watchdog.stop()
            self.checkpoint_flow.remove_preemption()
            self.strategy.teardown()

    def _finish_run(self, fn: TrainerFn) -> None:
        """A run that returned: its files in place, teardown hooks, FINISHED, result.json, loggers."""
        self.checkpoint_flow.finish_pending_saves()  # the run's files are in place before it returns
        if fn is TrainerFn.FITTING:
            self.checkpoint_flow.drop_resume_checkpoint()  # completed: nothing left to resume (kept on failure)
        self.hook_caller.call_setup("teardown", fn.value, self.datamodule)
        self.state.end(TrainerStatus.FINISHED)
        if fn is TrainerFn.FITTING:
            write_fit_result(self)  # result.json: what a sweep ranks its trials by
        for logger in self.loggers:
            logger.finalize("success")
        # every rank is done communicating before any tears the process group down: a peer
        # closing its gloo pairs mid-send aborted the other rank ("terminate called ...")
        self.strategy.barrier("teardown")

    def _batches_run(self) -> int:
        """Training plus evaluation batches so far: what the progress watchdog watches."""
        return self.progress.total_batch_idx + self.evaluation_loop.batches_run

    def _on_run_failure(self, exc: BaseException) -> None:
        """Lightning: on_exception, then loggers finalize; no teardown hooks (they mirror a successful setup)."""
        self.state.end(TrainerStatus.INTERRUPTED)
        self.checkpoint_flow.finish_pending_saves(failing=True)
        if self.state.fn is TrainerFn.FITTING:
            write_fit_result(self)
        self.hook_caller.call("on_exception", exc)
        if self.datamodule is not None:
            self.datamodule.on_exception(exc)
        for logger in self.loggers:
            with contextlib.suppress(Exception):
                logger.finalize("failed")

    def _run_stage(self, fn: TrainerFn) -> Any:
        self.lightning_module.zero_grad()
        if fn is TrainerFn.FITTING:
            from fulmen.utilities.seed import isolate_rng

            with isolate_rng():  # an eval loader's iterator draws a seed: keep training's RNG stream as is
                self.evaluation_loop.sanity_check()
            self.state.stage = RunningStage.TRAINING
            self.fit_loop.run()
            self.hook_caller.call("on_fit_end")
            return None
        return self.evaluation_loop.run_stage(fn.stage, self._return_predictions)

    # ---- run set-up -----------------------------------------------------------------
    def _attach(self, model: LightningModule) -> None:
        model.trainer = self
        if self.datamodule is not None:
            self.datamodule.trainer = self
        warn_legacy_hooks(model)
        self.hook_caller.lightning_module = model  # configure_callbacks runs as a hook
        with self.hook_caller.running("configure_callbacks"):
            self.callbacks = merge_model_callbacks(self.callbacks, model.configure_callbacks())
        self.hook_caller.attach(model, self.callbacks)
        self.batch_transfer.attach(self.hook_caller, self.datamodule)

    def _setup_model(self, model: LightningModule) -> None:
        """Precision conversion, then the strategy's move and wrap (DDP with several ranks)."""
        module = self.precision_plugin.convert_module(model)
        keep_unused_parameters_for_1x(model, self.strategy)
        wrapped = LightningModuleWrapper(module) if self.strategy.world_size > 1 else module
        self.optimization.setup(self.strategy.setup_module(wrapped), wrapped if wrapped is not module else None)

    # ---- Lightning's public API besides the entry points -----------------------------
    def save_checkpoint(self, filepath: str | os.PathLike[str], weights_only: bool = False,
                        storage_options: Any = None) -> None:  # fmt: skip
        """Write a checkpoint of the current state (see ``CheckpointFlow.save_checkpoint``)."""
        self.checkpoint_flow.save_checkpoint(filepath, weights_only=weights_only)

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self.is_global_zero:
            print(*args, **kwargs)


install_surface(Trainer)
