"""A tiny fit for the local-launcher acceptance tests and bench/ddp_startup.py.

Runs unchanged under ``launch --nproc-per-node 2``, ``torchrun --nproc-per-node 2`` and
``python ddp_fit.py --devices 2``. Each rank writes what the tests check into ``--out``:
``progress_rank{R}.json`` after every step (pid, global step), ``prepare_data.txt`` (one line
per call), ``result_rank{R}.json`` at the end (ranks, the sample indices it trained on, the
synced metric, final weights).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

import fulmen as pl


class IndexedRegression(Dataset):
    """y = x @ w + noise, fixed by seed; items carry their index so shards can be checked."""

    def __init__(self, n: int = 64) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 3.0, 0.5]) + 0.1 * torch.randn(n, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        return i, self.x[i], self.y[i]


class Regression(pl.LightningModule):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.args = args
        self.out = Path(args.out)
        self.seen: list[int] = []

    def prepare_data(self) -> None:
        with (self.out / "prepare_data.txt").open("a") as f:
            f.write(f"{os.environ.get('RANK', '0')}\n")

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        idx, x, y = batch
        self.seen.extend(int(i) for i in idx)
        loss = torch.nn.functional.mse_loss(self.layer(x).squeeze(-1), y)
        self.log("rank_value", float(self.global_rank), sync_dist=True, on_step=False, on_epoch=True)
        if self.args.step_sleep:
            time.sleep(self.args.step_sleep)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):  # type: ignore[no-untyped-def]
        progress = {"pid": os.getpid(), "global_step": self.trainer.global_step, "epoch": self.current_epoch}
        tmp = self.out / f".progress_rank{self.global_rank}.tmp"
        tmp.write_text(json.dumps(progress))
        os.replace(tmp, self.out / f"progress_rank{self.global_rank}.json")
        a = self.args
        if (a.kill_rank == self.global_rank and self.trainer.global_step == a.kill_at_step
                and os.environ.get("FULMEN_RESTART_COUNT", "0") == "0"):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_end(self) -> None:
        self.gathered = self.all_gather(torch.tensor([float(self.global_rank)])).flatten().tolist()
        self.broadcast_pid = self.trainer.strategy.broadcast(os.getpid(), src=0)

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(self.parameters(), lr=0.05)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(IndexedRegression(), batch_size=4, shuffle=True, num_workers=self.args.workers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--devices", default="auto")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--step-sleep", type=float, default=0.0)
    parser.add_argument("--kill-rank", type=int, default=-1)
    parser.add_argument("--kill-at-step", type=int, default=-1)
    args = parser.parse_args()
    devices = args.devices if args.devices == "auto" else int(args.devices)
    Path(args.out).mkdir(parents=True, exist_ok=True)

    pl.seed_everything(0)
    model = Regression(args)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp",
        max_epochs=args.epochs,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=os.environ.get("FULMEN_RUN_DIR") or str(Path(args.out) / "root"),
    )
    trainer.fit(model)
    result = {
        "global_rank": trainer.global_rank,
        "local_rank": trainer.local_rank,
        "node_rank": trainer.node_rank,
        "world_size": trainer.world_size,
        "is_global_zero": trainer.is_global_zero,
        "global_step": trainer.global_step,
        "seen": model.seen,
        "rank_value": float(trainer.callback_metrics["rank_value"]),
        "weights": [p.detach().flatten().tolist() for p in model.parameters()],
        "log_dir": trainer.log_dir,
        "gathered": model.gathered,
        "broadcast_pid": model.broadcast_pid,
    }
    (Path(args.out) / f"result_rank{trainer.global_rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
