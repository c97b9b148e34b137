"""HF Trainer that saves on SIGTERM and resumes with resume_from_checkpoint (docs/EXAMPLES.md).

    trainctl launch --checkpoint-dir out --resume-template '--resume {checkpoint}' \
        -- python train.py --max-steps 120
"""

import argparse
import signal

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)


class SaveOnSigterm(TrainerCallback):
    """SIGTERM (trainctl stop, a spot notice, Slurm's warning): save this step, then stop."""

    def __init__(self):
        self.asked = False
        signal.signal(signal.SIGTERM, lambda signum, frame: setattr(self, "asked", True))

    def on_step_end(self, args, state, control, **kwargs):
        if self.asked:
            control.should_save = control.should_training_stop = True
        return control


class Synthetic(torch.utils.data.Dataset):
    """Made on the fly: no download. The label is whether token 7 is in the sequence."""

    def __init__(self, count, seed):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, 50, (count, 16), generator=generator)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        ids = self.ids[index]
        return {"input_ids": ids, "labels": int((ids == 7).any())}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=120)
    parser.add_argument("--output-dir", default="out")
    parser.add_argument("--resume", metavar="CHECKPOINT")
    args = parser.parse_args()
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, num_labels=2)
    model = BertForSequenceClassification(config)
    training = TrainingArguments(
        output_dir=args.output_dir, max_steps=args.max_steps, per_device_train_batch_size=16,
        learning_rate=1e-3, logging_steps=10, eval_strategy="steps", eval_steps=40,
        save_steps=40, save_total_limit=3, report_to=[], use_cpu=True, seed=0,
        disable_tqdm=False)
    trainer = Trainer(model=model, args=training, train_dataset=Synthetic(2048, 0),
                      eval_dataset=Synthetic(256, 1), callbacks=[SaveOnSigterm()])
    trainer.train(resume_from_checkpoint=args.resume)


if __name__ == "__main__":
    main()
