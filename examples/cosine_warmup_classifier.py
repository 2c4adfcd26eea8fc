"""A classifier trained the way large models are: warm-up + cosine LR, clipping, accumulation, bf16.

- **Learning-rate schedule**: linear warm-up for the first 10% of optimizer steps, then cosine
  decay to zero, as a ``LambdaLR`` stepped every optimizer step (``"interval": "step"``).
  ``trainer.estimated_stepping_batches`` gives the total number of optimizer steps.
- **Gradient clipping**: ``Trainer(gradient_clip_val=1.0)`` clips the global gradient norm.
- **Gradient accumulation**: ``Trainer(accumulate_grad_batches=2)``: one optimizer step per two
  batches of 32 (effective batch 64).
- **bf16 mixed precision**: ``Trainer(precision="bf16-mixed")`` runs matmuls in bfloat16 under
  autocast, also on CPU; weights and optimizer state stay in float32.

The task: 8 classes of points on interleaved spirals in 2D, lifted to 16 dimensions, which a
linear model cannot separate. The script prints the LR at a few points of the schedule and the
final test accuracy.

    python examples/cosine_warmup_classifier.py
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl

NUM_CLASSES = 8
DIM = 16


def make_spirals(n: int, generator: torch.Generator) -> TensorDataset:
    """Points on ``NUM_CLASSES`` interleaved spiral arms, embedded in 16-d by a fixed random map."""
    labels = torch.randint(NUM_CLASSES, (n,), generator=generator)
    radius = torch.rand(n, generator=generator) * 0.9 + 0.1
    angle = labels * (2 * math.pi / NUM_CLASSES) + 2.5 * radius + 0.15 * torch.randn(n, generator=generator)
    plane = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    lift = torch.randn(2, DIM, generator=torch.Generator().manual_seed(0))
    return TensorDataset(plane @ lift, labels)


def warmup_cosine(warmup_steps: int, total_steps: int):  # noqa: ANN201 - a LambdaLR factor function
    """LR multiplier: 0 -> 1 linearly over ``warmup_steps``, then cosine 1 -> 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class SpiralClassifier(pl.LightningModule):
    def __init__(self, hidden: int = 128, lr: float = 3e-3, weight_decay: float = 1e-4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Linear(DIM, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, NUM_CLASSES)
        )
        self.lr_history: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)  # bfloat16 under bf16-mixed autocast
        loss = F.cross_entropy(logits.float(), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.lr_history.append(lr)
        self.log("lr", lr, prog_bar=True)

    def _accuracy(self, batch: tuple[torch.Tensor, torch.Tensor], name: str) -> None:
        x, y = batch
        self.log(name, (self(x).argmax(dim=1) == y).float().mean(), prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._accuracy(batch, "val_acc")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._accuracy(batch, "test_acc")

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = self.trainer.estimated_stepping_batches
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(max(1, total // 10), total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="Warm-up + cosine LR, clipping, accumulation and bf16 on CPU.")
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)

    pl.seed_everything(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    train = DataLoader(make_spirals(2048, generator), batch_size=32, shuffle=True)
    val = DataLoader(make_spirals(1024, generator), batch_size=512)
    test = DataLoader(make_spirals(2048, generator), batch_size=512)

    model = SpiralClassifier()
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        precision="bf16-mixed",
        gradient_clip_val=1.0,
        accumulate_grad_batches=2,
        log_every_n_steps=20,
    )
    trainer.fit(model, train, val)
    results = trainer.test(model, test)[0]

    lrs = model.lr_history
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    print(f"\nLearning rate: {lrs[0]:.1e} at the first batch, peak {lrs[peak]:.1e} at batch {peak},"
          f" {lrs[-1]:.1e} at the last batch ({trainer.global_step} optimizer steps for {len(lrs)} batches)")  # fmt: skip
    print(f"Final test accuracy: {results['test_acc']:.3f} (chance level: {1 / NUM_CLASSES:.3f})")
    return {"test_acc": results["test_acc"], "lr_first": lrs[0], "lr_peak": lrs[peak], "lr_last": lrs[-1],
            "global_step": trainer.global_step, "batches": len(lrs)}  # fmt: skip


if __name__ == "__main__":
    main()
