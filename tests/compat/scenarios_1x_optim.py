"""Lightning 1.x compatibility scenarios: several optimizers under automatic optimization with
``training_step(batch, batch_idx, optimizer_idx)`` (the seeds' GANs), and truncated backprop
through time (``truncated_bptt_steps``, ``training_step(batch, batch_idx, hiddens)``).

Same contract as ``scenarios.py`` (``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning), but the reference is PyTorch Lightning **1.9.5**, kept apart in
``reference_1x/``. Record it with a python that has pytorch_lightning 1.9.5 (it needs
``setuptools<70`` for ``pkg_resources``; a ``pip install --target DIR pytorch_lightning==1.9.5
"setuptools<70" --no-deps`` on top of the 2.6 scratch venv's torch works):

    PYTHONPATH=<worktree>:DIR /work/venvs/pl26/bin/python -m tests.compat.scenarios_1x_optim [name ...]
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

REFERENCE_1X_DIR = Path(__file__).resolve().parent / "reference_1x"


def _r(value: Any) -> float:
    return round(float(value), 6)


def _two_optimizer_module(pl: ModuleType, conf: str) -> Any:
    class Gan(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.gen = torch.nn.Linear(4, 4)
            self.disc = torch.nn.Linear(4, 1)
            self.seen: list[Any] = []

        def training_step(self, batch: Any, batch_idx: int, optimizer_idx: int) -> Any:
            (x,) = batch
            fake = self.gen(x)
            if optimizer_idx == 0:
                loss = (self.disc(fake) - 1).pow(2).mean()
                self.log("g_loss", loss)
            else:
                loss = self.disc(x).pow(2).mean() + (self.disc(fake.detach()) + 1).pow(2).mean()
                self.log("d_loss", loss, prog_bar=True)
            self.log("loss", loss, on_epoch=True)
            grads = [self.gen.weight.requires_grad, self.disc.weight.requires_grad]
            self.seen.append(["training_step", batch_idx, int(optimizer_idx), grads, self.trainer.global_step])
            return {"loss": loss, "extra": int(optimizer_idx)}

        def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_idx: int = 0,
                           optimizer_closure: Any = None, on_tpu: bool = False, using_lbfgs: bool = False) -> None:  # fmt: skip
            self.seen.append(["optimizer_step", epoch, batch_idx, int(optimizer_idx)])
            optimizer.step(closure=optimizer_closure)

        def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_idx: int) -> None:
            self.seen.append(["optimizer_zero_grad", epoch, batch_idx, int(optimizer_idx)])
            optimizer.zero_grad()

        def on_before_optimizer_step(self, optimizer: Any, optimizer_idx: int) -> None:
            norm = sum(float(p.grad.norm()) for g in optimizer.param_groups for p in g["params"] if p.grad is not None)
            self.seen.append(["on_before_optimizer_step", int(optimizer_idx), _r(norm)])

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            shape = [sorted(o) if isinstance(o, dict) else repr(o) for o in outputs]
            losses = [_r(o["loss"]) for o in outputs if isinstance(o, dict)]
            lrs = [_r(g["lr"]) for opt in self.trainer.optimizers for g in opt.param_groups]
            self.seen.append(["on_train_batch_end", batch_idx, shape, losses, lrs])

        def configure_optimizers(self) -> Any:
            opt_g = torch.optim.SGD(self.gen.parameters(), lr=0.1, momentum=0.5)
            opt_d = torch.optim.Adam(self.disc.parameters(), lr=0.01)
            if conf == "frequency":
                return [{"optimizer": opt_g, "frequency": 1}, {"optimizer": opt_d, "frequency": 2}]
            if conf == "frequency_schedulers":
                step_g = torch.optim.lr_scheduler.StepLR(opt_g, 1, gamma=0.9)
                epoch_d = torch.optim.lr_scheduler.StepLR(opt_d, 1, gamma=0.5)
                return [
                    {"optimizer": opt_g, "frequency": 2, "lr_scheduler": {"scheduler": step_g, "interval": "step"}},
                    {"optimizer": opt_d, "frequency": 3, "lr_scheduler": epoch_d},
                ]
            if conf == "schedulers":
                return [opt_g, opt_d], [torch.optim.lr_scheduler.StepLR(opt_g, 1, gamma=0.5)]
            return opt_g, opt_d

    return Gan()


def _run(pl: ModuleType, root: Path, conf: str, **flags: Any) -> dict[str, Any]:
    torch.manual_seed(0)
    model = _two_optimizer_module(pl, conf)
    data = DataLoader(TensorDataset(torch.randn(10, 4)), batch_size=2)
    flags = {"max_epochs": 2, **flags}
    trainer = pl.Trainer(
        default_root_dir=str(root), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1, **flags,
    )  # fmt: skip
    trainer.fit(model, data)
    return {
        "calls": model.seen,
        "global_step": trainer.global_step,
        "callback_metrics": {k: _r(v) for k, v in sorted(trainer.callback_metrics.items())},
        "progress_bar_metrics": {k: _r(v) for k, v in sorted(trainer.progress_bar_metrics.items())},
        "weights": {k: [_r(x) for x in v.flatten()[:6]] for k, v in sorted(model.state_dict().items())},
        "lr": [_r(g["lr"]) for opt in trainer.optimizers for g in opt.param_groups],
    }


def two_optimizers(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Generator and discriminator, each stepped on every batch; a scheduler on the first."""
    return _run(pl, root, "schedulers")


