"""Progress bars written to a file: every frame whose counter advanced is a point.

The logs in tests/fixtures/logs were written by the real libraries (make_lightning_steps.py,
make_keras2.py, make_tqdm_prints.py); every expected value below comes from what the library
itself recorded next to the log (Lightning's CSVLogger, Keras' History, the numbers handed to
tqdm), never from the parser's output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from trainctl_tui.monitor.metrics import MetricSet, extract_file
from trainctl_tui.monitor.session_monitor import SessionMonitor

LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"


def load(name: str) -> tuple[MetricSet, dict]:
    return extract_file(LOGS / f"{name}.log"), json.loads((LOGS / f"{name}.json").read_text())


def points(metrics: MetricSet, name: str) -> list[tuple[float, float]]:
    series = metrics.series[name]
    return [(round(x, 9), y) for x, y in zip(series.xs, series.ys, strict=True)]


def bar_value(value: float) -> float:
    """A number as tqdm and Lightning's bars print it: 3 significant digits."""
    return float(f"{value:.3g}")


# --------------------------------------------------------------------------- Lightning


def test_lightning_tqdm_bar_gives_a_point_per_batch_as_metrics_csv_logged_it():
    metrics, truth = load("lightning_tqdm_steps")
    batches = truth["batches_per_epoch"]
    rows = truth["metrics"]
    steps = [r for r in rows if "train_loss" in r]
    vals = [r for r in rows if "val_loss" in r]
    assert len(steps) == 3 * batches  # the CSV holds every batch

    # Each batch: at epochs done (epoch + n/total), the value the CSV logged for that step.
    def at(row):
        return round(row["epoch"] + (row["step"] - row["epoch"] * batches + 1) / batches, 9)

    assert points(metrics, "loss") == [(at(r), bar_value(r["train_loss"])) for r in steps]
    assert points(metrics, "val_loss") == [(r["epoch"] + 1, bar_value(r["val_loss"]))
                                           for r in vals]
    assert points(metrics, "val_accuracy") == [(r["epoch"] + 1, bar_value(r["val_acc"]))
                                               for r in vals]


def test_lightning_rich_bar_gives_a_point_per_drawn_batch_as_metrics_csv_logged_it():
    metrics, truth = load("lightning_rich_steps")
    batches = truth["batches_per_epoch"]
    logged = {round(r["epoch"] + (r["step"] - r["epoch"] * batches + 1) / batches, 9):
              r["train_loss"] for r in truth["metrics"] if "train_loss" in r}
    vals = [r["val_loss"] for r in truth["metrics"] if "val_loss" in r]

    loss = points(metrics, "loss")
    # rich redraws at its own pace: the batches it drew are points, in order, none twice
    assert len(loss) >= 20 and [x for x, _ in loss] == sorted({x for x, _ in loss})
    assert [y for _, y in loss] == [bar_value(logged[x]) for x, _ in loss]
    # the first val_loss is the sanity check's, which the bar shows and the CSV omits
    assert [y for _, y in points(metrics, "val_loss")][1:] == [bar_value(v) for v in vals]


# --------------------------------------------------------------------------- Keras 2


def test_keras2_bar_in_a_file_keeps_only_each_epochs_final_record():
    metrics, truth = load("keras2")
    history = truth["history"]
    epochs = [float(e) for e in range(1, len(history["loss"]) + 1)]

    assert set(metrics.series) == {"loss", "accuracy", "val_loss", "val_accuracy", "epoch"}
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        # Keras prints 4 decimals; the running averages between frames are not points
        assert points(metrics, name) == [(e, round(v, 4)) for e, v in
                                         zip(epochs, history[name], strict=True)], name
    raw = (LOGS / "keras2.log").read_bytes()
    assert b"ETA: " in raw and b"val_loss improved from inf" in raw  # what the log holds


def test_a_keras2_running_average_shows_live_but_never_becomes_a_point():
    metrics = MetricSet()
    metrics.feed_text("Epoch 1/2\n")
    running = "\r 45/400 [==>..........] - ETA: 0s - loss: 0.4310 - accuracy: 0.8000"
    assert metrics.peek_line(running) == (1.0, {"loss": 0.431, "accuracy": 0.8, "epoch": 1.0})
    metrics.feed_text(running + "\nEpoch 1: val_loss improved from inf to 0.05954, "
                      "saving model to /tmp/best.h5\n")
    assert metrics.series == {}  # no `eta` series, no extra point from the callback line
    metrics.feed_text("\b\b\r400/400 [==============================] - 1s 2ms/step - "
                      "loss: 0.1196 - accuracy: 0.9566 - val_loss: 0.0595\n")
    assert points(metrics, "loss") == [(1.0, 0.1196)]


# --------------------------------------------------------------------------- tqdm


