"""How lightning_2_6_6_*.ckpt were made (run with pytorch-lightning==2.6.6, torch 2.13 CPU).

Not a test and not a dependency: fulmen's tests only read the files. The model and data
match ``tests/runtime/test_checkpoint_lightning.py``.

    python make_lightning_checkpoints.py OUT_DIR
    # OUT_DIR/ckpts/last.ckpt         -> lightning_2_6_6_epoch_end.ckpt (end of epoch 1, step 8)
    # OUT_DIR/steps/epoch=1-step=6.ckpt -> lightning_2_6_6_mid_epoch.ckpt (epoch 1, 2 of 4 batches)
"""

import sys

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Plain(pl.LightningModule):
    def __init__(self, hidden: int = 8, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


if __name__ == "__main__":
    out = sys.argv[1]
    pl.seed_everything(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    y = x.sum(1, keepdim=True)
    train = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    val = DataLoader(TensorDataset(x, y), batch_size=16)
    callbacks = [
        ModelCheckpoint(dirpath=out + "/ckpts", monitor="val_loss", save_last=True),
        ModelCheckpoint(dirpath=out + "/steps", every_n_train_steps=6, save_top_k=-1),
    ]
    trainer = pl.Trainer(max_epochs=2, callbacks=callbacks, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=out, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(Plain(), train, val)
