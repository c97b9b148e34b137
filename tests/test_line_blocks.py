"""A block of lines fed at once (`LineBlocks`, the C-level passes) gives what the line loop
gives, point for point, bit for bit: steps that repeat, steps that are no steps, nan/inf/-0,
templates new in the middle of a block, series created in the order lines name them."""

from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from trainctl_tui.monitor.line_blocks import floats
from trainctl_tui.monitor.metrics import DIGIT_MARKS, MetricSet


def state(metrics: MetricSet) -> tuple:
    return (metrics.lines, metrics.records, metrics.indexed_x, metrics.last_step,
            sorted(metrics.carried_state()["previous"].items()),
            [(name, s.xs.tobytes(), s.ys.tobytes(), s.nonfinite, s.first_nonfinite() is None)
             for name, s in metrics.series.items()])


def by_blocks(lines: list[bytes], size: int, reads: bool = False) -> MetricSet:
    metrics = MetricSet()
    if reads:
        metrics.reads = {"x": False, "index": False}
    for at in range(0, len(lines), size):
        block = lines[at:at + size]
        metrics.feed_bytes(block, [line.translate(DIGIT_MARKS) for line in block])
    return metrics


def one_by_one(lines: list[bytes], reads: bool = False) -> MetricSet:
    metrics = MetricSet()
    if reads:
        metrics.reads = {"x": False, "index": False}
    for line in lines:
        metrics.feed_plain([line], [line.translate(DIGIT_MARKS)])
    return metrics


def noisy_log(seed: int, count: int, dense: float) -> list[bytes]:
    rng = random.Random(seed)
    odd = ["0.5", "nan", "inf", "-inf", "-0.0", "0.0", "1e-3", "3", "NaN"]
    out, step = [], 0
    for i in range(count):
        kind = rng.random() * (0.66 if rng.random() < dense else 1.0)
        value = (rng.choice(odd) if rng.random() < 0.3
                 else f"{rng.uniform(0, 3):.{rng.randint(1, 5)}f}")
        if kind < 0.55:
            step = max(0, step + rng.choice([1, 1, 1, 0, 10, -3]))
            out.append(f"step {step} loss={value} lr={rng.choice(['3e-4', '1e-4'])}")
        elif kind < 0.62:
            out.append(f"iter {step}: loss {rng.uniform(0, 3):.4f}, time "
                       f"{rng.uniform(1, 300):.2f}ms, mfu {rng.uniform(0, 40):.2f}%")
        elif kind < 0.66:
            out.append(f"step {step}: train loss {rng.choice(['0.5', '1.0'])}, val loss "
                       f"{rng.uniform(1, 3):.4f}")
        elif kind < 0.70:
            out.append(f"loss={rng.choice(['0.5', '0.7'])} acc={rng.choice(['0.1', '0.2'])}")
        elif kind < 0.72:
            out.append(f"step {rng.choice(['2.5', '7.25'])} loss={rng.uniform(0, 1):.3f}")
        elif kind < 0.74:
            out.append(f"Epoch {rng.randint(1, 9)}/10")
        elif kind < 0.76:
            out.append(f"32/32 - 0s 2ms/step - loss: {rng.uniform(0, 1):.4f} - accuracy: 0.5")
        elif kind < 0.78:
            out.append("".join(f"\r{k}/10 [00:01<00:02, 9.1it/s, loss={rng.uniform(0, 1):.3f}]"
                               for k in range(rng.randint(1, 5))))
        elif kind < 0.80:
            out.append(f"step {step} loss={value} lr=3e-4\r")
        elif kind < 0.82:
            out.append(f"new shape {i} step {step} grad_norm {rng.random():.2f} loss 0.5")
        elif kind < 0.85:
            out.append(f"epoch {rng.randint(0, 3)} step {step} val_loss={rng.uniform(0, 1):.4f}")
        else:
            out.append(rng.choice(["INFO something 12", "", "warming up",
                                   f"global_step={step} loss={rng.random():.3f}"]))
    return [line.encode() for line in out]


