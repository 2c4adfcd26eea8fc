"""A tiny deterministic DDP training script for the SLURM acceptance tests.

launch --cluster slurm --nodes N --nproc-per-node D train_tiny.py --nodes N --devices D [--epochs E]
         [--step-sleep S]

Prints (to each rank's log): one START line per run with the rank layout and the step it
starts at, a STEP line per optimizer step on rank 0, and at the end, on rank 0, saves the final
weights to <run dir>/final_weights.pt and prints the mean loss of each epoch of this run.
"""

import argparse
import json
import os
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl

parser = argparse.ArgumentParser()
parser.add_argument("--nodes", type=int, default=1)
parser.add_argument("--devices", type=int, default=1)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--step-sleep", type=float, default=0.0)
args = parser.parse_args()


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        self.epoch_losses: list[float] = []
        self._sum = 0.0
        self._count = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        self._sum += float(loss.detach())
        self._count += 1
        return loss

    def on_train_start(self) -> None:
        t = self.trainer
        print("START " + json.dumps(dict(
            rank=t.global_rank, local_rank=t.local_rank, node_rank=t.node_rank, world_size=t.world_size,
            node=os.environ.get("SLURMD_NODENAME"), restart=int(os.environ.get("FULMEN_RESTART_COUNT", 0)),
            global_step=t.global_step, epoch=t.current_epoch, time=time.time(),
        )), flush=True)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.trainer.is_global_zero:
            print(f"STEP {self.trainer.global_step} at {time.time():.3f}", flush=True)
        if args.step_sleep:
            time.sleep(args.step_sleep)

    def on_train_epoch_end(self) -> None:
        if self._count:
            self.epoch_losses.append(self._sum / self._count)
        self._sum, self._count = 0.0, 0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.5)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(1234)
        x = torch.randn(96, 8, generator=g)
        y = x @ torch.linspace(-1.0, 1.0, 8).unsqueeze(1)
        return DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)


pl.seed_everything(7)
model = Tiny()
trainer = pl.Trainer(
    accelerator="cpu",
    devices=args.devices,
    num_nodes=args.nodes,
    strategy="ddp" if args.devices * args.nodes > 1 else "auto",
    max_epochs=args.epochs,
    enable_progress_bar=False,
    enable_model_summary=False,
    log_every_n_steps=1,
)
trainer.fit(model)
if trainer.is_global_zero:
    run_dir = os.environ["FULMEN_RUN_DIR"]
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, os.path.join(run_dir, "final_weights.pt"))
    print("EPOCH_LOSSES " + json.dumps(model.epoch_losses), flush=True)
    print(f"DONE global_step={trainer.global_step}", flush=True)
