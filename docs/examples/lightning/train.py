"""Lightning: save on SIGTERM, resume with fit(ckpt_path=...) (docs/EXAMPLES.md).

    trainctl launch --checkpoint-dir ckpt --resume-template '--resume {checkpoint}' \
        -- python train.py --max-steps 600
"""

import argparse

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException


class SaveOnSigterm(Callback):
    """Lightning turns SIGTERM into SIGTERMException at the end of the batch; save there."""

    def __init__(self, folder):
        self.folder = folder

    def on_exception(self, trainer, pl_module, exception):
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(f"{self.folder}/step={trainer.global_step}.ckpt")


class Regression(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(),
                                       torch.nn.Linear(32, 1))

    def training_step(self, batch, index):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 16, generator=generator)
    dataset = torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True).sin())
    return torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, generator=generator)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--checkpoint-dir", default="ckpt")
    parser.add_argument("--resume", metavar="CHECKPOINT")
    args = parser.parse_args()
    L.seed_everything(0)
    trainer = L.Trainer(
        max_steps=args.max_steps, accelerator="cpu", log_every_n_steps=10, logger=False,
        callbacks=[ModelCheckpoint(dirpath=args.checkpoint_dir, every_n_train_steps=100,
                                   save_top_k=-1, filename="{step}"),
                   SaveOnSigterm(args.checkpoint_dir), TQDMProgressBar(refresh_rate=10)])
    trainer.fit(Regression(), data(), ckpt_path=args.resume)


if __name__ == "__main__":
    main()
