"""Log lines -> named metric series.

    metrics = MetricSet(patterns=config_patterns)
    for line in follow(log): metrics.feed_line(line)
    xs, ys = metrics.series["loss"].downsample(plot_width)

x is the step when the line gives one (`step`, `global_step`, `iter`, `iteration`, `it`,
Keras' `Epoch N/M`, torchtune's `epoch|step|`); a line without one takes the last step the
log gave; a log that never gives one uses the record's epoch if it has one (HF Trainer's
dicts), else the record index of each series.

Repeats are not new points: a step-less record equal to the previous one with the same names
is a progress bar redrawing itself (tqdm, rich, Keras), and a line naming the step of the line
before it only adds the values that differ from the last point of their series (a summary line
such as `done: step 300, train loss 0.3996`, a redrawn torchtune bar).

Stdlib only; parsing lives in `parsers`, storage and sampling in `series`.
"""

from __future__ import annotations

import math
import os
from array import array
from collections.abc import Iterable, Sequence
from itertools import chain, compress, islice
from operator import eq, ne, or_

from .bar_frames import MIN_FRAMES, BarCache, BarRun, bar_records, repeated
from .line_blocks import LineBlocks
from .parsers import (
    DIGIT_MARKS,
    KERAS_FRAME,
    MAX_LINE,
    NOTHING,
    MetricsParser,
    ParsedLine,
    canonical_name,
    epoch_fraction,
    frame_shape,
    line_states,
    reduce_line,
    strip_ansi,
    strip_escapes,
)
from .series import Series, downsample, first_nonfinite

__all__ = [
    "MetricSet", "MetricsParser", "ParsedLine", "Series", "canonical_name", "downsample",
    "extract_file", "first_nonfinite", "line_states", "strip_ansi",
]

DEFAULT_JSON_WIDTH = 200


