"""A progress bar that redraws without a newline (tqdm, Lightning, Keras writing to a file)
can hold a whole epoch on one line: its latest numbers show live, before the line ends,
and leave no trace in the series once it does. Driven with a real Lightning tqdm line."""

from __future__ import annotations

import asyncio
from pathlib import Path

from trainctl_tui.monitor.metrics import MetricSet, extract_file
from trainctl_tui.monitor.session_monitor import SessionMonitor

LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"


def epoch_line() -> tuple[bytes, list[bytes]]:
    """The log before Lightning's first epoch bar, and that bar's \\r redraws."""
    lines = (LOGS / "lightning_tqdm.log").read_bytes().split(b"\n")
    index = next(i for i, line in enumerate(lines) if line.count(b"\r") > 5)
    return b"\n".join(lines[:index]) + b"\n", lines[index].split(b"\r")


def test_peek_line_says_what_a_line_would_add_and_changes_nothing():
    metrics = MetricSet()
    metrics.feed_text("step 10 loss 0.9\nstep 20 loss 0.8\n")
    before = {name: (list(s.xs), list(s.ys)) for name, s in metrics.series.items()}
    counts = metrics.records, metrics.lines

    assert metrics.peek_line("\rstep 30 loss 0.7\rstep 31 loss 0.65") == (31.0, {"loss": 0.65})
    assert metrics.peek_line("Epoch 2: 50%|##   | 12/24 [00:01, v_num=0, train_loss_step=0.42]") \
        == (20.0, {"epoch": 2.5, "loss": 0.42})  # no step of its own: the log's last one
    assert metrics.peek_line("loading the dataset") is None
    assert {name: (list(s.xs), list(s.ys)) for name, s in metrics.series.items()} == before
    assert (metrics.records, metrics.lines) == counts

    keras = MetricSet()
    keras.feed_text("Epoch 3/10\n")
    assert keras.peek_line("Epoch 4/10") is None
    keras.feed_text("32/32 ━━━━ 0s 2ms/step - loss: 0.5\n")
    assert keras.series["loss"].xs[-1] == 3.0  # the peek did not move Keras' epoch


def test_a_lightning_bar_shows_its_loss_live_before_the_epoch_line_ends(tmp_path):
    head, redraws = epoch_line()
    log = tmp_path / "train.log"
    log.write_bytes(head)
    monitor = SessionMonitor(log)
    stop = asyncio.Event()
    seen: list = []

    async def follow():
        async for update in monitor.updates(stop=stop, poll_interval=0.1):
            if update.metrics_changed:
                seen.append(monitor.live)

    async def scenario():
        task = asyncio.create_task(follow())
        await asyncio.sleep(0.5)
        with open(log, "ab") as out:
            written = 0
            for count in (12, 30, len(redraws)):  # the bar at three moments of epoch 0
                out.write((b"\r" if written else b"") + b"\r".join(redraws[written:count]))
                out.flush()
                written = count
                shown = redraws[count - 1].decode()
                await wait_for_loss(float(shown.rsplit("train_loss_step=", 1)[1].rstrip("] ")))
                assert "loss" not in monitor.metrics.series  # nothing added yet
            out.write(b"\n")
        await wait(lambda: monitor.live is None and "loss" in monitor.metrics.series)
        stop.set()
        await asyncio.wait_for(task, 10)

    async def wait_for_loss(expected: float):
        await wait(lambda: monitor.live and monitor.live[1].get("loss") == expected)

    async def wait(predicate, timeout=20.0):
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not predicate():
            assert loop.time() < end, f"timed out; live updates seen: {seen[-3:]}"
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    monitor.close()
    final = float(redraws[-1].decode().rsplit("train_loss_step=", 1)[1].rstrip("] "))
    loss = monitor.metrics.series["loss"]
    # once the line ends, a point per batch, as `trainctl metrics` reads the same file
    whole = extract_file(log).series["loss"]
    assert len(loss) == 24 and (loss.xs, loss.ys) == (whole.xs, whole.ys)
    assert loss.ys[-1] == final and loss.xs[-1] == 1.0
    live_x = [live[0] for live in seen if live]
    assert live_x == sorted(live_x) and 0 < live_x[0] < 1  # the live point moves along x