def two_optimizers_frequency(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Optimizer dicts with ``frequency`` 1 and 2: one active optimizer per batch."""
    return _run(pl, root, "frequency")


def two_optimizers_accumulate_clip(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Accumulation over 2 batches (5 per epoch: the last window is partial) and norm clipping."""
    return _run(pl, root, "plain", accumulate_grad_batches=2, gradient_clip_val=0.05)


def _tbptt_module(pl: ModuleType) -> Any:
    class Lstm(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.truncated_bptt_steps = 2
            self.lstm = torch.nn.LSTM(3, 4, batch_first=True)
            self.head = torch.nn.Linear(4, 1)
            self.seen: list[Any] = []

        def training_step(self, batch: Any, batch_idx: int, hiddens: Any) -> Any:
            x, y, items = batch
            incoming = None if hiddens is None else [_r(hiddens[0].abs().sum()), hiddens[0].requires_grad]
            out, hiddens = self.lstm(x, hiddens)
            loss = (self.head(out) - y).pow(2).mean() + 0.0 * sum(i.sum() for i in items)
            self.log("loss", loss, on_step=True, on_epoch=True, prog_bar=True)
            shapes = [list(x.shape), [list(i.shape) for i in items]]
            self.seen.append(["training_step", batch_idx, shapes, self.trainer.global_step, incoming])
            return {"loss": loss, "hiddens": hiddens, "n": x.shape[1]}

        def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
            self.seen.append(["optimizer_step", args[1]])
            super().optimizer_step(*args, **kwargs)

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            shape = [sorted(o) for o in outputs] if isinstance(outputs, list) else sorted(outputs)
            self.seen.append(["on_train_batch_end", batch_idx, shape, [_r(o["loss"]) for o in outputs]])

        def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
            # what the previous batch sent (1.9.5 sends before on_train_batch_end, 2.x after it)
            logged = {k: _r(v) for k, v in sorted(self.trainer.logged_metrics.items())}
            self.seen.append(["on_train_batch_start", batch_idx, logged])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Lstm()


def _tbptt_two_optimizers_module(pl: ModuleType) -> Any:
    base = type(_tbptt_module(pl))

    class LstmTwoOptimizers(base):  # type: ignore[misc, valid-type]
        def training_step(self, batch: Any, batch_idx: int, optimizer_idx: int, hiddens: Any) -> Any:
            output = super().training_step(batch, batch_idx, hiddens)
            self.seen.append(["optimizer_idx", int(optimizer_idx), self.lstm.weight_ih_l0.requires_grad])
            return output

        def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_idx: int = 0,
                           optimizer_closure: Any = None, on_tpu: bool = False, using_lbfgs: bool = False) -> None:  # fmt: skip
            self.seen.append(["optimizer_step", batch_idx, int(optimizer_idx)])
            optimizer.step(closure=optimizer_closure)

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            shape = [[sorted(o) for o in row] for row in outputs]
            self.seen.append(["on_train_batch_end", batch_idx, shape])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.lstm.parameters(), lr=0.1), torch.optim.Adam(self.head.parameters(), lr=0.01)

    return LstmTwoOptimizers()


def _tbptt_manual_module(pl: ModuleType) -> Any:
    base = type(_tbptt_module(pl))

    class LstmManual(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch: Any, batch_idx: int, hiddens: Any) -> Any:
            output = super().training_step(batch, batch_idx, hiddens)
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(output["loss"])
            opt.step()
            return output

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.seen.append(["on_train_batch_end", batch_idx, _shape_of(outputs)])

    return LstmManual()