class MetricSet:
    """All series of one log, fed line by line (live) or from a whole file."""

    def __init__(self, patterns: Sequence[str] = (), *,
                 previous: dict[tuple[str, ...], list[float]] | None = None) -> None:
        self.parser = MetricsParser(patterns)
        self.series: dict[str, Series] = {}
        self.lines = 0  # lines fed
        self.records = 0  # lines that added at least one point
        self._last_step: float | None = None
        self._previous = {} if previous is None else previous  # last step-less values
        self._targets: dict[tuple[str, ...], list[Series]] = {}
        self._bar_pending: tuple | None = None  # the last frame of a line read in pieces
        self._frame_shapes: dict[bytes, tuple] = {}  # frame template -> `frame_shape`
        self._numbers = _Numbers()
        self._bar_cache = BarCache()
        self._blocks = LineBlocks(self)
        # Some x is a record's index in its series: right only when the log was fed whole.
        self.indexed_x = False
        # When a dict: notes that a series' last x was read (a step repeated) or a point
        # placed at its index (a parallel parse's worker must know; see `parallel`).
        self.reads: dict[str, bool] | None = None

    # -- the state a parse carries from line to line (besides each series' last point)

    def carried_state(self) -> dict:
        return {"last_step": self._last_step, "epoch": self.parser._epoch,
                "previous": self._previous}

    def carry_on(self, last_step: float | None, epoch: float | None,
                 previous: dict[tuple[str, ...], list[float]]) -> None:
        """Continue from the state another parse of the lines before reached."""
        self._last_step, self.parser._epoch = last_step, epoch
        self._previous.update(previous)

    def series_named(self, name: str) -> Series:
        """The series `name`, created (last) if new."""
        return self._series(name)

    def name_series(self, names: tuple[str, ...]) -> None:
        """Make the series a record of `names` adds to, in that order, where new."""
        if names not in self._targets:
            self._targets[names] = [self._series(name) for name in names]

    @property
    def last_step(self) -> float | None:
        """The step of the last record that gave one: the x of records without one."""
        return self._last_step

    @last_step.setter
    def last_step(self, step: float) -> None:
        self._last_step = step

    # -- feeding

    def feed_line(self, line: str) -> bool:
        """Parse one line (it may hold `\r` redraws and ANSI codes); True if it gave metrics."""
        return self.feed_bytes([line.encode("utf-8", "surrogateescape")]) > 0

    def feed_lines(self, lines: Iterable[str]) -> int:
        """Feed many lines; returns how many gave metrics."""
        return self.feed_bytes(line.encode("utf-8", "surrogateescape") for line in lines)

    def feed_text(self, text: str) -> int:
        """Feed a block of text (split on newlines); returns how many lines gave metrics."""
        return self.feed_lines(text.split("\n"))

    def feed_bytes(self, lines: Iterable[bytes], templates: Iterable[bytes] | None = None
                   ) -> int:
        """Feed raw lines (no trailing newline needed); returns how many gave metrics.
        `templates`, when given, are the lines with their digits marked (`DIGIT_MARKS`):
        one translate of a whole block costs less than one a line.

        A block of dense metric lines is fed by `LineBlocks` (a few C-level passes a series);
        other lines by `feed_plain`, with the same result.
        """
        if self.parser.patterns:
            return self._feed_each(lines)
        lines = lines if isinstance(lines, list) else list(lines)
        if templates is None:
            templates = [raw.translate(DIGIT_MARKS) for raw in lines]
        templates = templates if isinstance(templates, list) else list(templates)
        if len(lines) != len(templates):
            raise ValueError("one template a line")
        return self._blocks.feed(lines, templates)

    def feed_plain(self, lines: Sequence[bytes], templates: Sequence[bytes]) -> int:
        """`feed_bytes`, a line at a time: a line of a template the parser has seen costs
        one dict lookup and a float() per value."""
        parser = self.parser
        plans = parser.plans
        apply = parser.apply
        add = self._add
        targets_of = self._targets.get
        count = found = 0
        for raw, template in zip(lines, templates, strict=True):
            count += 1
            if b"\r" in raw:
                if raw.find(b"\r") < len(raw) - 1:  # a progress bar: each of its frames
                    found += self._feed_frames(raw, template=template)
                    continue
                raw, template = raw[:-1], template[:-1]  # a CRLF ending: on like any line
            # Plans are keyed by reduced lines (no \r, no escapes), so a hit is a clean line.
            plan = plans.get(template)
            if plan is None:
                found += self._feed_new(raw)
                continue
            if plan is NOTHING:
                continue
            if plan.has_step and not plan.keras:
                # The common line, inlined: `step N ... loss X ...` at a new step.
                try:
                    values = list(map(float, plan.take(raw)))
                except ValueError:
                    found += self._feed_new(raw)  # a slice that is no number: full parse
                    continue
                if plan.doubled:
                    values.pop()
                step = values.pop(0)
                if not (step >= 0 and step.is_integer()):
                    step = None  # `step: 2.41`, `step nan`: not a step this time
                targets = targets_of(plan.names)
                if step is None or step == self._last_step or targets is None:
                    found += add(step, plan.names, values)
                    continue
                self._last_step = step
                for series, value in zip(targets, values, strict=True):
                    series.xs.append(step)
                    series.ys.append(value)
                    if value - value:  # nan or inf
                        series.note_nonfinite()
                self.records += 1
                found += 1
                continue
            try:
                parsed = apply(plan, raw)
            except ValueError:
                parsed = parser.parse_bytes(raw)
            if parsed is not None and add(*parsed):
                found += 1
        self.lines += count
        return found

    def _feed_each(self, lines: Iterable[bytes]) -> int:
        count = found = 0
        for raw in lines:
            count += 1
            found += self._feed_frames(raw) if b"\r" in raw else self._feed_new(raw)
        self.lines += count
        return found

    def _feed_frames(self, raw: bytes, line_ends: bool = True,
                     template: bytes | None = None) -> bool:
        """A line of `\r` redraws (tqdm, Lightning, rich or Keras bars written to a file).

        Each frame whose bar counter advanced is a record: of frames with records showing the
        same counter, the last one is (Lightning draws each batch twice: the new counter with
        the old postfix, then the new postfix). Keras frames hold running averages: only the
        line's last one counts. A print glued to a tqdm frame is a record of its own, and
        that frame's values were only live. A tqdm frame with neither step nor epoch stands
        at its counter (`9/100` -> x 9). `line_ends=False`: the line goes on in the next
        call (a bar that redraws for megabytes without a newline is read in pieces).

        Frames of one template share their shape (where the counter is, whether a print is
        glued), found once, so a frame costs what a line costs: a translate, two lookups."""
        body = raw.rstrip(b"\r ")
        last = body[body.rfind(b"\r") + 1 :]
        if line_ends and (b"/step" in last or b"ETA: " in last):
            return self._feed_new(raw)  # a Keras bar: only its last frame counts, as before
        hit = False
        # (counter, record) of the newest frame: a point once the bar moves on
        pending, self._bar_pending = self._bar_pending, None
        parser, plans, shapes = self.parser, self.parser.plans, self._frame_shapes
        numbers = self._numbers
        frames = raw.split(b"\r")
        if b"\x1b" in raw or b"\x08" in raw or b"\x00" in raw:
            frames = [strip_escapes(frame) if b"\x1b" in frame or b"\x08" in frame
                      or b"\x00" in frame else frame for frame in frames]
            templates = [frame.translate(DIGIT_MARKS) for frame in frames]
            template = b"\r".join(templates)
        else:  # one translate for the line: \r is no digit, so the frames split alike
            template = template or raw.translate(DIGIT_MARKS)
            templates = None  # cut where the frame loop needs them
        if line_ends and pending is None and len(frames) > MIN_FRAMES:
            try:
                runs = bar_records(frames, template, plans, shapes, self._last_step,
                                   self._bar_cache, numbers)
            except ValueError:
                runs = None
            if runs is not None:
                return self._add_bar_runs(runs)
        if templates is None:
            templates = template.split(b"\r")
        for frame, template in zip(frames, templates, strict=True):  # noqa: B020
            plan = plans.get(template)
            if plan is NOTHING or not frame or frame.isspace():
                continue
            shape = shapes.get(template)
            if shape is None:
                shape = self._frame_shape(template, frame)
            counter_at, glued_at, position_at = shape
            if glued_at is not None:  # the print is the record; the frame was only live
                if pending is not None and self._counter(frame, counter_at) != pending[0]:
                    hit = self._add_frame(*pending) or hit
                pending = None
                hit = self._feed_new(frame[glued_at:]) or hit
                continue
            record = None
            if plan is not None:
                try:
                    record = (_apply_stateless(plan, frame, numbers) if plan.stateless
                              else parser.apply(plan, frame))
                except ValueError:
                    plan = None
            if plan is None:
                record = parser.parse_bytes(frame)
            if record is None:
                continue
            counter = (frame[counter_at[0]:counter_at[1]]
                       if counter_at is not None and counter_at != KERAS_FRAME else counter_at)
            if pending is not None and counter != pending[0]:
                hit = self._add_frame(*pending) or hit
            if position_at is not None and record[0] is None and "epoch" not in record[1]:
                record = (float(frame[position_at[0]:position_at[1]]), *record[1:])
            pending = (counter, record)
        if not line_ends:
            self._bar_pending = pending
        elif pending is not None:
            hit = self._add_frame(*pending) or hit
        return hit

    def _add_bar_runs(self, runs: list[BarRun]) -> bool:
        """`_add_frame` of each record of `bar_records`, a series at a time: a value equal
        to the last of its series is skipped."""
        found = 0
        for run in runs:
            self.name_series(run.names)
            count = run.count
            xs = run.x if isinstance(run.x, array) else repeated(run.x, count)
            first = every = False  # the first record added a point; every record did
            partly = []  # which records the columns that skipped some added a point to
            for series, ys in zip(self._targets[run.names], run.columns, strict=True):
                if not isinstance(ys, array):  # one value all along: a point if it changed
                    if not (len(series.ys) and series.ys[-1] == ys):
                        series.append(xs[0], ys)
                        first = True
                    continue
                last = series.ys[-1] if len(series.ys) else math.nan  # nan: no value equals it
                before = len(series.ys)
                if any(map(eq, ys, chain((last,), islice(ys, count - 1)))):
                    keep = bytes(map(ne, ys, chain((last,), islice(ys, count - 1))))
                    series.xs.extend(compress(xs, keep))
                    series.ys.extend(compress(ys, keep))
                    if not every:
                        partly.append(keep)
                else:  # every value changed (a loss, the epoch moving along)
                    series.xs.extend(xs)
                    series.ys.extend(ys)
                    every = True
                if not math.isfinite(sum(ys)):
                    series.count_nonfinite(before)
            if every:
                records = count
            else:
                added = b"\x01" + bytes(count - 1) if first else bytes(count)
                for keep in partly:
                    added = bytes(map(or_, added, keep))
                records = count - added.count(0)
            self.records += records
            found += records
        return found > 0

    @staticmethod
    def _counter(frame: bytes, counter_at) -> bytes | str | None:
        if counter_at is None or counter_at == KERAS_FRAME:
            return counter_at
        return frame[counter_at[0]:counter_at[1]]

    def _frame_shape(self, template: bytes, frame: bytes) -> tuple:
        if len(self._frame_shapes) >= 8192:
            self._frame_shapes.clear()  # endless one-off shapes: start over, stay bounded
        shape = self._frame_shapes[template] = frame_shape(frame)
        return shape

    def _add_frame(self, counter: bytes | None, record: tuple) -> bool:
        """A frame's record. A bar's frame without a step adds only the values it changed:
        a postfix keeps showing the last val_loss for a whole epoch, and Lightning draws its
        bar again after validation with the same loss. Other frames (a step's, an HF dict
        printed over the bar, Keras' last frame) are records like any line."""
        step, names, values = record
        if counter is None or counter == KERAS_FRAME or step is not None:
            return self._add(step, names, values)
        targets = self._targets.get(names)
        if targets is None:
            targets = self._targets[names] = [self._series(name) for name in names]
        x = self._last_step  # `_stepless_x`, inlined: one call a frame less
        if x is None:
            if "epoch" in names:
                x = values[names.index("epoch")]
            else:
                self.indexed_x = True
        added = False
        for series, value in zip(targets, values, strict=True):
            ys = series.ys
            if ys and ys[-1] == value:
                continue
            series.xs.append(len(ys) if x is None else x)
            ys.append(value)
            if value - value:  # nan or inf
                series.note_nonfinite()
            added = True
        self.records += added
        return added

    def _feed_new(self, raw: bytes) -> bool:
        if len(raw) > MAX_LINE or b"\r" in raw or b"\x1b" in raw or b"\x08" in raw:
            states = reduce_line(raw)
        else:
            states = (raw,)
        hit = False
        for line in states:
            parsed = self.parser.parse_bytes(line)
            if parsed is not None and self._add(*parsed):
                hit = True
        return hit

    def _add(self, step: float | None, names: tuple[str, ...], values: list[float]) -> bool:
        targets = self._targets.get(names)
        if targets is None:
            targets = self._targets[names] = [self._series(name) for name in names]
        if step is None:
            if self._previous.get(names) == values:
                return False  # a progress bar drawing the same numbers again
            self._previous[names] = values
            x = self._stepless_x(names, values)
            if x is None:
                return self._add_by_index(targets, values)
        elif step == self._last_step:
            return self._add_repeated_step(targets, step, values)
        else:
            x = self._last_step = step
        for series, value in zip(targets, values, strict=True):
            series.xs.append(x)
            series.ys.append(value)
            if value - value:  # nan or inf
                series.note_nonfinite()
        self.records += 1
        return True

    def _stepless_x(self, names: tuple[str, ...], values: list[float]) -> float | None:
        """x of a record without a step: the log's last step; in a log that never gives
        one, the record's own epoch (HF Trainer's dicts: train and eval points line up on
        one chart, where per-series indexes would not); else None (per-series index)."""
        if self._last_step is not None:
            return self._last_step
        return values[names.index("epoch")] if "epoch" in names else None

    def _series(self, name: str) -> Series:
        found = self.series.get(name)
        if found is None:
            found = self.series[name] = Series(name)
        return found

    def _add_by_index(self, targets: list[Series], values: list[float]) -> bool:
        self.indexed_x = True
        if self.reads is not None:
            self.reads["index"] = True
        for series, value in zip(targets, values, strict=True):
            series.append(len(series.ys), value)
        self.records += 1
        return True

    def _add_repeated_step(self, targets: list[Series], step: float, values: list[float]) -> bool:
        # A second line naming the step of the line before it: skip points it only repeats
        # (a final summary line such as `done: step 300, train loss 0.3996`).
        if self.reads is not None:
            self.reads["x"] = True
        added = False
        for series, value in zip(targets, values, strict=True):
            if len(series.ys) and series.xs[-1] == step and series.ys[-1] == value:
                continue
            series.append(step, value)
            added = True
        if added:
            self.records += 1
        return added

    def peek_line(self, line: str) -> tuple[float, dict[str, float]] | None:
        """(x, {name: value}) that `line` would add if it ended now, or None; changes no
        series. For a progress bar still redrawing without a newline (tqdm, Lightning, Keras
        to a file): its latest numbers show before the line, often a whole epoch, ends."""
        parser = self.parser
        epoch = parser._epoch  # an `Epoch N/M` line sets the Keras epoch; a peek must not
        try:
            parsed = None
            for state in reduce_line(line.encode("utf-8", "surrogateescape")):
                parsed = parser.parse_bytes(state, live=True) or parsed
        finally:
            parser._epoch = epoch
        if parsed is None:
            return None
        step, names, values = parsed
        x = step if step is not None else self._stepless_x(names, values)
        if x is None:  # a log with no step at all: the point after each series' last
            x = float(max(len(self.series[name]) if name in self.series else 0
                          for name in names))
        return x, dict(zip(names, values, strict=True))

    # -- reading

    def last_values(self) -> dict[str, float]:
        return {name: s.ys[-1] for name, s in self.series.items() if len(s)}

    def summary(self) -> dict[str, dict]:
        """Per series: count, last_x, last, min, max (finite values) and nonfinite."""
        return {name: s.summary() for name, s in self.series.items()}

    def to_json(self, all_points: bool = False, width: int = DEFAULT_JSON_WIDTH) -> dict:
        """A JSON-ready dict: each series' summary, its first non-finite point, and its points
        (all of them, or sampled down to `width` buckets). nan/inf become "nan"/"inf"/"-inf"
        strings, so the output is strict JSON."""
        out = {}
        for name, s in self.series.items():
            xs, ys = (list(s.xs), list(s.ys)) if all_points else s.downsample(width)
            bad = s.first_nonfinite()
            entry = {k: json_number(v) for k, v in s.summary().items()}
            entry["first_nonfinite"] = None if bad is None else [bad[0], json_number(bad[1])]
            entry["x"] = xs
            entry["y"] = [json_number(y) for y in ys]
            out[name] = entry
        return {"lines": self.lines, "records": self.records, "series": out}


