"""Metrics extraction: real logs of real trainers (tests/fixtures/logs, made by the scripts in
tests/fixtures/make_logs with the libraries named in each .json), noise, and sampling."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from trainctl_tui.monitor.metrics import (
    MetricSet,
    MetricsParser,
    Series,
    canonical_name,
    downsample,
    extract_file,
    first_nonfinite,
    strip_ansi,
)
from trainctl_tui.monitor.series import BLOCK

ROOT = Path(__file__).resolve().parent.parent
LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"


def load(name: str) -> tuple[MetricSet, dict]:
    metrics = extract_file(LOGS / f"{name}.log")
    truth = json.loads((LOGS / f"{name}.json").read_text())
    return metrics, truth


def ys(metrics: MetricSet, name: str) -> list[float]:
    return list(metrics.series[name].ys)


def xs(metrics: MetricSet, name: str) -> list[float]:
    return list(metrics.series[name].xs)


def close(got: list[float], want: list[float], rel: float = 1e-3, abs_: float = 0.0) -> bool:
    return len(got) == len(want) and all(
        (math.isnan(g) and math.isnan(w)) or math.isclose(g, w, rel_tol=rel, abs_tol=abs_)
        for g, w in zip(got, want, strict=True)
    )


def fed_live(name: str) -> MetricSet:
    """The same log fed the way monitor.tail.follow hands it over: decoded str lines."""
    metrics = MetricSet()
    data = (LOGS / f"{name}.log").read_bytes().split(b"\n")
    metrics.feed_lines(line.decode("utf-8", "replace").rstrip("\r") for line in data)
    return metrics


# --------------------------------------------------------------------------- real logs


def test_hf_trainer_log_matches_trainer_state_log_history():
    metrics, truth = load("hf_trainer")
    history = truth["log_history"]
    train = [e for e in history if "loss" in e]
    evals = [e for e in history if "eval_loss" in e]
    summary = [e for e in history if "train_runtime" in e][0]

    assert set(metrics.series) == {
        "loss", "grad_norm", "lr", "epoch", "val_loss", "val_accuracy", "eval_runtime",
        "eval_samples_per_second", "eval_steps_per_second", "train_runtime",
        "train_samples_per_second", "train_steps_per_second", "train_loss",
    }
    # The printed dicts carry no step: x is their epoch, so train and eval points line up.
    assert close(xs(metrics, "loss"), [e["epoch"] for e in train])
    assert close(xs(metrics, "val_loss"), [e["epoch"] for e in evals])
    assert close(ys(metrics, "loss"), [e["loss"] for e in train])
    assert close(ys(metrics, "grad_norm"), [e["grad_norm"] for e in train])
    assert close(ys(metrics, "lr"), [e["learning_rate"] for e in train])
    assert close(ys(metrics, "val_loss"), [e["eval_loss"] for e in evals])
    assert close(ys(metrics, "val_accuracy"), [e["eval_accuracy"] for e in evals])
    # the end-of-training average stays apart from the curve of logged losses
    assert close(ys(metrics, "train_loss"), [summary["train_loss"]])
    assert len(metrics.series["epoch"]) == len(train) + len(evals) + 1
    assert metrics.series["loss"].nonfinite == 0


def test_lightning_tqdm_bar_through_a_pipe_matches_metrics_csv():
    metrics, truth = load("lightning_tqdm")
    rows = truth["metrics"]
    val = [r for r in rows if "val_loss" in r]
    epoch_loss = [r["train_loss_epoch"] for r in rows if "train_loss_epoch" in r]
    step_loss = {r["step"]: r["train_loss_step"] for r in rows if "train_loss_step" in r}

    assert set(metrics.series) == {"epoch", "loss", "val_loss", "val_accuracy", "loss_epoch"}
    # a point per batch at epochs done, (step + 1) / 24; the bar rounds to 3 significant digits
    loss = {round(x, 9): y for x, y in zip(xs(metrics, "loss"), ys(metrics, "loss"), strict=True)}
    assert len(loss) == len(metrics.series["loss"]) == 4 * 24
    assert close([loss[round((step + 1) / 24, 9)] for step in step_loss],
                 list(step_loss.values()), rel=5e-3)
    assert close(ys(metrics, "val_loss"), [r["val_loss"] for r in val], rel=5e-3)
    assert close(ys(metrics, "val_accuracy"), [r["val_acc"] for r in val], rel=5e-3)
    assert close(ys(metrics, "loss_epoch"), epoch_loss, rel=5e-3)
    assert close(ys(metrics, "epoch")[:4 * 24], [(step + 1) / 24 for step in range(4 * 24)])


def test_lightning_rich_live_display_matches_metrics_csv():
    metrics, truth = load("lightning_rich")
    rows = truth["metrics"]
    val = [r for r in rows if "val_loss" in r]
    epoch_loss = [r["train_loss_epoch"] for r in rows if "train_loss_epoch" in r]
    step_loss = {r["step"]: r["train_loss_step"] for r in rows if "train_loss_step" in r}

    assert set(metrics.series) == {"epoch", "loss", "val_loss", "val_accuracy", "loss_epoch"}
    # The display redraws its rows with cursor moves; every distinct frame counts once.
    # val_loss starts with the sanity check's value, which the bar shows and the CSV omits.
    assert close(ys(metrics, "val_loss")[1:], [r["val_loss"] for r in val], rel=5e-3)
    assert ys(metrics, "val_loss")[0] == 0.697
    assert len(metrics.series["val_loss"]) == len(val) + 1
    assert close(ys(metrics, "val_accuracy"), [r["val_acc"] for r in val], rel=5e-3)
    assert close(ys(metrics, "loss_epoch"), epoch_loss, rel=5e-3)
    assert math.isclose(ys(metrics, "loss")[-1], step_loss[95.0], rel_tol=5e-3)
    assert ys(metrics, "epoch")[0] == 0 and ys(metrics, "epoch")[-1] == 4
    assert len(metrics.series["loss"]) > 4 * 10  # many refreshes per epoch, none repeated
    # The refreshes spread along x by the bar's batch counter instead of stacking at the
    # epoch; x is where Lightning logged that loss (epochs done = (step + 1) / 24), except
    # for a frame whose counter ran one batch ahead of its postfix (rich refresh lag).
    loss_x = xs(metrics, "loss")
    assert loss_x == sorted(loss_x) and len(set(loss_x)) > 4 * 10
    logged = [(y, step_loss[round(x * 24) - 1])
              for x, y in zip(loss_x, ys(metrics, "loss"), strict=True)
              if round(x * 24) - 1 in step_loss]
    same = sum(math.isclose(shown, truth, rel_tol=5e-3) for shown, truth in logged)
    assert len(logged) >= 15 and same >= len(logged) - 1


@pytest.mark.parametrize("name", ["keras", "keras_pipe"])
def test_keras_progress_bar_and_pipe_output_match_history(name):
    metrics, truth = load(name)
    history = truth["history"]
    epochs = len(history["loss"])

    assert set(metrics.series) == {"loss", "accuracy", "val_loss", "val_accuracy", "epoch"}
    for series in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert xs(metrics, series) == list(range(1, epochs + 1))  # `Epoch N/M` gives x
        assert close(ys(metrics, series), history[series], abs_=6e-5)
    assert ys(metrics, "epoch") == list(range(1, epochs + 1))


def test_nanogpt_log_matches_printed_values_and_ignores_its_config_echo():
    metrics, truth = load("nanogpt")
    iters = truth["printed"]["iter"]
    evals = truth["printed"]["eval"]

    assert set(metrics.series) == {"loss", "val_loss", "time", "mfu"}
    assert xs(metrics, "val_loss") == [e[0] for e in evals]
    assert close(ys(metrics, "val_loss"), [e[2] for e in evals], abs_=6e-5)
    # `step N: train loss` and `iter N: loss` both feed `loss`, at their own steps
    loss = dict(zip(xs(metrics, "loss"), ys(metrics, "loss"), strict=True))
    assert len(metrics.series["loss"]) == len(iters) + len(evals)
    assert math.isclose(loss[iters[-1][0]], iters[-1][1], abs_tol=6e-5)
    assert xs(metrics, "mfu") == [i[0] for i in iters]
    assert ys(metrics, "mfu")[0] == -100.0
    assert close(ys(metrics, "time"), [i[2] for i in iters], abs_=6e-3)


def test_deepspeed_log_gives_steps_lr_throughput_and_timers_without_config_garbage():
    metrics, truth = load("deepspeed")
    steps = truth["steps"]

    assert xs(metrics, "loss") == [s[0] for s in steps]
    assert close(ys(metrics, "loss"), [s[1] for s in steps], abs_=6e-5)
    # `[Rank 0] step=5, skipped=0, lr=[...]` every steps_per_print, plus the initial step=0
    assert xs(metrics, "lr") == [0, 5, 10, 15, 20, 25, 30]
    lr_after = {s[0]: s[2] for s in steps}
    assert close(ys(metrics, "lr")[1:], [lr_after[x] for x in xs(metrics, "lr")[1:]])
    assert xs(metrics, "throughput") == [5, 10, 15, 20, 25, 30]
    # the wall-clock breakdown's `step: 2.41` is a duration, not the step
    assert "time_step" in metrics.series and len(metrics.series["time_step"]) == len(steps)
    assert set(metrics.series) == {
        "loss", "lr", "skipped", "epoch", "micro_step", "throughput",
        "running_avg_samples_per_sec", "mem_allocated", "max_mem_allocated",
        *(f"time_{t}{m}" for t in ("fwd", "bwd", "bwd_inner", "bwd_allreduce", "step")
          for m in ("", "_microstep")),
    }


def test_torchtune_bar_description_matches_disk_logger():
    metrics, truth = load("torchtune")
    logged = {m["step"]: m["loss"] for m in truth["disk_logger"]}

    assert set(metrics.series) == {"loss", "epoch"}
    # epoch 1 redrew one line (a frame per step); epoch 2's bar gave a line per step
    assert xs(metrics, "loss") == sorted(logged) == list(range(1, 25))
    assert ys(metrics, "loss") == [logged[x] for x in xs(metrics, "loss")]
    assert ys(metrics, "epoch") == [1] * 12 + [2] * 12


def test_demo_log_matches_its_checkpoint_metadata():
    metrics, truth = load("demo")
    meta = {int(m["step"]): m for m in truth["checkpoints"]}

    assert set(metrics.series) == {"loss", "lr", "grad_norm", "throughput", "val_loss",
                                   "val_accuracy"}
    assert xs(metrics, "val_loss") == sorted(meta)
    assert close(ys(metrics, "val_loss"), [float(meta[s]["val_loss"]) for s in sorted(meta)],
                 abs_=6e-5)
    lr = dict(zip(xs(metrics, "lr"), ys(metrics, "lr"), strict=True))
    for step, m in meta.items():
        assert math.isclose(lr[step], float(m["lr"]), rel_tol=5e-3)
    assert len(metrics.series["throughput"]) == 30 and xs(metrics, "lr")[0] == 10
    # the final `done: step 300, train loss ..., val loss ...` line repeats, adds nothing
    assert len(metrics.series["val_loss"]) == 3
    assert len(metrics.series["loss"]) == 30 + 3
    assert xs(metrics, "loss") == sorted(xs(metrics, "loss"))


def test_plain_torch_log_keeps_nan_and_ignores_warnings_tracebacks_and_env():
    metrics, truth = load("plain_torch")
    logged = truth["logged"]

    assert set(metrics.series) == {"epoch", "loss", "lr", "grad_norm", "val_loss"}
    loss = metrics.series["loss"]
    assert len(loss) == len(logged["kv"]) + len(logged["json"])
    assert loss.nonfinite == sum(1 for k in logged["kv"] if k[1] == "nan") + sum(
        1 for j in logged["json"] if j["loss"] == "nan")
    bad_x, bad_y = first_nonfinite(loss)
    assert bad_x == 160 and math.isnan(bad_y)
    assert metrics.series["grad_norm"].nonfinite == 3
    assert xs(metrics, "val_loss") == [e[0] for e in logged["eval"]]
    assert close(ys(metrics, "val_loss"), [float(e[1]) for e in logged["eval"]], abs_=6e-5)
    assert ys(metrics, "lr")[-1] == 1e18
    summary = metrics.summary()["loss"]
    assert summary["nonfinite"] == loss.nonfinite and math.isfinite(summary["min"])


@pytest.mark.parametrize("name", sorted(p.stem for p in LOGS.glob("*.log")))
def test_live_feed_of_str_lines_equals_extract_file(name):
    whole = extract_file(LOGS / f"{name}.log")
    small_chunks = extract_file(LOGS / f"{name}.log", chunk=97)
    live = fed_live(name)
    for other in (small_chunks, live):
        assert set(other.series) == set(whole.series)
        for series_name, series in whole.series.items():
            assert list(other.series[series_name].xs) == list(series.xs)
            assert close(list(other.series[series_name].ys), list(series.ys), rel=0)


# --------------------------------------------------------------------------- formats

FORMATS = [
    # HuggingFace Trainer, old and new value styles
    ("{'loss': 0.6931, 'grad_norm': 1.2, 'learning_rate': 5e-05, 'epoch': 0.5}",
     None, {"loss": 0.6931, "grad_norm": 1.2, "lr": 5e-05, "epoch": 0.5}),
    ("{'loss': '0.6943', 'grad_norm': '0.3025', 'learning_rate': '0.0004896', 'epoch': '0.125'}",
     None, {"loss": 0.6943, "grad_norm": 0.3025, "lr": 0.0004896, "epoch": 0.125}),
    ("{'loss': np.float64(0.69), 'grad_norm': tensor(2.5), 'epoch': 1.0}",
     None, {"loss": 0.69, "grad_norm": 2.5, "epoch": 1.0}),
    ("{'loss': tensor(0.5, device='cuda:0'), 'epoch': 1}", None, {"loss": 0.5, "epoch": 1}),
    ("{'eval_loss': 0.7, 'eval_accuracy': 0.5, 'eval_runtime': 0.25, 'epoch': 1.0}",
     None, {"val_loss": 0.7, "val_accuracy": 0.5, "eval_runtime": 0.25, "epoch": 1.0}),
    # tqdm / Lightning postfixes
    # Lightning's epoch index plus the bar's batch counter: epochs done, as HF counts them.
    ("Epoch 0:  50%|█████     | 16/32 [00:01<00:00, 12.3it/s, loss=1.23, v_num=0]",
     None, {"epoch": 0.5, "loss": 1.23}),
    ("Epoch 2: 100%|██████████| 32/32 [00:02<00:00, train_loss_step=0.693, val_loss=0.701]",
     None, {"epoch": 3, "loss": 0.693, "val_loss": 0.701}),
    ("Epoch 1/3  ━━━━━━━━━━━━━━━━ 6/24 0:00:01 • 0:00:00 23.43it/s v_num: 0.000 "
     "train_loss_step: 0.455", None, {"epoch": 1.25, "loss": 0.455}),
    ("| epoch   3 |   200/ 2983 batches | lr 20.00 | ms/batch 45.12 | loss  6.55 | ppl   697.88",
     None, {"epoch": 3 + 200 / 2983, "lr": 20.0, "loss": 6.55, "perplexity": 697.88}),
    ("Epoch 1/3 loss 0.4", None, {"epoch": 1, "loss": 0.4}),  # `1/3` is the epoch itself
    # nanoGPT
    ("iter 10: loss 3.1234, time 12.30ms, mfu 1.20%",
     10, {"loss": 3.1234, "time": 12.3, "mfu": 1.2}),
    ("step 250: train loss 2.1000, val loss 2.2000", 250, {"loss": 2.1, "val_loss": 2.2}),
    # JSON lines, key=value, key: value
    ('{"step": 10, "loss": 1.2}', 10, {"loss": 1.2}),
    ('{"global_step": 7, "train/loss": NaN, "eval/loss": Infinity}',
     7, {"loss": math.nan, "val_loss": math.inf}),
    ("epoch 1 step 200 loss=0.5 lr=1e-4", 200, {"epoch": 1, "loss": 0.5, "lr": 1e-4}),
    ("Step: 100, Loss: 0.5", 100, {"loss": 0.5}),
    ("Iteration 40 | Train Loss: 0.25 | Val Acc: 0.9", 40, {"loss": 0.25, "val_accuracy": 0.9}),
    ("it 3 loss -inf", 3, {"loss": -math.inf}),
    # the bundled demo
    ("step 10/2000 | train loss 0.6931 | lr 3.00e-02 | grad_norm 1.23 | 512.0 samples/s",
     10, {"loss": 0.6931, "lr": 0.03, "grad_norm": 1.23, "throughput": 512.0}),
    ("step 100: train loss 0.5123, val loss 0.5311, val acc 0.812",
     100, {"loss": 0.5123, "val_loss": 0.5311, "val_accuracy": 0.812}),
    # DeepSpeed, torchtune
    ("[2024-05-01 12:00:00,123] [INFO] [logging.py:96:log_dist] [Rank 0] step=10, "
     "skipped=0, lr=[0.0001], mom=[(0.9, 0.999)]", 10, {"skipped": 0, "lr": 0.0001}),
    ("1|10|Loss: 1.2345678: 100%|██████████| 10/10 [00:01<00:00,  9.50it/s]",
     10, {"epoch": 1, "loss": 1.2345678}),
    ("Step 10 | loss:1.5 lr:2e-05 tokens_per_second_per_gpu:1234.5 ",
     10, {"loss": 1.5, "lr": 2e-05, "tokens_per_second_per_gpu": 1234.5}),
    # throughput units
    ("step 5 | loss 1.0 | 2500 tokens/s", 5, {"loss": 1.0, "tokens_per_sec": 2500}),
]


@pytest.mark.parametrize(("line", "step", "values"), FORMATS)
def test_formats_real_trainers_print(line, step, values):
    parsed = MetricsParser().parse_line(line)
    assert parsed is not None
    assert parsed.step == step
    assert set(parsed.values) == set(values)
    for name, value in values.items():
        got = parsed.values[name]
        assert (math.isnan(got) and math.isnan(value)) or got == pytest.approx(value)


def test_keras_epoch_line_steps_the_next_metrics_line():
    parser = MetricsParser()
    assert parser.parse_line("Epoch 3/10") is None
    parsed = parser.parse_line(
        "32/32 ━━━━━━━━━━━━━━━━━━━━ 0s 2ms/step - accuracy: 0.5000 - loss: 0.6931 - "
        "val_accuracy: 0.4500 - val_loss: 0.7000")
    assert parsed.step == 3
    assert parsed.values == {"accuracy": 0.5, "loss": 0.6931, "val_accuracy": 0.45,
                             "val_loss": 0.7, "epoch": 3}


NOISE = [
    "/usr/lib/python3.11/site-packages/torch/nn/modules/loss.py:535: UserWarning: Using a "
    "target size (torch.Size([32])) that is different to the input size: loss 0.5",
    "  warnings.warn(",
    "Traceback (most recent call last):",
    '  File "train.py", line 12, in <module>',
    "    loss = criterion(output, target)  # step 3",
    "        ^^^^^^^^^^^^^^^^",
    "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total)",
    "ValueError: loss: nan",
    "2024-05-01 12:00:00,123 INFO starting run 3 at 12:00:00",
    "[2024-05-01 12:00:00] connecting to 10.0.0.12:29500",
    "MASTER_ADDR=192.168.1.20 MASTER_PORT=29500",
    "torch 2.3.1+cu121, transformers==4.41.2, python 3.11.7",
    "version: 1.2.3",
    "the loss went down after 3 epochs, which is what we expected",
    "Epoch 1/10",
    "Namespace(batch_size=64, lr=0.001, epochs=10, loss='ce')",
    "[INFO] [config.py:678:print]   steps_per_print .............. 5",
    "  lr: 0.001",
    '        "lr": 0.001, ',
    "learning_rate = 1e-3 # with baby networks can afford to go a bit higher",
    "Overriding: max_iters = 200",
    "number of parameters: 10.65M",
    "tokens per iteration will be: 16,384",
    "float16_config ... enabled=False loss_scale=0.0 initial_scale_power=16 hysteresis=2",
    "aio_config .... {'block_size': 1048576, 'queue_depth': 8, 'single_submit': False}",
    " 45%|████▌     | 9/20 [00:03<00:04,  2.61it/s]",
    "Generating train split: 200 examples [00:00, 24258.55 examples/s]",
    "Trainable params: 178",
    "Saving model checkpoint to ./out/checkpoint-500",
    "`Trainer.fit` stopped: `max_epochs=4` reached.",
    "",
    "      ",
]


@pytest.mark.parametrize("line", NOISE)
def test_noise_gives_no_metrics(line):
    assert MetricsParser().parse_line(line) is None


def test_noise_creates_no_series():
    metrics = MetricSet()
    metrics.feed_text("\n".join(NOISE * 3))
    assert metrics.series == {}
    assert metrics.records == 0 and metrics.lines == len(NOISE) * 3


def test_names_are_normalised_so_train_and_eval_share_a_chart():
    for raw in ("loss", "train_loss", "train/loss", "train loss", "loss_step",
                "train_loss_step", "Train Loss", "training_loss"):
        assert canonical_name(raw) == "loss", raw
    for raw in ("eval_loss", "val/loss", "validation_loss", "val loss", "valid_loss",
                "Val Loss", "eval/loss"):
        assert canonical_name(raw) == "val_loss", raw
    assert canonical_name("learning_rate") == "lr"
    assert canonical_name("acc") == canonical_name("train_acc") == "accuracy"
    assert canonical_name("val_acc") == canonical_name("eval_accuracy") == "val_accuracy"
    assert canonical_name("gradient_norm") == "grad_norm"
    assert canonical_name("samples_per_second") == "throughput"
    assert canonical_name("RunningAvgSamplesPerSec") == "running_avg_samples_per_sec"
    assert canonical_name("eval_runtime") == "eval_runtime"


# --------------------------------------------------------------------------- MetricSet


def test_carriage_return_bars_give_a_point_per_frame_whose_counter_advanced():
    metrics = MetricSet()
    line = "".join(f"\rEpoch 0: {i * 10:3d}%|{'█' * i}| {i}/10 [00:0{i}<00:00, "
                   f"loss={1 - i / 20:.2f}]" for i in range(1, 11))
    assert metrics.feed_line(line + "\r\n")
    assert ys(metrics, "loss") == [round(1 - i / 20, 2) for i in range(1, 11)]
    assert xs(metrics, "loss") == [i / 10 for i in range(1, 11)]
    assert metrics.parser.parse_line("loss=0.3\r   \r") .values == {"loss": 0.3}


def test_ansi_colours_and_cursor_codes_are_stripped():
    coloured = ("\x1b[1m32/32\x1b[0m \x1b[32m━━━━\x1b[0m \x1b[1m0s\x1b[0m 2ms/step - "
                "\x1b[3mloss: 0.25\x1b[0m")
    assert strip_ansi(coloured) == "32/32 ━━━━ 0s 2ms/step - loss: 0.25"
    assert strip_ansi("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ a\x08b\x07") == "link ab"
    assert MetricsParser().parse_line(coloured).values == {"loss": 0.25}


def test_rows_of_a_live_display_redrawn_with_cursor_moves_all_count():
    # rich puts the metrics that do not fit on the bar's row on a row below, far indented
    frame = "Epoch {e} ━━━ 3/3 train_loss_step: {l}\n" + " " * 60 + "val_loss: {v}"
    text = frame.format(e=0, l=0.9, v=0.8)
    text += "\r\x1b[2K\x1b[1A\x1b[2K" + frame.format(e=0, l=0.7, v=0.8)
    text += "\r\x1b[2K\x1b[1A\x1b[2K" + frame.format(e=1, l=0.5, v=0.6) + "\n"
    metrics = MetricSet()
    metrics.feed_text(text)
    assert ys(metrics, "loss") == [0.9, 0.7, 0.5]
    assert ys(metrics, "val_loss") == [0.8, 0.6]  # the same row redrawn is not a new point


def test_nan_and_inf_are_kept_counted_and_located():
    metrics = MetricSet()
    metrics.feed_text("step 1 loss=0.5\nstep 2 loss=nan\nstep 3 loss=inf\nstep 4 loss=-inf\n"
                      "step 5 loss=0.25\n{'loss': nan, 'epoch': 1.0}\n")
    loss = metrics.series["loss"]
    assert len(loss) == 6 and loss.nonfinite == 4
    assert math.isnan(ys(metrics, "loss")[1]) and ys(metrics, "loss")[2] == math.inf
    x, y = first_nonfinite(loss)
    assert x == 2 and math.isnan(y)
    assert loss.min == 0.25 and loss.max == 0.5
    summary = metrics.summary()["loss"]
    assert summary == {"count": 6, "last_x": 5.0, "last": summary["last"], "min": 0.25,
                       "max": 0.5, "nonfinite": 4}
    assert math.isnan(summary["last"])
    out = metrics.to_json(all_points=True)
    json.dumps(out, allow_nan=False)  # strict JSON
    assert out["series"]["loss"]["y"][1:4] == ["nan", "inf", "-inf"]
    assert out["series"]["loss"]["first_nonfinite"] == [2.0, "nan"]
    assert first_nonfinite(metrics.series["epoch"]) is None


def test_garbage_bytes_and_invalid_utf8_do_not_break_extraction(tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(
        b"step 1 loss=0.5\n"
        b"\xff\xfe\x00\x01garbage \x80\x81 loss \xc3\x28 3.2 \x00\x00\n"
        b"\x00\x00\x00\x00\x00\x00\n"
        + bytes(range(256)) + b"\n"
        b"step 2 loss=0.4 \xe2\x82 tail\n"
        b"step 3 lo\x00ss=0.3\n"
    )
    metrics = extract_file(log)
    assert set(metrics.series) == {"loss"}
    assert xs(metrics, "loss")[:2] == [1, 2] and ys(metrics, "loss")[:2] == [0.5, 0.4]


def test_a_one_megabyte_line_is_capped_and_its_last_state_kept(tmp_path):
    bar = "".join(f"\r{i % 100:3d}%|{'#' * (i % 40)}| loss={i / 1e6:.6f}" for i in range(40_000))
    assert len(bar) > 1_000_000
    log = tmp_path / "train.log"
    long_line = "x" * 1_500_000 + " loss=2.0"
    log.write_text("step 1 loss=1.0\n" + bar + "\n" + long_line + "\nstep 3 loss=3.0\n")
    metrics = extract_file(log, chunk=64 * 1024)
    assert ys(metrics, "loss") == [1.0, 39_999 / 1e6, 2.0, 3.0]
    live = MetricSet()
    assert live.feed_line(bar)
    assert ys(live, "loss") == [39_999 / 1e6]


def test_a_file_without_newlines_at_all_is_read_in_bounded_memory(tmp_path):
    log = tmp_path / "bar.log"
    with open(log, "w") as handle:
        for i in range(200_000):
            handle.write(f"\r{i}/200000 loss={i}")
    metrics = extract_file(log, chunk=4096)
    # read in pieces, every frame still counts once (the counter advanced each time)
    assert ys(metrics, "loss") == list(range(200_000))


def test_step_carries_to_lines_without_one_and_order_is_used_when_never_given():
    metrics = MetricSet()
    metrics.feed_text("loss=0.9 lr=0.1\nloss=0.8 lr=0.1\nstep 10 loss=0.5\nval_loss=0.6 acc=0.7\n")
    assert xs(metrics, "lr") == [0, 1]
    assert xs(metrics, "loss") == [0, 1, 10]
    assert xs(metrics, "val_loss") == [10] and xs(metrics, "accuracy") == [10]
    # a step that is no step (fractional, negative, inf, nan) is not taken as one
    metrics.feed_text("step 2.5 loss=0.4\nstep -1 loss=0.3\nstep inf loss=0.2\nstep nan loss=0.1\n")
    assert xs(metrics, "loss")[-4:] == [10, 10, 10, 10]


def test_a_redrawn_record_is_not_a_new_point_but_a_repeated_value_at_a_new_step_is():
    metrics = MetricSet()
    metrics.feed_text("{'loss': 0.5, 'epoch': 1.0}\n{'loss': 0.5, 'epoch': 1.0}\n"
                      "step 1 lr=0.1\nstep 2 lr=0.1\nstep 2 lr=0.1\n")
    assert ys(metrics, "loss") == [0.5]
    assert xs(metrics, "lr") == [1, 2]


def test_user_patterns_name_series_and_may_give_the_step():
    metrics = MetricSet(patterns=[r"R(?P<step>\d+) reward=(?P<reward>[-\d.]+)",
                                  r"kl (?P<val_kl>[\d.]+)"])
    metrics.feed_text("R10 reward=-1.5\nkl 0.02\nR20 reward=2\nstep 30 loss=0.1\n")
    assert xs(metrics, "reward") == [10, 20] and ys(metrics, "reward") == [-1.5, 2.0]
    assert xs(metrics, "val_kl") == [10]
    assert xs(metrics, "loss") == [30]  # built-in formats still apply to other lines
    with pytest.raises(ValueError, match="not a valid regex"):
        MetricSet(patterns=["(unclosed"])
    with pytest.raises(ValueError, match="named group"):
        MetricSet(patterns=[r"loss (\d+)"])


def test_last_values_summary_and_json():
    metrics = MetricSet()
    metrics.feed_text("".join(f"step {i} loss={1 / i:.4f} lr=0.001\n" for i in range(1, 1001)))
    assert metrics.last_values() == {"loss": 0.001, "lr": 0.001}
    assert metrics.summary()["loss"] == {"count": 1000, "last_x": 1000.0, "last": 0.001,
                                         "min": 0.001, "max": 1.0, "nonfinite": 0}
    sampled = metrics.to_json(all_points=False, width=50)["series"]["loss"]
    assert len(sampled["x"]) <= 100 and sampled["y"][0] == 1.0
    assert len(metrics.to_json(all_points=True)["series"]["loss"]["x"]) == 1000


def test_series_are_compact_arrays():
    metrics = MetricSet()
    metrics.feed_line("step 1 loss=0.5")
    loss = metrics.series["loss"]
    assert isinstance(loss.xs, array) and loss.xs.typecode == "d"
    assert isinstance(loss.ys, array) and loss.ys.typecode == "d"
    assert loss.last == (1.0, 0.5) and len(loss) == 1


def test_monitor_imports_no_ui_library_and_no_numpy():
    code = ("import sys, trainctl_tui.monitor.metrics as m, trainctl_tui.monitor.index; "
            "print(sorted(k for k in ('textual', 'rich', 'numpy') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- downsample


def wave(n: int) -> tuple[array, array]:
    xs = array("d", range(n))
    ys = array("d", (math.sin(i / 50) + (i % 7) / 10 for i in range(n)))
    return xs, ys


@pytest.mark.parametrize(("n", "width"), [(10_000, 100), (1000, 7), (201, 100), (5, 2)])
def test_downsample_keeps_extremes_bounds_length_and_order(n, width):
    xs, ys = wave(n)
    ys[n // 3] = 50.0
    ys[n // 2] = -50.0
    out_x, out_y = downsample(xs, ys, width)
    assert len(out_x) == len(out_y) <= 2 * width
    assert max(out_y) == 50.0 and min(out_y) == -50.0
    assert out_x == sorted(out_x)
    assert all(ys[int(x)] == y for x, y in zip(out_x, out_y, strict=True))


def test_downsample_small_and_degenerate_inputs():
    assert downsample([1.0, 2.0], [3.0, 4.0], 10) == ([1.0, 2.0], [3.0, 4.0])
    assert downsample([], [], 10) == ([], [])
    assert downsample([1.0], [1.0], 0) == ([], [])
    xs, ys = wave(100)
    assert len(downsample(xs, ys, 1)[0]) <= 2


def test_downsample_shows_nan_and_inf_instead_of_breaking():
    xs, ys = wave(10_000)
    ys[1234] = math.nan
    ys[7000] = math.inf
    out_x, out_y = downsample(xs, ys, 50)
    assert 1234.0 in out_x and 7000.0 in out_x
    assert any(math.isnan(y) for y in out_y) and math.inf in out_y
    assert len(out_x) <= 100 and out_x == sorted(out_x)


def test_series_downsample_uses_block_summaries_and_stays_correct_as_points_arrive():
    width = 20
    n = 2 * BLOCK * width + 777
    series = Series("loss")
    for i in range(n):
        series.append(float(i), math.sin(i / 300) + (i % 11) / 20)
    series.ys[5000] = 99.0
    series.ys[30000] = -99.0
    out_x, out_y = series.downsample(width)
    assert len(out_x) <= 2 * width and out_x == sorted(out_x)
    assert 99.0 in out_y and -99.0 in out_y and out_x[-1] >= n - 777
    for i in range(3 * BLOCK):  # more points after a first draw
        series.append(float(n + i), -200.0 if i == 2000 else 0.0)
    series.append(float(n + 3 * BLOCK), math.nan)
    out_x, out_y = series.downsample(width)
    assert -200.0 in out_y and any(math.isnan(y) for y in out_y)
    assert len(out_x) <= 2 * width and out_x == sorted(out_x)
    assert series.min == -200.0 and series.max == 99.0 and series.nonfinite == 1