def _shape_of(value: Any) -> Any:
    """The structure of a hook's ``outputs``: dict keys and list nesting, tensors as "tensor"."""
    if isinstance(value, dict):
        return {k: _shape_of(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_shape_of(v) for v in value]
    return "tensor" if isinstance(value, torch.Tensor) else value


def _collate(samples: list[Any]) -> list[Any]:
    x = torch.stack([s[0] for s in samples])
    y = torch.stack([s[1] for s in samples])
    return [x, y, [s[0][:, 0] for s in samples]]  # a list of per-sample sequences, split along their time too


def _run_tbptt(pl: ModuleType, root: Path, two_optimizers: bool = False, **flags: Any) -> dict[str, Any]:
    torch.manual_seed(0)
    if flags.pop("manual", False):
        model = _tbptt_manual_module(pl)
    else:
        model = _tbptt_two_optimizers_module(pl) if two_optimizers else _tbptt_module(pl)
    data = TensorDataset(torch.randn(6, 5, 3), torch.randn(6, 5, 1))  # 5 time steps: splits of 2, 2, 1
    trainer = pl.Trainer(
        default_root_dir=str(root), max_epochs=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1, **flags,
    )  # fmt: skip
    trainer.fit(model, DataLoader(data, batch_size=2, collate_fn=_collate))
    return {
        "calls": model.seen,
        "global_step": trainer.global_step,
        "callback_metrics": {k: _r(v) for k, v in sorted(trainer.callback_metrics.items())},
        "weights": {k: [_r(x) for x in v.flatten()[:6]] for k, v in sorted(model.state_dict().items())},
    }


def tbptt_lstm(pl: ModuleType, root: Path) -> dict[str, Any]:
    """truncated_bptt_steps=2 on sequences of 5 steps: 3 splits, hiddens carried, 3 steps a batch."""
    return _run_tbptt(pl, root)


def tbptt_lstm_accumulate(pl: ModuleType, root: Path) -> dict[str, Any]:
    """The same with accumulate_grad_batches=2: the splits of a window accumulate, one step at its end."""
    return _run_tbptt(pl, root, accumulate_grad_batches=2)


def tbptt_two_optimizers(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Both at once: per split, each optimizer in turn, with the split's hiddens."""
    return _run_tbptt(pl, root, two_optimizers=True)


def tbptt_manual(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Manual optimization: the module steps its own optimizer once per split, hiddens carried."""
    return _run_tbptt(pl, root, manual=True)


def two_optimizers_frequency_schedulers(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Frequencies 2 and 3 (5 batches an epoch, 3 epochs) with a step and an epoch scheduler:
    1.9.5 steps only the schedulers of the optimizer active on the batch."""
    return _run(pl, root, "frequency_schedulers", max_epochs=3)


SCENARIOS_1X: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {
    "two_optimizers": two_optimizers,
    "two_optimizers_frequency": two_optimizers_frequency,
    "two_optimizers_accumulate_clip": two_optimizers_accumulate_clip,
    "two_optimizers_frequency_schedulers": two_optimizers_frequency_schedulers,
    "tbptt_lstm": tbptt_lstm,
    "tbptt_lstm_accumulate": tbptt_lstm_accumulate,
    "tbptt_two_optimizers": tbptt_two_optimizers,
    "tbptt_manual": tbptt_manual,
}


def record(names: list[str], scenarios: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] | None = None) -> None:
    """Run the named 1.x scenarios (all when empty; ``scenarios`` defaults to this module's) under
    Lightning 1.9.5 and write their JSON."""
    scenarios = SCENARIOS_1X if scenarios is None else scenarios
    import pytorch_lightning as pl

    if not pl.__version__.startswith("1."):
        raise SystemExit(f"these are Lightning 1.x references; this python has {pl.__version__}")
    REFERENCE_1X_DIR.mkdir(exist_ok=True)
    for name in names or sorted(scenarios):
        with tempfile.TemporaryDirectory(prefix=f"pl1x-{name}-") as root:
            observed = scenarios[name](pl, Path(root))
        document = {
            "scenario": name,
            "recorded_with": {"pytorch_lightning": pl.__version__, "torch": torch.__version__.split("+")[0]},
            "observed": observed,
        }
        path = REFERENCE_1X_DIR / f"{name}.json"
        path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    record(sys.argv[1:])
