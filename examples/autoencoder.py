"""An autoencoder, with the ways of calling ``self.log``.

The data are 32-dimensional points that really live on a 4-dimensional curved surface, plus a
little noise: ``x = tanh(z @ A) @ B + noise`` with a 4-dimensional ``z``. An encoder squeezes
each point to 4 numbers and a decoder rebuilds it; if the network finds the surface, the
reconstruction error drops close to the noise level. For scale, the script prints the error of
the best constant guess (predicting the mean point).

What ``self.log`` does here:
- ``self.log("train_loss", loss, prog_bar=True)``: on the progress bar and in the logger every
  ``log_every_n_steps`` steps (training default: ``on_step=True, on_epoch=False``).
- ``self.log("train_mse_epoch_avg", ..., on_step=False, on_epoch=True)``: averaged over the epoch.
- ``self.log_dict({...})`` in validation: epoch averages weighted by batch size (validation
  default: ``on_epoch=True``).

    python examples/autoencoder.py
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl

DIM, LATENT = 32, 4


def make_manifold_data(n: int, generator: torch.Generator) -> TensorDataset:
    """``n`` points near a fixed 4-dimensional curved surface in 32 dimensions."""
    shape = torch.Generator().manual_seed(0)  # the same surface for every split
    a = torch.randn(LATENT, 16, generator=shape)
    b = torch.randn(16, DIM, generator=shape) / 4.0
    z = torch.randn(n, LATENT, generator=generator)
    x = torch.tanh(z @ a) @ b + 0.05 * torch.randn(n, DIM, generator=generator)
    return TensorDataset(x)


class AutoEncoder(pl.LightningModule):
    def __init__(self, hidden: int = 64, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = nn.Sequential(nn.Linear(DIM, hidden), nn.GELU(), nn.Linear(hidden, LATENT))
        self.decoder = nn.Sequential(nn.Linear(LATENT, hidden), nn.GELU(), nn.Linear(hidden, DIM))
        self.example_input_array = torch.zeros(1, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        (x,) = batch
        loss = F.mse_loss(self(x), x)
        self.log("train_loss", loss, prog_bar=True)
        self.log("train_mse_epoch_avg", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        (x,) = batch
        reconstruction = self(x)
        self.log_dict(
            {
                "val_mse": F.mse_loss(reconstruction, x),
                "val_mae": (reconstruction - x).abs().mean(),
            },
            prog_bar=True,
            batch_size=x.shape[0],
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="Train an autoencoder on points near a 4-d surface.")
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    pl.seed_everything(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    train_set, val_set = make_manifold_data(4096, generator), make_manifold_data(1000, generator)
    train = DataLoader(train_set, batch_size=64, shuffle=True)
    val = DataLoader(val_set, batch_size=250)  # the last batch is smaller: batch_size weighting matters

    model = AutoEncoder()
    trainer = pl.Trainer(max_epochs=args.max_epochs, log_every_n_steps=16)
    trainer.fit(model, train, val)

    (x_val,) = val_set.tensors
    baseline = F.mse_loss(x_val.mean(dim=0, keepdim=True).expand_as(x_val), x_val).item()
    val_mse = float(trainer.callback_metrics["val_mse"])
    print(f"\nLogs: {trainer.log_dir}")
    print(f"Final validation reconstruction MSE: {val_mse:.4f} (predicting the mean point: {baseline:.4f})")
    return {"val_mse": val_mse, "baseline_mse": baseline}


if __name__ == "__main__":
    main()
