"""Keras 3: ModelCheckpoint every epoch, a stop at the end of the epoch on SIGTERM, and
initial_epoch from the checkpoint's name on resume (docs/EXAMPLES.md).

    KERAS_BACKEND=torch trainctl launch --checkpoint-dir ckpt \
        --resume-template '--resume {checkpoint}' -- python train.py --epochs 20
"""

import argparse
import os
import re
import signal

import keras
import numpy as np


class StopOnSigterm(keras.callbacks.Callback):
    """SIGTERM: finish this epoch (ModelCheckpoint saves it), then stop. Keep an epoch shorter
    than trainctl's grace period (--grace-seconds)."""

    def __init__(self):
        super().__init__()
        self.asked = False
        signal.signal(signal.SIGTERM, lambda signum, frame: setattr(self, "asked", True))

    def on_epoch_end(self, epoch, logs=None):
        if self.asked:
            self.model.stop_training = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--checkpoint-dir", default="ckpt")
    parser.add_argument("--resume", metavar="CHECKPOINT")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(2048, 16)).astype("float32")
    y = np.sin(x.sum(axis=1, keepdims=True))
    if args.resume:  # model.07.keras: epochs 1..7 are done
        model = keras.models.load_model(args.resume)
        initial_epoch = int(re.search(r"model\.(\d+)\.keras$", args.resume).group(1))
    else:
        model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="tanh"),
                                  keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.AdamW(1e-2), loss="mse")
        initial_epoch = 0
    os.makedirs(args.checkpoint_dir, exist_ok=True)
    model.fit(x, y, batch_size=64, epochs=args.epochs, initial_epoch=initial_epoch,
              validation_split=0.2, verbose=2,
              callbacks=[keras.callbacks.ModelCheckpoint(
                             os.path.join(args.checkpoint_dir, "model.{epoch:02d}.keras")),
                         StopOnSigterm()])


if __name__ == "__main__":
    main()
