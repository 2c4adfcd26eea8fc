"""Trainer: Lightning's flags and entry points (fit / validate / test / predict) on one rank.

A run: attach the module, settle callbacks, set up the strategy, prepare data, call setup,
configure optimizers, restore a checkpoint when asked, then hand over to the loops
(``fit_loop.py``, ``evaluation_loop.py``). Everything that depends on the number of ranks
goes through ``self.strategy``; the per-step services the loops use (batch transfer,
backward, optimizer step, schedulers, metric publishing) are in ``trainer_services.py``.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import warnings
from typing import Any

import torch

from fulmen.core.callback import Callback
from fulmen.core.datamodule import LightningDataModule
from fulmen.core.hooks import HookTable, is_overridden
from fulmen.core.module import LightningModule
from fulmen.errors import MisconfigurationException
from fulmen.runtime import evaluation_loop
from fulmen.runtime.fit_loop import FitLoop, estimated_stepping_batches
from fulmen.runtime.optim import parse_optimizers, validate_multiple_optimizers, wrap_optimizer
from fulmen.runtime.precision import PrecisionPlugin
from fulmen.runtime.results import ResultCollection
from fulmen.runtime.strategy import LightningModuleWrapper, select_strategy
from fulmen.runtime.trainer_data import TrainerData
from fulmen.runtime.trainer_defaults import (
    apply_determinism,
    build_callbacks,
    build_loggers,
    merge_model_callbacks,
    optional_default,
    print_results,
    warn_legacy_hooks,
)
from fulmen.runtime.trainer_flags import (
    check_flags,
    parse_loop_limits,
    parse_max_time,
    resolve_loop_flags,
    translate_legacy_flags,
)
from fulmen.runtime.trainer_properties import TrainerProperties, TrainerState
from fulmen.runtime.trainer_services import TrainerServices

class Trainer(TrainerServices, TrainerData, TrainerProperties):
    """Runs a LightningModule's training, evaluation and prediction (Lightning 2.x flags).

    One deliberate difference: ``num_nodes`` defaults to None, not 1, and like
    ``devices="auto"`` it then means "the topology the launcher started" (``launch``, torchrun,
    srun), so an unchanged script runs under ``launch --nodes 2 --gpus 2``. An explicit value
    that contradicts the launch is an error. Without a launcher both mean one node.
    """

    def __init__(
        self,
        *,
        accelerator: str = "auto",
        strategy: Any = "auto",
        devices: Any = "auto",
        num_nodes: int | None = None,
        precision: Any = "32-true",
        logger: Any = None,
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
        **legacy_flags: Any,
    ) -> None:
        flags = {k: v for k, v in locals().items() if k not in ("self", "legacy_flags", "__class__")}
        known = [p for p in inspect.signature(Trainer.__init__).parameters if p not in ("self", "legacy_flags")]
        extras = translate_legacy_flags(flags, legacy_flags, known)
        flags["log_every_n_steps"] = 50 if flags["log_every_n_steps"] is None else flags["log_every_n_steps"]
        if flags["barebones"]:  # Lightning: nothing but the loops
            for name in ("logger", "enable_checkpointing", "enable_progress_bar", "enable_model_summary"):
                flags[name] = False
        for name in ("profiler", "plugins"):
            if flags[name] is not None:
                warnings.warn(
                    f"Trainer({name}=...) is accepted for compatibility, but fulmen does not implement it; "
                    "it has no effect.",
                    stacklevel=2,
                )
        check_flags(flags)
        self._flags = flags
        self._resume_from_checkpoint = extras.get("resume_from_checkpoint")
        self.track_grad_norm = extras.get("track_grad_norm", -1)

        self.strategy = select_strategy(
            flags["accelerator"], flags["strategy"], flags["devices"], flags["num_nodes"], flags["sync_batchnorm"]
        )
        self.precision_plugin = PrecisionPlugin(flags["precision"], self.strategy.root_device)
        self.precision = self.precision_plugin.precision
        root = flags["default_root_dir"] or self.strategy.rank_info.run_dir or os.getcwd()
        self._default_root_dir = os.fspath(root)

        # limits, epochs/steps and validation timing, after fast_dev_run / overfit_batches
        loop_flags = resolve_loop_flags(flags)
        for name, value in loop_flags.items():
            setattr(self, name, value)
        self.min_epochs = flags["min_epochs"]
        self.min_steps = flags["min_steps"]
        self.max_time = parse_max_time(flags["max_time"])
        self.log_every_n_steps = flags["log_every_n_steps"]
        self.accumulate_grad_batches = flags["accumulate_grad_batches"]
        self.gradient_clip_val = flags["gradient_clip_val"]
        self.gradient_clip_algorithm = flags["gradient_clip_algorithm"]
        self.inference_mode = flags["inference_mode"]
        self.use_distributed_sampler = flags["use_distributed_sampler"]
        self.detect_anomaly = flags["detect_anomaly"]
        self.reload_dataloaders_every_n_epochs = flags["reload_dataloaders_every_n_epochs"]
        apply_determinism(flags["deterministic"], flags["benchmark"])

        self.callbacks = build_callbacks(flags, extras["extra_callbacks"])
        if self.fast_dev_run:  # Lightning: a logger that records nothing (none for logger=False)
            dummy = optional_default("fulmen.loggers.logger", "DummyLogger")
            self.loggers = [dummy()] if dummy is not None and flags["logger"] is not False else []
        else:
            self.loggers = build_loggers(flags["logger"], self._default_root_dir)

        self.state = TrainerState()
        self.should_stop = False
        self.ckpt_path: str | None = None
        self.fit_loop = FitLoop(self)
        self.lightning_module: LightningModule | None = None
        self.datamodule: LightningDataModule | None = None
        self.model: torch.nn.Module | None = None
        self.optimizers: list[torch.optim.Optimizer] = []
        self._lightning_optimizers: list[Any] = []
        self.lr_scheduler_configs: list[Any] = []
        self._callback_metrics: dict[str, torch.Tensor] = {}
        self._logged_metrics: dict[str, Any] = {}
        self._pbar_raw: dict[str, Any] = {}
        self._results: ResultCollection | None = None
        reduce = self.strategy.reduce
        self._train_results = ResultCollection("train", reduce)
        self._val_results = ResultCollection("validate", reduce)
        self._test_results = ResultCollection("test", reduce)
        self._hooks: HookTable | None = None
        self._init_data_state()
        self._init_services()

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
        model = self._model_or_fitted(model, "fit")
        if ckpt_path is None and self._resume_from_checkpoint is not None:
            ckpt_path = self._resume_from_checkpoint
        self._set_sources(model, datamodule, train=train_dataloaders, val=val_dataloaders)
        self._run("fit", model, ckpt_path, unsafe_full_unpickle=unsafe_full_unpickle)

    def validate(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | None = None,
        verbose: bool = True,
        datamodule: LightningDataModule | None = None,
    ) -> list[dict[str, float]]:
        """One validation pass; returns one metrics dict per dataloader."""
        return self._run_eval("validate", model, dataloaders, ckpt_path, verbose, datamodule)

    def test(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | None = None,
        verbose: bool = True,
        datamodule: LightningDataModule | None = None,
    ) -> list[dict[str, float]]:
        """One test pass (no model: the fitted one, best checkpoint if any); metrics per dataloader."""
        return self._run_eval("test", model, dataloaders, ckpt_path, verbose, datamodule)

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
        model = self._model_or_fitted(model, "predict")
        self._set_sources(model, datamodule, predict=dataloaders)
        self._return_predictions = True if return_predictions is None else return_predictions
        return self._run("predict", model, ckpt_path)

    def _run_eval(self, stage: str, model: Any, dataloaders: Any, ckpt_path: Any, verbose: bool, dm: Any) -> Any:
        if isinstance(dataloaders, LightningDataModule):
            dm, dataloaders = dataloaders, None
        if model is None and ckpt_path is None:
            ckpt_path = "best"  # Lightning: without a model, evaluate the best checkpoint of the fit
        model = self._model_or_fitted(model, stage)
        self._set_sources(model, dm, **{"val" if stage == "validate" else "test": dataloaders})
        results = self._run(stage, model, ckpt_path)
        if verbose and self.is_global_zero:
            print_results(stage, results)
        return results

    def _model_or_fitted(self, model: Any, stage: str) -> LightningModule:
        if model is None:
            if self.lightning_module is None:
                raise TypeError(  # Lightning's type for this mistake
                    f"trainer.{stage}() got no model and this Trainer has not fitted one.\n"
                    f"HINT: call trainer.{stage}(model, ...)."
                )
            return self.lightning_module
        if not isinstance(model, LightningModule):
            raise TypeError(
                f"trainer.{stage}() expected a LightningModule, got {type(model).__name__}.\n"
                "HINT: subclass fulmen.LightningModule (import fulmen as pl; class M(pl.LightningModule))."
            )
        return model

    # ---- one run --------------------------------------------------------------------
    def _run(self, fn: str, model: LightningModule, ckpt_path: Any, unsafe_full_unpickle: bool = False) -> Any:
        self.state = TrainerState(status="running", fn=fn)
        self.should_stop = False
        self.ckpt_path = None
        self._unsafe_full_unpickle = unsafe_full_unpickle  # read by _restore_before_optimizers
        if fn != "fit":
            self._eval_log_step = 0  # eval step rows count from 0 per validate/test call (Lightning)
        if fn == "fit":
            self.min_epochs, self.max_epochs = parse_loop_limits(
                self.min_steps, self.max_steps, self.min_epochs, self.max_epochs, self.max_time is not None
            )
        for metrics in (self._callback_metrics, self._logged_metrics, self._pbar_raw):
            metrics.clear()  # each run reports its own metrics (Lightning resets them too)
        self._attach(model)
        preemption = None
        if fn == "fit":
            self._check_fit_configuration(model)
        try:
            self.strategy.setup_environment()
            self._prepare_data()
            self._call_setup_hooks("setup", fn)
            self._module_hook("configure_model")
            module = self.precision_plugin.convert_module(model)
            wrapped = LightningModuleWrapper(module) if self.strategy.world_size > 1 else module
            self.model = self.strategy.setup_module(wrapped)
            self._module_wrapper = wrapped if wrapped is not module else None
            # Lightning's order: module and callbacks restored before configure_optimizers,
            # training state (loops, optimizers) once the optimizers exist
            checkpoint = self._restore_before_optimizers(ckpt_path) if ckpt_path is not None or fn == "fit" else None
            if fn == "fit":
                self._setup_optimizers(model)
                self._restore_training_state(checkpoint)
                preemption = self._install_preemption()
            self._log_hyperparams(model)
            anomaly = torch.autograd.set_detect_anomaly(True) if self.detect_anomaly else contextlib.nullcontext()
            with anomaly:
                output = self._run_stage(fn)
            self._finish_pending_saves()  # the run's checkpoint files are in place before it returns
            if fn == "fit":
                self._drop_resume_checkpoint()  # completed: nothing left to resume (kept on failure)
            self._call_setup_hooks("teardown", fn)
            self.state.status = "finished"
            self.state.stage = None
            for logger in self.loggers:
                logger.finalize("success")
            # every rank is done communicating before any tears the process group down: a peer
            # closing its gloo pairs mid-send aborted the other rank ("terminate called ...")
            self.strategy.barrier("teardown")
            return output
        except BaseException as exc:
            # Lightning: on_exception, then loggers finalize; no teardown hooks (they mirror a successful setup)
            self.state.status = "interrupted"
            self.state.stage = None
            self._finish_pending_saves(failing=True)
            self._call("on_exception", exc)
            if self.datamodule is not None:
                self.datamodule.on_exception(exc)
            for logger in self.loggers:
                with contextlib.suppress(Exception):
                    logger.finalize("failed")
            raise
        finally:
            if preemption is not None:
                preemption.restore()
            self._preemption = None
            self.strategy.teardown()

    def _run_stage(self, fn: str) -> Any:
        if fn == "fit":
            self._call("on_fit_start")
        self.lightning_module.zero_grad()
        if fn == "fit":
            from fulmen.utilities.seed import isolate_rng

            with isolate_rng():  # an eval loader's iterator draws a seed: keep training's RNG stream as is
                self._run_sanity_check()
            self.state.stage = "train"
            self.fit_loop.run()
            self._call("on_fit_end")
            return None
        self.state.stage = fn
        step_name = {"validate": "validation_step", "test": "test_step", "predict": "predict_step"}[fn]
        if getattr(self.lightning_module, step_name, None) is None:
            raise MisconfigurationException(
                f"trainer.{fn}() needs {type(self.lightning_module).__name__}.{step_name}, which is not defined.\n"
                f"HINT: add `def {step_name}(self, batch, batch_idx): ...`."
            )
        loaders, nums = self._eval_loaders(fn)
        if not loaders:
            hook = {"validate": "val", "test": "test", "predict": "predict"}[fn] + "_dataloader"
            raise MisconfigurationException(
                f"trainer.{fn}() found no data: no dataloaders argument, no datamodule and no {hook}().\n"
                f"HINT: trainer.{fn}(model, dataloaders=DataLoader(...)) or define {hook}()."
            )
        if fn == "predict":
            return evaluation_loop.run_predict(self, loaders, nums, self._return_predictions)
        results = self._val_results if fn == "validate" else self._test_results
        return evaluation_loop.run_evaluation(self, fn, loaders, nums, results, in_fit=False)

    def _run_sanity_check(self) -> None:
        if self.num_sanity_val_steps == 0 or not self._val_possible():
            return
        self.state.stage = "sanity_check"
        for fn in self._hooks.callbacks("on_sanity_check_start"):
            fn(self, self.lightning_module)
        loaders, nums = self._eval_loaders("validate")
        nums = self.num_sanity_val_batches
        if loaders:
            evaluation_loop.run_evaluation(
                self, "validate", loaders, nums, self._val_results, in_fit=True, sanity=True
            )
        for fn in self._hooks.callbacks("on_sanity_check_end"):
            fn(self, self.lightning_module)
        # sanity metrics are discarded (Lightning)
        self._callback_metrics.clear()
        self._pbar_raw.clear()
        self._logged_metrics.clear()
        self._val_results.reset()
        self.state.stage = "train"

    def _run_evaluation(self, stage: str, in_fit: bool) -> list[dict[str, float]]:
        """Validation inside fit (called by the fit loop when a check is due)."""
        loaders, nums = self._eval_loaders("validate")
        if not loaders:
            return []
        previous = self.state.stage
        self.state.stage = "validate"
        try:
            return evaluation_loop.run_evaluation(self, stage, loaders, nums, self._val_results, in_fit=in_fit)
        finally:
            self.state.stage = previous

    # ---- run set-up -----------------------------------------------------------------
    def _attach(self, model: LightningModule) -> None:
        model.trainer = self
        self.lightning_module = model
        if self.datamodule is not None:
            self.datamodule.trainer = self
        warn_legacy_hooks(model)
        self._collect_train_outputs = callable(getattr(model, "training_epoch_end", None))
        self._current_fx = "configure_callbacks"
        try:
            self.callbacks = merge_model_callbacks(self.callbacks, model.configure_callbacks())
        finally:
            self._current_fx = None
        self._hooks = HookTable(model, LightningModule, self.callbacks, Callback)
        self._prepare_services(model)

    def _prepare_data(self) -> None:
        dm = self.datamodule
        per_node = dm.prepare_data_per_node if dm is not None else True
        is_preparer = self.local_rank == 0 if per_node else self.global_rank == 0
        if is_preparer:
            if dm is not None:
                dm.prepare_data()
            self._module_hook("prepare_data")
        self.strategy.barrier("prepare_data")

    def _call_setup_hooks(self, name: str, stage: str) -> None:
        self._current_fx = name
        try:
            if self.datamodule is not None:
                getattr(self.datamodule, name)(stage=stage)
            for fn in self._hooks.callbacks(name):
                fn(self, self.lightning_module, stage=stage)
            hook = self._hooks.module(name)
            if hook is not None:
                hook(stage=stage)
        finally:
            self._current_fx = None

    def _check_fit_configuration(self, model: LightningModule) -> None:
        """Configuration errors a fit can detect before anything runs (Lightning checks them first too)."""
        if not is_overridden(model, "training_step", LightningModule):
            model.training_step()  # raises the "missing training_step" error with its HINT
        if self.gradient_clip_val and not model.automatic_optimization:
            raise MisconfigurationException(
                "Trainer(gradient_clip_val=...) clips automatically, but this module uses manual optimization.\n"
                "HINT: remove gradient_clip_val and call self.clip_gradients(opt, gradient_clip_val=...) "
                "in training_step before opt.step()."
            )
        if model.automatic_optimization is False and self.accumulate_grad_batches != 1:
            raise MisconfigurationException(
                "Trainer(accumulate_grad_batches>1) does not apply to manual optimization.\n"
                "HINT: accumulate in training_step yourself and step every N batches."
            )

    def _setup_optimizers(self, model: LightningModule) -> None:
        self.optimizers, self.lr_scheduler_configs = parse_optimizers(self._module_hook("configure_optimizers"))
        validate_multiple_optimizers(self.optimizers, model.automatic_optimization)
        self._lightning_optimizers = [wrap_optimizer(o, self._on_optimizer_step) for o in self.optimizers]
        self._optimizer_index = {id(o): i for i, o in enumerate(self.optimizers)}
        if len(self.fit_loop.optimizer_steps) != len(self.optimizers):
            self.fit_loop.optimizer_steps = [0] * len(self.optimizers)

    # ---- misc public API ------------------------------------------------------------
    @contextlib.contextmanager
    def init_module(self, empty_init: bool | None = None) -> Any:
        """Create the model inside this block to get parameters in the training dtype (64-true, bf16-true)."""
        dtype = {"64-true": torch.float64, "bf16-true": torch.bfloat16}.get(self.precision)
        previous = torch.get_default_dtype()
        if dtype is not None:
            torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(previous)

    @property
    def estimated_stepping_batches(self) -> float:
        """Optimizer steps the whole fit will take (loads the train dataloader if needed)."""
        self._load_train_dataloader()
        return estimated_stepping_batches(self)

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self.is_global_zero:
            print(*args, **kwargs)
