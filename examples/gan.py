"""A GAN with manual optimization and two optimizers.

The generator turns 8-dimensional noise into numbers; the discriminator tells them apart from
samples of the target distribution, a Gaussian with mean 3 and standard deviation 0.5. Each
training step updates the discriminator, then the generator, with the optimizer calls written
out (``automatic_optimization = False``): ``self.optimizers()``, ``self.manual_backward(loss)``,
``toggle_optimizer`` / ``untoggle_optimizer`` so the generator step only computes generator
gradients. At the end the script compares the generated samples with the target.

    python examples/gan.py
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl

NOISE_DIM = 8
TARGET_MEAN, TARGET_STD = 3.0, 0.5


class GAN(pl.LightningModule):
    def __init__(self, hidden: int = 32, lr: float = 2e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = nn.Sequential(nn.Linear(NOISE_DIM, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))
        self.discriminator = nn.Sequential(nn.Linear(1, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        (real,) = batch
        opt_g, opt_d = self.optimizers()
        z = torch.randn(real.shape[0], NOISE_DIM, device=self.device)
        ones = torch.ones(real.shape[0], 1, device=self.device)
        zeros = torch.zeros_like(ones)

        # discriminator: real -> 1, generated -> 0
        self.toggle_optimizer(opt_d)
        fake = self(z).detach()
        d_loss = F.binary_cross_entropy_with_logits(self.discriminator(real), ones) + \
            F.binary_cross_entropy_with_logits(self.discriminator(fake), zeros)  # fmt: skip
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        self.untoggle_optimizer(opt_d)

        # generator: make the discriminator answer 1
        self.toggle_optimizer(opt_g)
        g_loss = F.binary_cross_entropy_with_logits(self.discriminator(self(z)), ones)
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        self.log_dict({"d_loss": d_loss, "g_loss": g_loss}, prog_bar=True)

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list]:
        betas = (0.5, 0.999)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)
        return [opt_g, opt_d], []

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self(torch.randn(n, NOISE_DIM, device=self.device)).squeeze(1)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="Train a 1-d GAN with manual optimization.")
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    pl.seed_everything(args.seed)
    real = TARGET_MEAN + TARGET_STD * torch.randn(8192, 1, generator=torch.Generator().manual_seed(args.seed))
    loader = DataLoader(TensorDataset(real), batch_size=128, shuffle=True)

    model = GAN()
    before = model.sample(10000)
    trainer = pl.Trainer(max_epochs=args.max_epochs, log_every_n_steps=16)
    trainer.fit(model, loader)
    after = model.sample(10000)

    mean, std = after.mean().item(), after.std().item()
    print(f"\nLogs: {trainer.log_dir}")
    print(f"Generated samples before training: mean {before.mean().item():.2f}, std {before.std().item():.2f}")
    print(f"Final generated samples: mean {mean:.2f} (target {TARGET_MEAN:.2f}), std {std:.2f} (target {TARGET_STD:.2f})")
    return {"mean": mean, "std": std}


if __name__ == "__main__":
    main()
