"""A compiled LightningModule fitted with DDP, for tests/integration/local/test_compile_ddp.py.

Run as ``launch --nproc-per-node 2 compile_fit.py --out DIR [--backend aot_eager]``. Each rank
writes ``result_rank{R}.json``: what the Trainer holds (module, DDP wrapper), how many graphs
dynamo handed to the backend on this rank, the fallback warnings, the logged metrics and the
final weights; rank 0 writes ``final.ckpt``. The data is not shuffled, so the two ranks' batches
together are the batches of a one-process run with twice the batch size (``fit_in_one_process``).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl

BATCH_PER_RANK = 4


class CountingBackend:
    """``backend`` as given, counting the graphs dynamo compiles with it."""

    def __init__(self, backend: str) -> None:
        from torch._dynamo.backends.registry import lookup_backend

        self.compile = lookup_backend(backend)
        self.graphs = 0

    def __call__(self, graph_module: torch.fx.GraphModule, example_inputs: Any) -> Any:
        self.graphs += 1
        return self.compile(graph_module, example_inputs)


def dataset(n: int = 64) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [3.0], [0.5]]) + 0.1 * torch.randn(n, 1, generator=g))


class CompiledRegression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        self.started_on: list[str] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss, sync_dist=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y), sync_dist=True)

    def on_train_start(self) -> None:
        self.started_on.append(type(self).__name__)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def fit_in_one_process(epochs: int) -> list[list[float]]:
    """The same training in one eager process with the batches of both ranks together."""
    torch.manual_seed(0)
    model = CompiledRegression()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(model, DataLoader(dataset(), batch_size=2 * BATCH_PER_RANK))
    return [p.detach().flatten().tolist() for p in model.parameters()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--backend", default="aot_eager")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    model = CompiledRegression()
    backend = CountingBackend(args.backend)
    trainer = pl.Trainer(
        accelerator="cpu", devices="auto", strategy="ddp", max_epochs=args.epochs, num_sanity_val_steps=0,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, logger=False,
        default_root_dir=os.environ.get("FULMEN_RUN_DIR") or str(out / "root"),
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(torch.compile(model, backend=backend), DataLoader(dataset(), batch_size=BATCH_PER_RANK),
                    DataLoader(dataset(16), batch_size=BATCH_PER_RANK))  # fmt: skip
    trainer.save_checkpoint(out / "final.ckpt")
    result = {
        "global_rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "global_step": trainer.global_step,
        "lightning_module_is_original": trainer.lightning_module is model,
        "model_type": type(trainer.model).__name__,
        "wrapped_is_original": getattr(getattr(trainer.model, "module", None), "module", None) is model,
        "started_on": model.started_on,
        "graphs": backend.graphs,
        "fallback_warnings": [str(w.message) for w in caught if "torch.compile could not compile" in str(w.message)],
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "weights": [p.detach().flatten().tolist() for p in model.parameters()],
    }
    (out / f"result_rank{trainer.global_rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