def test_blocks_of_dense_lines_give_what_the_loop_gives():
    for seed in range(8):
        lines = noisy_log(seed, 6000, dense=0.9 + seed / 100)
        expected = state(one_by_one(lines, reads=True))
        for size in (64, 500, 6000):
            got = by_blocks(lines, size, reads=True)
            assert state(got) == expected, (seed, size)
        assert by_blocks(lines, 500, reads=True).reads == one_by_one(lines, reads=True).reads


def test_blocks_of_mixed_lines_give_what_the_loop_gives():
    for seed in range(4):
        lines = noisy_log(100 + seed, 4000, dense=0.0)
        assert state(by_blocks(lines, 256)) == state(one_by_one(lines))


def test_a_block_goes_through_the_passes():
    """Not only the loop: the block path is taken (and still equal)."""
    lines = [f"step {s} loss={1 / s:.6f} lr=3e-4".encode() for s in range(1000, 2000)]
    metrics = by_blocks(lines, 1000)
    calls = []
    plain = metrics.feed_plain
    metrics.feed_plain = lambda *args: calls.append(len(args[0])) or plain(*args)
    more = [f"step {s} loss={1 / s:.6f} lr=3e-4".encode() for s in range(2000, 3000)]
    metrics.feed_bytes(more, [line.translate(DIGIT_MARKS) for line in more])
    assert calls == []
    assert state(metrics) == state(one_by_one(lines + more))


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.floats(allow_nan=False).map(repr),
    st.floats(allow_nan=False).map(lambda x: f"{x:.17e}"),
    st.from_regex(r"\A[-+]?[0-9]{1,30}(\.[0-9]{0,30})?([eE][-+]?[0-9]{1,3})?\Z"),
    st.from_regex(r"\A[-+]?\.[0-9]{1,30}([eE][-+]?[0-9]{1,3})?\Z"),
    st.sampled_from(["nan", "-nan", "NaN", "inf", "-inf", "Infinity", "1e500", "-0", "4.9e-324",
                     "2.4703282292062328e-324", "1.7976931348623159e308"]),
))
def test_floats_are_float_bit_for_bit(text):
    raw = text.encode()
    assert bits(floats([raw])[0]) == bits(float(raw))


def test_floats_refuses_what_float_refuses():
    for text in (b"1.2.3", b"", b"abc", b"1e", b"--1"):
        try:
            floats([text])
        except ValueError:
            continue
        raise AssertionError(text)