class _Numbers(dict):
    """float() of the byte strings a bar's frames repeat (its total, the postfix's last
    val_loss, a 3-digit loss): a lookup costs a third of a float() here."""

    LIMIT = 1 << 16

    def __missing__(self, text: bytes) -> float:
        if len(self) >= self.LIMIT:
            self.clear()
        value = float(text)
        if value == value:  # not nan: a list holding one nan object twice equals itself
            self[text] = value
        return value


def _apply_stateless(plan, frame: bytes, numbers: _Numbers
                     ) -> tuple[None, tuple[str, ...], list[float]]:
    """`MetricsParser.apply` for a plan with no step and no Keras epoch, as a bar frame's
    usually is, without its checks."""
    values = list(map(numbers.__getitem__, plan.take(frame)))
    if plan.doubled:
        values.pop()
    if plan.progress_of is not None:
        total = values.pop()
        values[plan.progress_of] += epoch_fraction(values.pop(), total)
    return None, plan.names, values


def json_number(value):
    """A value for strict JSON: nan, inf and -inf become the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def extract_file(path: str | os.PathLike, patterns: Sequence[str] = (), *,
                 chunk: int = 1 << 20) -> MetricSet:
    """Every metric of a log file, read in `chunk`-byte blocks (memory stays flat for any
    size). Invalid UTF-8 is replaced; a line longer than 64 KiB keeps its last 64 KiB."""
    metrics = MetricSet(patterns)
    with open(path, "rb") as handle:
        extract_range(metrics, handle, 0, os.fstat(handle.fileno()).st_size, chunk=chunk)
    return metrics


def extract_range(metrics: MetricSet, handle, start: int, end: int, *, chunk: int = 1 << 20,
                  progress=None) -> None:
    """Feed the bytes [start, end) of an open log to `metrics`; a last line without its
    newline is fed too (call with `end` just past a newline to stop at a line's end).
    `progress(done_bytes)` is called after each block."""
    feed = metrics.feed_bytes
    pending = b""
    handle.seek(start)
    left = end - start
    while left > 0:
        block = handle.read(min(chunk, left))
        if not block:
            break
        left -= len(block)
        if progress is not None:
            progress(end - start - left)
        newline = block.rfind(b"\n")
        if newline < 0:
            pending = _feed_long_line(metrics, pending + block)
            continue
        data = pending + block[: newline + 1] if pending else block[: newline + 1]
        pending = block[newline + 1 :]
        lines = data.split(b"\n")
        lines.pop()
        templates = data.translate(DIGIT_MARKS).split(b"\n")
        templates.pop()
        feed(lines, templates)
    if pending:
        feed([pending])


def _feed_long_line(metrics: MetricSet, pending: bytes) -> bytes:
    """A line with no newline for megabytes is a progress bar redrawing with \r: its
    complete frames are read now, so one line cannot eat memory; the rest is returned."""
    if len(pending) <= 2 * MAX_LINE:
        return pending
    cut = pending.rfind(b"\r")
    if cut <= 0:
        return pending[-MAX_LINE:]  # no frame ends here: keep the end, as a terminal would
    metrics._feed_frames(pending[:cut], line_ends=False)
    return pending[cut:]
