"""A script written for Lightning 0.x/1.x, unchanged apart from ``import fulmen as pl``.

It uses what that era's scripts used and Lightning 2 dropped: a GAN whose ``training_step``
takes ``optimizer_idx`` (two optimizers, automatic optimization), an LSTM trained with
truncated backprop through time (``truncated_bptt_steps`` and ``hiddens``), and test_tube's
``Experiment`` passed as ``Trainer(experiment=...)``. fulmen runs it and warns once per legacy
spelling with the modern one. Data is made here (no downloads); a run takes a few seconds on CPU.

    python examples/seeds_era.py            # logs under ./seeds_logs/<name>/version_N
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl

try:  # the seeds used test_tube's Experiment; fulmen has its own when test_tube is not installed
    from test_tube import Experiment
except ImportError:
    from fulmen.compat import Experiment


class GAN(pl.LightningModule):
    """Learns a 1-D Gaussian N(3, 0.5) from noise: generator and discriminator take turns."""

    def __init__(self, hparams: argparse.Namespace) -> None:
        super().__init__()
        self.save_hyperparameters(hparams)
        self.generator = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
        self.discriminator = nn.Sequential(nn.Linear(1, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))

    def training_step(self, batch, batch_idx, optimizer_idx):
        (real,) = batch
        noise = torch.randn(real.shape[0], 4)
        loss_fn = nn.functional.binary_cross_entropy_with_logits
        ones, zeros = torch.ones(real.shape[0], 1), torch.zeros(real.shape[0], 1)
        if optimizer_idx == 0:  # generator: fool the discriminator
            loss = loss_fn(self.discriminator(self.generator(noise)), ones)
            self.log("g_loss", loss)
        else:  # discriminator: tell real from generated
            fake = self.generator(noise).detach()
            loss = (loss_fn(self.discriminator(real), ones) + loss_fn(self.discriminator(fake), zeros)) / 2
            self.log("d_loss", loss)
        return loss

    def configure_optimizers(self):
        lr = self.hparams.lr
        return [torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999)),
                torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))]


class SineLSTM(pl.LightningModule):
    """Predicts the next value of noisy sines, 40 steps long, trained 10 steps at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.truncated_bptt_steps = 10
        self.lstm = nn.LSTM(1, 16, batch_first=True)
        self.head = nn.Linear(16, 1)

    def training_step(self, batch, batch_idx, hiddens):
        x, y = batch
        out, hiddens = self.lstm(x, hiddens)
        loss = nn.functional.mse_loss(self.head(out), y)
        self.log("lstm_loss", loss)
        return {"loss": loss, "hiddens": hiddens}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.02)


def sines(n: int, length: int) -> TensorDataset:
    phase = torch.rand(n, 1) * 2 * math.pi
    t = torch.arange(length + 1).float() * 0.3
    wave = torch.sin(phase + t) + 0.05 * torch.randn(n, length + 1)
    return TensorDataset(wave[:, :-1, None], wave[:, 1:, None])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--save-dir", default="seeds_logs")
    hparams = parser.parse_args()
    pl.seed_everything(7)

    exp = Experiment(save_dir=hparams.save_dir, name="gan")
    exp.argparse(hparams)
    real = TensorDataset(3.0 + 0.5 * torch.randn(1024, 1))
    gan = GAN(hparams)
    trainer = pl.Trainer(experiment=exp, max_nb_epochs=hparams.epochs, weights_summary=None,
                         show_progress_bar=False)
    trainer.fit(gan, DataLoader(real, batch_size=64, shuffle=True))
    samples = gan.generator(torch.randn(2000, 4)).detach()

    lstm = SineLSTM()
    trainer = pl.Trainer(max_nb_epochs=8, weights_summary=None, show_progress_bar=False, logger=False,
                         checkpoint_callback=False)
    data = sines(256, 40)
    before = nn.functional.mse_loss(torch.zeros_like(data.tensors[1]), data.tensors[1]).item()
    trainer.fit(lstm, DataLoader(data, batch_size=32, shuffle=True))
    with torch.no_grad():
        out, _ = lstm.lstm(data.tensors[0])
        after = nn.functional.mse_loss(lstm.head(out), data.tensors[1]).item()

    print(f"Experiment folder: {exp.get_logdir()}")
    print(f"GAN sample mean: {samples.mean().item():.3f} (target 3.0)")
    print(f"GAN sample std: {samples.std().item():.3f} (target 0.5)")
    print(f"LSTM next-step MSE: {after:.4f} (predicting zero: {before:.4f})")


if __name__ == "__main__":
    main()