def bar_log(seed: int) -> list[bytes]:
    """Lightning/tqdm bars of many frames: counters drawn twice, postfixes that change or
    not, nan, a block character filling the bar (templates whose offsets shift), prints
    glued to a frame, escapes."""
    rng = random.Random(seed)
    out, step = [], 0
    for epoch in range(6):
        frames = []
        total = rng.choice([40, 400, 1000])
        val = rng.choice(["0.498", "nan", "1.5"])
        glue, escape = rng.random() < 0.3, rng.random() < 0.2  # lines the loop reads
        for n in range(0, total, rng.choice([1, 3, 7])):
            fill = "\u2588" * (n * 10 // total) + " " * (10 - n * 10 // total)
            loss = rng.choice([f"{rng.uniform(0, 1):.3f}", "0.500", "nan", "inf"])
            frame = (f"Epoch {epoch}: {n * 100 // total:3d}%|{fill}| {n}/{total} [00:01<00:02, "
                     f"{rng.uniform(1, 60):.2f}it/s, v_num=0, train_loss_step={loss}, "
                     f"val_loss={val}]")
            frames.append(frame)
            if rng.random() < 0.3:
                frames.append(frame.replace("train_loss_step=", "train_loss_step=1"))
            if glue and rng.random() < 0.02:
                step += 10
                frames.append(frame + f"epoch {epoch} step {step} loss=0.25")
            if escape and rng.random() < 0.01:
                frames.append("\x1b[A" + frame)
        out.append("\r" + "\r".join(frames))
        out.append(f"step {step} val_loss={rng.random():.4f}" if rng.random() < 0.5 else "")
    return [line.encode() for line in out]


def test_bar_lines_read_at_once_give_what_the_frame_loop_gives(monkeypatch):
    import trainctl_tui.monitor.metrics as metrics_module

    for seed in range(10):
        lines = bar_log(seed)
        fast = state(one_by_one(lines + lines))
        monkeypatch.setattr(metrics_module, "MIN_FRAMES", 10**9)  # the frame loop only
        slow = state(one_by_one(lines + lines))
        monkeypatch.undo()
        assert fast == slow, seed


def test_bar_lines_of_a_long_epoch_read_at_once_give_what_the_frame_loop_gives(monkeypatch):
    """Lines whose frames differ only where the bar fills up and the counter widens (one
    getter cuts every frame's counter; the line's layout is reused by the next lines),
    losses that repeat, counters past their total (an epoch's fraction is 0 there: found
    in bulk the first time, looked up the next epochs), a total that changes."""
    import trainctl_tui.monitor.metrics as metrics_module

    rng = random.Random(7)
    lines = []
    for epoch in range(4):
        total = 1000 if epoch < 3 else 300
        for start in range(0, total, 200):
            frames = []
            for n in range(start, start + 200 if start + 200 < total else total + 3):
                loss = rng.choice(["0.500", "0.250", f"{rng.random():.3f}"])
                fill = "\u2588" * (n * 40 // total) + " " * (40 - min(40, n * 40 // total))
                frames.append(f"\rEpoch {epoch}: {min(100, n * 100 // total):3d}%|{fill}| "
                              f"{n}/{total} [00:01<00:09, {rng.uniform(20, 60):.2f}it/s, "
                              f"v_num=0, train_loss_step={loss}, "
                              f"val_loss=0.498]")
            lines.append("".join(frames).encode())
        lines.append(f"epoch {epoch} done".encode())
    fast = state(one_by_one(lines))
    monkeypatch.setattr(metrics_module, "MIN_FRAMES", 10**9)  # the frame loop only
    assert fast == state(one_by_one(lines))


def test_ascii_bars_drawn_twice_a_batch_read_at_once_give_what_the_frame_loop_gives(
        monkeypatch):
    """An ascii bar (`|###   |`: frames of one length whose templates differ where the bar
    fills up), each batch drawn twice (the new counter with the old postfix, then the new
    postfix), and lines whose counter is not the bar's progress (a `shard=3/?` after it: the
    epoch's fraction comes from the bar's own `12/40`), all read at once."""
    import trainctl_tui.monitor.metrics as metrics_module

    rng = random.Random(11)
    lines = []
    for epoch in range(3):
        for shard in (False, True):
            frames, loss = [], "0.900"
            for n in range(40):
                head = f"\rEpoch {epoch}: {n * 100 // 40:3d}%|{'#' * (n // 4):10s}| {n}/40 "
                tail = f", shard={n}/?" if shard else ""
                frames.append(f"{head}[00:01<00:01, v_num=0, loss={loss}{tail}]")
                loss = rng.choice(["0.500", "0.250", f"{rng.random():.3f}"])
                frames.append(f"{head}[00:01<00:01, v_num=0, loss={loss}{tail}]")
            lines.append("".join(frames).encode())
    read = []
    bar_records = metrics_module.bar_records

    def counting(*args):
        runs = bar_records(*args)
        read.append(runs is not None)
        return runs

    monkeypatch.setattr(metrics_module, "bar_records", counting)
    fast = state(one_by_one(lines))
    assert sum(read) >= 4  # past the lines that teach the parser their templates
    monkeypatch.setattr(metrics_module, "MIN_FRAMES", 10**9)  # the frame loop only
    assert fast == state(one_by_one(lines))


def test_bar_lines_are_read_at_once():
    import trainctl_tui.monitor.metrics as metrics_module

    read = []
    bar_records = metrics_module.bar_records

    def counting(*args):
        runs = bar_records(*args)
        read.append(runs is not None)
        return bar_records(*args)

    metrics_module.bar_records, kept = counting, metrics_module.bar_records
    try:
        lines = bar_log(3)
        one_by_one(lines + lines)
    finally:
        metrics_module.bar_records = kept
    assert sum(read) >= 3


def nanogpt_log(seed: int, count: int) -> list[bytes]:
    """nanoGPT's lines: an `iter` line every step, an eval `step` line at the step of the
    `iter` line after it every 25 (so loss is fed by both, time and mfu by long runs of
    `iter` lines only); now and then a value that repeats or is nan."""
    rng = random.Random(seed)
    out = []
    for step in range(0, count * 10, 10):
        if step % 250 == 0:
            out.append(f"step {step}: train loss {rng.choice(['2.5000', 'nan'])}, "
                       f"val loss {rng.uniform(1, 3):.4f}")
        loss = rng.choice([f"{rng.uniform(1, 3):.4f}", "2.5000", "nan"])
        out.append(f"iter {step}: loss {loss}, time {rng.uniform(10, 300):.2f}ms, "
                   f"mfu {rng.choice(['12.00', f'{rng.uniform(1, 40):.2f}'])}%")
    return [line.encode() for line in out]


def test_nanogpt_blocks_give_what_the_loop_gives():
    lines = nanogpt_log(3, 5000)
    expected = state(one_by_one(lines, reads=True))
    for size in (64, 1000, 6000):
        assert state(by_blocks(lines, size, reads=True)) == expected, size


def test_select_gives_the_values_where_the_mask_is_set():
    from array import array
    from itertools import compress

    from trainctl_tui.monitor.line_blocks import select

    rng = random.Random(5)
    values = array("d", (rng.random() for _ in range(3000)))
    for gap in (1, 2, 5, 25, 400, 10**6):  # from scattered 1s to a few long runs of them
        mask = bytes(int(rng.randrange(gap) != 0 or gap == 1 and rng.random() < 0.5)
                     for _ in range(len(values)))
        chosen: dict = {}
        got = select(values, mask, chosen)
        assert got == array("d", compress(values, mask)), gap
        assert select(values, mask, chosen) is got  # the same lines: the same array
    assert select(values, b"\x01" * len(values), {}) is values


def test_a_metric_set_goes_when_dropped_without_waiting_for_the_garbage_collector():
    import gc
    import weakref

    lines = [f"step {s} loss={1 / s:.6f}".encode() for s in range(1000, 1200)]
    metrics = by_blocks(lines, 200)
    gone = weakref.ref(metrics)
    gc.disable()
    try:
        del metrics
        assert gone() is None
    finally:
        gc.enable()


class FirstSets(dict):
    """A `previous` dict noting the first values set for each names (as a parallel parse's
    worker does): the blocks must set them in the loop's order."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict = {}

    def __setitem__(self, key, value) -> None:
        if key not in self:
            self.first[key] = list(value)
        super().__setitem__(key, value)


def exact_state(metrics: MetricSet) -> tuple:
    """`state`, with the last step-less values compared bit for bit (a nan equals no nan)."""
    *head, previous, series = state(metrics)
    return (*head, [(names, [bits(v) for v in values]) for names, values in previous], series)


def stepless_log(seed: int, count: int, lead: int = 0) -> list[bytes]:
    """DeepSpeed-like blocks: a step line, a step-less timing line whose `step: 1.52` is no
    step, a line repeating the step; step-less records that repeat the one before (or not,
    or nan, or -0.0 after 0.0), lines the loop reads between them; `lead` step-less lines
    before the first step."""
    rng = random.Random(seed)
    out = [f"[Rank 0] time (ms) | fwd: {rng.choice(['0.5', '0.7'])} | bwd: 0.25 | step: 1.5"
           for _ in range(lead)]
    step = 0
    odd = ["0.5", "nan", "-0.0", "0.0", "inf"]
    while len(out) < count:
        step += rng.choice([10, 10, 10, 0, 1])
        out.append(f"[Rank 0] step={step}, skipped=0, lr=[{rng.uniform(1e-4, 1e-3)}]")
        fwd = rng.choice(odd) if rng.random() < 0.2 else f"{rng.uniform(0, 1):.2f}"
        out.append(f"[Rank 0] time (ms) | fwd: {fwd} | bwd: {rng.choice(['0.25', '0.5'])} | "
                   f"step: {rng.choice(['1.52', '2.0', '3'])}")
        if rng.random() < 0.3:  # the same record again, or only its step part
            out.append(out[-1] if rng.random() < 0.5 else
                       f"[Rank 0] time (ms) | fwd: {fwd} | bwd: 0.25 | step: 1.52")
        out.append(f"step {step} loss {rng.choice(odd) if rng.random() < 0.1 else rng.random():.4}"
                   if rng.random() < 0.9 else f"step {step} loss 0.5")
        if rng.random() < 0.05:
            out.append(rng.choice(["ValueError: the loss 0.5 is not what we wanted",
                                   "eval acc=0.5 f1=0.25", "eval acc=0.5 f1=0.25",
                                   "Epoch 3/10", "warming up", f"global_step={step} acc=0.5"]))
    return [line.encode() for line in out]


def test_step_less_records_in_blocks_give_what_the_loop_gives():
    for seed in range(8):
        lines = stepless_log(seed, 5000, lead=seed * 40)
        loop = one_by_one(lines, reads=True)
        for size in (64, 300, 5000):
            got = by_blocks(lines, size, reads=True)
            assert exact_state(got) == exact_state(loop), (seed, size)
            assert got.reads == loop.reads


def test_step_less_records_set_the_previous_values_in_the_loop_s_order():
    lines = stepless_log(5, 3000)
    loop, blocks = MetricSet(previous=FirstSets()), MetricSet(previous=FirstSets())
    for line in lines:
        loop.feed_plain([line], [line.translate(DIGIT_MARKS)])
    for at in range(0, len(lines), 500):
        block = lines[at:at + 500]
        blocks.feed_bytes(block, [line.translate(DIGIT_MARKS) for line in block])
    assert exact_state(blocks) == exact_state(loop)
    firsts = [{names: [bits(v) for v in values] for names, values in m.carried_state()[
        "previous"].first.items()} for m in (blocks, loop)]
    assert firsts[0] == firsts[1]


def test_step_less_records_go_through_the_passes():
    """DeepSpeed's timing lines (`step: 1.52`) and other step-less records do not send a
    block to the loop: only the lines the loop must read go there."""
    lines = stepless_log(9, 3000)
    metrics = by_blocks(lines[:1000], 1000)
    calls = []
    plain = metrics.feed_plain
    metrics.feed_plain = lambda *args: calls.append(len(args[0])) or plain(*args)
    metrics.feed_bytes(lines[1000:], [line.translate(DIGIT_MARKS) for line in lines[1000:]])
    assert sum(calls) < 200  # the odd lines (Epoch, warming up ...), one at a time
    assert exact_state(metrics) == exact_state(one_by_one(lines))


def test_a_block_of_new_templates_learns_them_and_goes_through_the_passes():
    """The first block of a parse (a reopen's too) and a step one digit wider: the plans of
    the new templates are made from one line each, then the block is read in bulk; an
    `Epoch N/M` line among them sets the Keras epoch only where the loop reads it."""
    rng = random.Random(4)
    lines = [f"step {s} loss={rng.uniform(0, 3):.{rng.choice([3, 4, 16])}f} lr=3e-4".encode()
             for s in range(900, 3000)]
    lines[1500:1500] = [b"Epoch 2/10", b"32/32 - 0s 2ms/step - loss: 0.2500 - accuracy: 0.5"]
    metrics = MetricSet()
    calls = []
    plain = metrics.feed_plain
    metrics.feed_plain = lambda *args: calls.append(len(args[0])) or plain(*args)
    metrics.feed_bytes(lines, [line.translate(DIGIT_MARKS) for line in lines])
    assert sum(calls) <= 4  # the Keras lines only
    assert exact_state(metrics) == exact_state(one_by_one(lines))
    assert metrics.carried_state()["epoch"] == 2.0
