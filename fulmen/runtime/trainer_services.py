"""What the loops ask of the Trainer at each step: hooks, transfer, backward, optimizer step,
schedulers, metrics, checkpoints and preemption. Decisions that do not change during a run
(which hooks are overridden, whether batches need moving) are taken once in
``_prepare_services``, so the per-step paths stay short.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch import Tensor

from fulmen.core.datamodule import LightningDataModule
from fulmen.core.hooks import is_overridden, move_data_to_device
from fulmen.errors import CheckpointError, MisconfigurationException
from fulmen.runtime.optim import clip_gradients
from fulmen.runtime.results import EVERY_LOADER, EveryLoader, ResultCollection, to_float_dict
from fulmen.utilities.rank_zero import rank_zero_info

_TRANSFER_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")


class TrainerServices:
    """Per-step services of the Trainer, used by ``fit_loop`` and ``evaluation_loop``."""

    def _init_services(self) -> None:
        self._warned: set[str] = set()
        self._preemption: Any = None
        self._unsafe_full_unpickle = False  # fit(unsafe_full_unpickle=True): full unpickler for its checkpoint
        self._module_wrapper: Any = None
        self._optimizer_index: dict[int, int] = {}
        self._eval_log_step = 0
        self._current_fx: str | None = None  # the start/end/epoch hook running now (None: a step hook)
        self._return_predictions = True
        self._resume_choice: Any = None  # the ResumeChoice of the current fit, if it restored one

    def _prepare_services(self, module: Any) -> None:
        dm = self.datamodule
        self._transfer_fns = []
        for name in _TRANSFER_HOOKS:
            if dm is not None and is_overridden(dm, name, LightningDataModule):
                self._transfer_fns.append(getattr(dm, name))
            else:
                self._transfer_fns.append(self._hooks.module(name))
        self._custom_transfer = any(fn is not None for fn in self._transfer_fns)
        self._training_step_end = getattr(module, "training_step_end", None)
        plugin = self.precision_plugin
        self._convert_input = plugin.convert_input if plugin.precision in ("64-true", "bf16-true") else None

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, stacklevel=3)

    # ---- hooks ------------------------------------------------------------------------
    def _call(self, name: str, *args: Any) -> None:
        """Callbacks' ``name`` (in order), then the module's; skipped where not overridden.

        Used for start/end and epoch hooks (never per step), so it also records which hook
        runs: ``self.log`` refuses or restricts logging where Lightning does.
        """
        module = self.lightning_module
        previous, self._current_fx = self._current_fx, name
        try:
            for fn in self._hooks.callbacks(name):
                fn(self, module, *args)
            hook = self._hooks.module(name)
            if hook is not None:
                hook(*args)
        finally:
            self._current_fx = previous

    def _module_hook(self, name: str, *args: Any) -> Any:
        """The module's hook even when it is the base implementation (hooks with a default job)."""
        previous, self._current_fx = self._current_fx, name
        try:
            return getattr(self.lightning_module, name)(*args)
        finally:
            self._current_fx = previous

    # ---- batches ----------------------------------------------------------------------
    def _transfer_batch(self, batch: Any, dataloader_idx: int) -> Any:
        if self._custom_transfer:
            before, transfer, after = self._transfer_fns
            if before is not None:
                batch = before(batch, dataloader_idx)
            if transfer is not None:
                batch = transfer(batch, self.strategy.root_device, dataloader_idx)
            else:
                batch = move_data_to_device(batch, self.strategy.root_device)
            if after is not None:
                batch = after(batch, dataloader_idx)
        elif self.strategy.root_device.type != "cpu":
            batch = move_data_to_device(batch, self.strategy.root_device)
        if self._convert_input is not None:
            batch = self._convert_input(batch)
        return batch

    def _training_step(self, batch: Any, batch_idx: int) -> Any:
        if self._module_wrapper is not None:
            # several ranks: go through the strategy's wrapper so DDP's forward hooks run
            self._module_wrapper.step_name = "training_step"
            output = self.model(batch, batch_idx)
        else:
            output = self.lightning_module.training_step(batch, batch_idx)
        if self._training_step_end is not None:
            output = self._training_step_end(output)
        return output

    def _eval_step(self, step_fn: Any, batch: Any, batch_idx: int, *extra: int) -> Any:
        return step_fn(batch, batch_idx, *extra)

    # ---- optimization ----------------------------------------------------------------
    def _backward(self, loss: Tensor, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        module = self.lightning_module
        hooks = self._hooks
        for fn in hooks.callbacks("on_before_backward"):
            fn(self, module, loss)
        hook = hooks.module("on_before_backward")
        if hook is not None:
            hook(loss)
        scaled = self.precision_plugin.pre_backward(loss)
        backward = hooks.module("backward")
        if backward is not None:
            backward(scaled, *args, **kwargs)
        else:
            scaled.backward(*args, **kwargs)
        for fn in hooks.callbacks("on_after_backward"):
            fn(self, module)
        hook = hooks.module("on_after_backward")
        if hook is not None:
            hook()

    def _on_optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Any) -> Any:
        """What ``LightningOptimizer.step`` does: precision step with hooks and clipping after the closure."""
        module = self.lightning_module
        automatic = module.automatic_optimization

        def after_closure() -> None:
            for fn in self._hooks.callbacks("on_before_optimizer_step"):
                fn(self, module, optimizer)
            hook = self._hooks.module("on_before_optimizer_step")
            if hook is not None:
                hook(optimizer)
            if self.track_grad_norm not in (-1, None):
                self._log_grad_norms(optimizer)
            if automatic:
                clip = self._hooks.module("configure_gradient_clipping")
                if clip is not None:
                    clip(
                        optimizer,
                        gradient_clip_val=self.gradient_clip_val,
                        gradient_clip_algorithm=self.gradient_clip_algorithm,
                    )
                elif self.gradient_clip_val:
                    clip_gradients(self.precision_plugin, optimizer, self.gradient_clip_val, self.gradient_clip_algorithm)

        result = self.precision_plugin.optimizer_step(optimizer, closure, after_closure, automatic=automatic)
        loop = self.fit_loop
        idx = self._optimizer_index.get(id(optimizer), 0)
        if idx < len(loop.optimizer_steps):
            loop.optimizer_steps[idx] += 1
        loop.global_step += 1
        return result

    def _log_grad_norms(self, optimizer: torch.optim.Optimizer) -> None:
        """Legacy ``track_grad_norm=p``: log each parameter's gradient p-norm and the total."""
        p = float(self.track_grad_norm)
        norms = {}
        for name, param in self.lightning_module.named_parameters():
            if param.grad is not None:
                norms[f"grad_{p}_norm/{name}"] = torch.linalg.vector_norm(param.grad.detach(), ord=p)
        if norms:
            total = torch.linalg.vector_norm(torch.stack(list(norms.values())), ord=p)
            norms[f"grad_{p}_norm_total"] = total
            for key, value in norms.items():
                self._train_results.log(key, value, prog_bar=False, logger=True, on_step=True, on_epoch=False,
                                        reduce_fx="mean", enable_graph=False, sync_dist=False,
                                        add_dataloader_idx=False, batch_size=None, rank_zero_only=False)  # fmt: skip

    def _step_schedulers(self, interval: str, batch_idx: int, plateau: bool) -> None:
        """Step the schedulers of ``interval`` (plateau ones only when ``plateau``) that are due."""
        configs = self.lr_scheduler_configs
        if not configs or not self.lightning_module.automatic_optimization:
            return
        for config in configs:
            if config.reduce_on_plateau != plateau or config.interval != interval:
                continue
            index = (batch_idx if interval == "step" else self.current_epoch) + 1
            if index % config.frequency != 0:
                continue
            metric = None
            if config.reduce_on_plateau:
                metric = self._callback_metrics.get(config.monitor)
                if metric is None:
                    available = sorted(self._callback_metrics)
                    if config.strict:
                        raise MisconfigurationException(
                            f"ReduceLROnPlateau monitors {config.monitor!r}, which was not logged. "
                            f"Available metrics: {available}.\n"
                            "HINT: self.log the monitored value, or fix the 'monitor' key of the scheduler dict."
                        )
                    self._warn_once(f"ReduceLROnPlateau skipped: {config.monitor!r} not in {available}.")
                    continue
            self.lightning_module.lr_scheduler_step(config.scheduler, metric)

    # ---- metrics ----------------------------------------------------------------------
    def _publish_step_metrics(self, should_log: bool, accumulating: bool = False, batch_done: bool = True) -> None:
        results = self._train_results
        if not results.logged_this_batch:
            return
        callback, log, pbar = results.step_metrics()
        self._callback_metrics.update(callback)
        self._pbar_raw.update(pbar)
        if batch_done:  # after the batch-end hooks, whether or not the loggers are called (Lightning)
            self._logged_metrics.update(log)
        if log and not accumulating and (should_log or self.should_stop or self.fast_dev_run):
            self._log_to_loggers(log, self.fit_loop.batches_that_stepped)

    def _publish_eval_step_metrics(self, results: ResultCollection, sanity: bool = False) -> None:
        """An eval batch's step values: progress bar and logged_metrics, and the loggers unless
        this is the sanity check (whose values are shown while it runs, never logged: Lightning)."""
        _, log, pbar = results.step_metrics()
        self._pbar_raw.update(pbar)
        if sanity:
            self._logged_metrics.update(log)
        elif log:
            self._log_to_loggers(log, self._eval_log_step, add_epoch=False)
            self._eval_log_step += 1

    def _publish_epoch_metrics(self, results: ResultCollection, log: bool, step: int | None = None,
                               loader: int | None | EveryLoader = EVERY_LOADER) -> dict[str, Tensor]:  # fmt: skip
        """Epoch values into the metric dicts (and the loggers when ``log``); returns what validate/test
        return to the caller: the epoch values meant for loggers (Lightning). ``loader``: only the
        values logged while that eval loader ran (see ``ResultCollection.epoch_metrics``)."""
        callback, logged, pbar = results.epoch_metrics(loader)
        self._callback_metrics.update(callback)
        self._pbar_raw.update(pbar)
        self._logged_metrics.update(logged)  # readable before the loggers get them (Lightning's property)
        if log and logged:
            self._log_to_loggers(logged, self.fit_loop.batches_that_stepped if step is None else step)
        return logged

    def _log_to_loggers(self, metrics: dict[str, Tensor], step: int, add_epoch: bool = True) -> None:
        """Record ``metrics`` in logged_metrics (even without loggers, like Lightning 2.6) and send them on.

        Eval step values carry their own step counter and no "epoch" column (Lightning).
        """
        self._logged_metrics.update(metrics)
        if not self.loggers:
            return
        scalars = to_float_dict(metrics)
        if "step" in scalars:  # a logged "step" value is the step loggers see (Lightning)
            step = int(scalars.pop("step"))
        elif add_epoch:
            scalars.setdefault("epoch", self.current_epoch)
        for logger in self.loggers:
            logger.log_metrics(scalars, step=step)
            logger.save()

    def _log_hyperparams(self, module: Any) -> None:
        """Send saved hyperparameters (module and datamodule, merged) to every logger (Lightning's rules)."""
        if not self.loggers:
            return
        dm = self.datamodule
        from_module = getattr(module, "_log_hyperparams", False)
        from_dm = dm is not None and getattr(dm, "_log_hyperparams", False)
        params: dict[str, Any] | None = None
        if from_module and from_dm:
            params = dict(module.hparams_initial)
            for key, value in dm.hparams_initial.items():
                if key in params and params[key] != value:
                    raise MisconfigurationException(
                        f"Hyperparameter {key!r} is {params[key]!r} in the module but {value!r} in the datamodule; "
                        "the logger cannot record both.\nHINT: rename one, or save_hyperparameters(logger=False)."
                    )
                params[key] = value
        elif from_module:
            params = dict(module.hparams_initial)
        elif from_dm:
            params = dict(dm.hparams_initial)
        for logger in self.loggers:
            if params is not None:
                logger.log_hyperparams(params)
            log_graph = getattr(logger, "log_graph", None)
            if callable(log_graph):
                log_graph(module)
            logger.save()

    # ---- checkpoints ------------------------------------------------------------------
    def save_checkpoint(self, filepath: str | os.PathLike[str], weights_only: bool = False,
                        storage_options: Any = None) -> None:  # fmt: skip
        """Write a checkpoint of the current state (every rank builds it, global rank 0 writes).

        During a run (a callback, a hook) the file's fsync and rename happen in the background
        while training goes on, and the run waits for them before it returns; outside a run
        the file is durable and in place when this returns. See ``checkpoint_saver``.
        """
        from fulmen.runtime.checkpoint import save_atomic
        from fulmen.runtime.checkpoint_saver import save_in_background
        from fulmen.runtime.checkpoint_state import dump_checkpoint

        if self.lightning_module is None:
            raise MisconfigurationException(
                "trainer.save_checkpoint() needs a model, but no fit/validate/test has attached one.\n"
                "HINT: call it after (or during) trainer.fit(model)."
            )
        checkpoint = dump_checkpoint(self, weights_only=weights_only)
        if self.is_global_zero:
            if self.state.status == "running":
                save_in_background(checkpoint, filepath)
            else:
                save_atomic(checkpoint, filepath)
        self.strategy.barrier("save_checkpoint")

    def _finish_pending_saves(self, failing: bool = False) -> None:
        """Wait until the checkpoints saved in the background during this run are in place.

        A failed background save is raised, unless the run is already failing: then it is a
        warning, so that it does not hide the original error.
        """
        from fulmen.runtime.checkpoint_saver import has_pending_saves, wait_for_pending_saves

        if not failing:
            wait_for_pending_saves()
            return
        if has_pending_saves():
            rank_zero_info("Waiting for checkpoints still being written before stopping ...")
        try:
            wait_for_pending_saves()
        except CheckpointError as err:
            warnings.warn(str(err), RuntimeWarning, stacklevel=2)

    def _resolve_ckpt_path(self, ckpt_path: Any, warn_if_no_last: bool = True, last_dirs: Any = ()) -> str | None:
        """A checkpoint file for ``ckpt_path``: a path, "best" or "last" (Lightning's meanings);
        ``last_dirs``: more folders to search for "last" (those the resumed run saved into)."""
        if ckpt_path == "best":
            cb = self.checkpoint_callback
            path = getattr(cb, "best_model_path", "") if cb is not None else ""
            if not path:
                what = "is not configured" if cb is None else "has not saved a best model"
                raise ValueError(  # Lightning's type for this mistake
                    f'ckpt_path="best" is set but ModelCheckpoint {what}.\n'
                    "HINT: pass the model (trainer.test(model)) to use its current weights, fit with a "
                    "ModelCheckpoint first, or pass a checkpoint file path."
                )
            return os.fspath(path)
        if ckpt_path == "last":
            # the newest last*.ckpt of any checkpoint callback (Lightning's _find_last_checkpoints)
            from fulmen.runtime.checkpoint import recover_unfinished_saves

            candidates = set()
            for dirpath in [getattr(cb, "dirpath", None) for cb in self.checkpoint_callbacks] + list(last_dirs):
                if dirpath and os.path.isdir(dirpath):
                    recover_unfinished_saves(dirpath)  # a last.ckpt a killed run wrote but did not rename
                    candidates |= {
                        os.path.join(dirpath, name)
                        for name in os.listdir(dirpath)
                        if name.startswith("last") and name.endswith(".ckpt")
                    }
            if not candidates:
                if not warn_if_no_last:  # the run's resume checkpoint is loaded instead
                    return None
                self._warn_once(
                    'ckpt_path="last" is set, but there is no last checkpoint; nothing is loaded.\n'
                    "HINT: ModelCheckpoint(save_last=True)."
                )
                return None
            return max(candidates, key=os.path.getmtime)
        return os.fspath(ckpt_path) if ckpt_path is not None else None

    def _fit_checkpoint_choice(self, ckpt_path: Any) -> Any:
        """The file fit continues from: this run's resume checkpoint or ``ckpt_path``'s file,
        the newest progress among the run's own files (``resume_selection``)."""
        from fulmen.runtime.resume_checkpoint import find_resume_checkpoint
        from fulmen.runtime.resume_selection import recorded_checkpoint_dirs, select_fit_checkpoint

        run_dir = self.strategy.rank_info.run_dir
        resume = find_resume_checkpoint(run_dir) if run_dir else None
        last_dirs = recorded_checkpoint_dirs(resume) if resume is not None and ckpt_path == "last" else []
        requested = self._resolve_ckpt_path(ckpt_path, warn_if_no_last=resume is None, last_dirs=last_dirs)
        label = f'ckpt_path="{ckpt_path}"' if ckpt_path in ("last", "best") else "ckpt_path"
        return select_fit_checkpoint(run_dir, resume, requested, label, ckpt_path == "last")

    def _restore_before_optimizers(self, ckpt_path: Any) -> dict[str, Any] | None:
        """Lightning's first restore phase (module, datamodule, loggers, callbacks); returns the
        checkpoint for ``_restore_training_state`` once the optimizers exist, or None."""
        self._resume_choice = None
        if self.state.fn == "fit":
            self._resume_choice = self._fit_checkpoint_choice(ckpt_path)
            path = self._resume_choice.path if self._resume_choice is not None else None
        else:
            path = self._resolve_ckpt_path(ckpt_path)
        if path is None:
            return None
        from fulmen.runtime.checkpoint import load_checkpoint
        from fulmen.runtime.checkpoint_state import restore_modules_and_callbacks

        self.ckpt_path = path
        self._announce_restore(start=True)
        checkpoint = load_checkpoint(
            path, map_location=self.strategy.root_device, unsafe_full_unpickle=self._unsafe_full_unpickle
        )
        restore_modules_and_callbacks(self, checkpoint, source=path)
        if self.state.fn != "fit":
            self._announce_restore(start=False)
        return checkpoint

    def _announce_restore(self, start: bool) -> None:
        """Rank 0 says which file it restores and why (``resume_selection``), before and after."""
        from fulmen.runtime import resume_selection as rs

        if start:
            message = rs.restore_start_message(self._resume_choice, self.ckpt_path)
        else:
            restarts = self.strategy.rank_info.restart_count
            message = rs.restore_end_message(self._resume_choice, self.ckpt_path, self.state.fn, restarts)
        if message is not None:
            rank_zero_info(message)

    def _restore_training_state(self, checkpoint: dict[str, Any] | None) -> None:
        """Lightning's second phase while fitting: precision, loop progress, optimizers, schedulers."""
        if checkpoint is None:
            return
        from fulmen.runtime.checkpoint_state import restore_training_state

        restore_training_state(self, checkpoint, source=self.ckpt_path)
        self._announce_restore(start=False)

    def _drop_resume_checkpoint(self) -> None:
        """After a completed fit: remove the run's resume checkpoint (rank 0), now that every
        checkpoint the run saved is durable (``_finish_pending_saves`` ran before)."""
        if not self.is_global_zero:
            return
        from fulmen.runtime.resume_checkpoint import remove_resume_checkpoints

        remove_resume_checkpoints(self.strategy.rank_info.run_dir or self.default_root_dir)

    # ---- preemption -------------------------------------------------------------------
    def _install_preemption(self) -> Any:
        try:
            from fulmen.runtime.preemption import PreemptionHandler
        except ImportError:
            return None
        handler = PreemptionHandler()
        handler.install()
        self._preemption = handler
        return handler

    def _check_preemption(self) -> None:
        """At a step boundary: if a stop signal arrived (agreed by all ranks), save and exit 75."""
        handler = self._preemption
        if handler is None or not handler.stop_requested(self.strategy):
            return
        from fulmen.runtime.resume_checkpoint import save_resume_checkpoint
        from fulmen.runtime.checkpoint_state import dump_checkpoint
        from fulmen.jobs.exit_codes import PREEMPTED_EXIT_CODE
        from fulmen.runtime.preemption import hand_off

        checkpoint = dump_checkpoint(self, weights_only=False)
        run_dir = self.strategy.rank_info.run_dir or self.default_root_dir
        if self.is_global_zero:
            save_resume_checkpoint(checkpoint, run_dir)
        self.strategy.barrier("preemption")
        hand_off(self.strategy.rank_info)
        raise SystemExit(PREEMPTED_EXIT_CODE)