def test_tqdm_frames_are_points_and_a_glued_print_is_its_own_record():
    metrics, truth = load("tqdm_prints")
    printed = {p["step"]: p for p in truth["prints"]}

    def expected(name):
        out = []
        for shown in truth["postfixes"]:
            step = shown["n"] + 1  # the script's own step number for this iteration
            if step in printed:  # the print glued to this frame is the record, not the bar
                out.append((float(step), printed[step][name]))
            else:
                out.append((float(shown["n"]), bar_value(shown[name])))
        # bar.close() draws the bar once more at 60/60 with the last postfix
        last = truth["postfixes"][-1]
        return [*out, (last["n"] + 1.0, bar_value(last[name]))]

    assert points(metrics, "loss") == expected("loss")
    assert [x for x, _ in points(metrics, "lr")] == [x for x, _ in expected("lr")]
    for (_, got), (_, want) in zip(points(metrics, "lr"), expected("lr"), strict=True):
        assert math.isclose(got, want, rel_tol=1e-9)


def test_each_batch_drawn_twice_keeps_the_second_frame():
    # Lightning: the new counter with the previous postfix, then the same counter with the new
    frames = []
    for n, (old, new) in enumerate([(0.9, 0.8), (0.8, 0.7), (0.7, 0.6)], start=1):
        for value in (old, new):
            frames.append(f"Epoch 0: {n * 25:3d}%|##| {n}/4 [00:01<00:01, v_num=0, "
                          f"train_loss_step={value}]")
    frames += frames[-2:]  # the same counter and values again: nothing new
    metrics = MetricSet()
    metrics.feed_text("\r" + "\r".join(frames) + "\n")
    assert points(metrics, "loss") == [(0.25, 0.8), (0.5, 0.7), (0.75, 0.6)]


def test_a_print_glued_to_a_frame_takes_its_own_values_not_the_bars():
    metrics = MetricSet()
    metrics.feed_text("\r  8%|8  | 8/100 [00:00<00:00, 913it/s, loss=28.3, lr=0.000211]"
                      "\r  9%|9  | 9/100 [00:00<00:00, 913it/s, loss=28.1, lr=0.000209]"
                      "epoch 0 step 10 loss=28.0600 lr=2.1e-04\n")
    assert points(metrics, "loss") == [(8.0, 28.3), (10.0, 28.06)]
    assert points(metrics, "lr") == [(8.0, 0.000211), (10.0, 0.00021)]


def test_a_bar_redrawn_for_megabytes_without_a_newline_keeps_every_frame(tmp_path):
    log = tmp_path / "train.log"
    frames = [f"\rEpoch 0: {n % 100:3d}%|#| {n}/40000 [00:01<00:02, loss={n / 40000:.5f}]"
              for n in range(1, 40001)]
    log.write_text("".join(frames) + "\n")
    assert log.stat().st_size > 2 << 20
    for chunk in (4093, 1 << 20):
        loss = extract_file(log, chunk=chunk).series["loss"]
        assert len(loss) == 40000 and loss.ys[0] == 0.00003 and loss.ys[-1] == 1.0


# --------------------------------------------------------------------------- live path


@pytest.mark.parametrize("name", ["lightning_tqdm_steps", "lightning_rich_steps", "keras2",
                                  "tqdm_prints", "lightning_tqdm"])
def test_the_session_screen_reads_the_same_points_as_trainctl_metrics(name, tmp_path):
    import asyncio

    log = tmp_path / "train.log"
    log.write_bytes((LOGS / f"{name}.log").read_bytes())
    monitor = SessionMonitor(log)

    async def follow():
        async for update in monitor.updates(poll_interval=0.1):
            if not update.catching_up:
                return

    asyncio.run(follow())
    monitor.close()
    whole = extract_file(log)
    assert set(monitor.metrics.series) == set(whole.series)
    for series_name in whole.series:
        assert points(monitor.metrics, series_name) == points(whole, series_name)


def test_a_keras_bar_read_in_pieces_still_keeps_only_its_last_frame(tmp_path):
    # Keras 3 to a file: a long epoch redraws for more than a read block without a newline
    frames = [f"\r{n:4d}/3000 \x1b[32m━━━\x1b[0m 0s 2ms/step - loss: {1 - n / 6000:.4f}"
              for n in range(1, 3001)]
    log = tmp_path / "train.log"
    log.write_text("Epoch 1/2\n" + "".join(frames) + " - val_loss: 0.4000\nEpoch 2/2\n")
    assert log.stat().st_size > 2 * 64 * 1024
    for chunk in (4093, 1 << 20):
        metrics = extract_file(log, chunk=chunk)
        assert points(metrics, "loss") == [(1.0, 0.5)], chunk
        assert points(metrics, "val_loss") == [(1.0, 0.4)]
