"""A 1.x module with two optimizers (``training_step(batch, batch_idx, optimizer_idx)``) that
writes each rank's final weights to ``argv[1]/rank<N>.json``: the same data under 2-rank DDP
(batch 4 per rank) and in one process (batch 8) must give the same weights, since DDP averages
the gradients of the two halves (issue #11: several optimizers under DDP)."""

import json
import os
import sys

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl


class TwoHeads(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Linear(3, 1)
        self.b = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx, optimizer_idx):  # type: ignore[no-untyped-def]
        x, y = batch
        head = self.a if optimizer_idx == 0 else self.b
        return torch.nn.functional.mse_loss(head(x), y)

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(self.a.parameters(), lr=0.1), torch.optim.SGD(self.b.parameters(), lr=0.05)


if __name__ == "__main__":
    out, batch_size = sys.argv[1], int(sys.argv[2])
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(32, 3, generator=generator)
    data = TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3)
    model = TwoHeads()
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(model, DataLoader(data, batch_size=batch_size))
    weights = {k: v.tolist() for k, v in model.state_dict().items()}
    with open(os.path.join(out, f"rank{trainer.global_rank}.json"), "w") as f:
        json.dump({"weights": weights, "global_step": trainer.global_step, "world": trainer.world_size}, f)
