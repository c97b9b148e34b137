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
from collections.abc import Iterable, Sequence
from itertools import compress, islice
from operator import eq, ne

from .parsers import (
    DIGIT_MARKS,
    MAX_LINE,
    NOTHING,
    MetricsParser,
    ParsedLine,
    canonical_name,
    line_states,
    reduce_line,
    strip_ansi,
)
from .series import Series, downsample, first_nonfinite

__all__ = [
    "MetricSet", "MetricsParser", "ParsedLine", "Series", "canonical_name", "downsample",
    "extract_file", "first_nonfinite", "line_states", "strip_ansi",
]

DEFAULT_JSON_WIDTH = 200
_MAX_PLAN_SINKS = 16384
_MAX_BATCH = 4096


def _note_nonfinite(sinks, values) -> None:
    # After a line's appends: each series got one point, so its last is this line's value.
    for (_, _, series), value in zip(sinks, values, strict=True):
        if value - value:
            series.note_nonfinite()


class _Family:
    """Lines of plans with the same names that `feed_bytes` may add together: with a step
    (`step N ... loss X`) or without one (HF Trainer's dicts, summary lines)."""

    __slots__ = ("names", "sinks", "series", "stepped", "width", "epoch_at", "alone")

    def __init__(self, names: tuple[str, ...], sinks: tuple, stepped: bool) -> None:
        self.names = names
        self.sinks = sinks
        self.series = [series for _, _, series in sinks]
        self.stepped = stepped
        self.width = len(names) + stepped  # numbers a line gives: the step, then values
        self.epoch_at = names.index("epoch") if "epoch" in names else -1
        self.alone = False  # its last batch was a single line


class MetricSet:
    """All series of one log, fed line by line (live) or from a whole file."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        self.parser = MetricsParser(patterns)
        self.series: dict[str, Series] = {}
        self.lines = 0  # lines fed
        self.records = 0  # lines that added at least one point
        self._last_step: float | None = None
        self._previous: dict[tuple[str, ...], list[float]] = {}  # last step-less values
        self._targets: dict[tuple[str, ...], list[Series]] = {}
        # per names, and per parser plan: (xs.append, ys.append, series) of each target
        self._sinks: dict[tuple[str, ...], tuple] = {}
        self._plan_sinks: dict[object, tuple] = {}
        self._families: dict[tuple[tuple[str, ...], bool], _Family] = {}

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

    def feed_bytes(self, lines: Iterable[bytes]) -> int:
        """Feed raw lines (no trailing newline needed); returns how many gave metrics.

        The hot loop of `extract_file`: a line of a template the parser has seen costs one
        bytes.translate, one dict lookup and a float() per value. A progress-bar line (`\r`
        redraws) whose last state is plain text takes the same path with that state.
        Consecutive lines of plans with the same names (a `_Family`) are gathered and added
        in one go (see `_flush`); whatever would not simply append them is done line by
        line, in order, exactly as before.
        """
        parser = self.parser
        if parser.patterns:
            return self._feed_each(lines)
        plans_get = parser.plans.get
        gathered = parser.inline_plans
        gathered_get = gathered.get
        feed_new = self._feed_new
        flush = self._flush
        marks = DIGIT_MARKS
        count = found = 0
        batch: list[bytes] = []  # lines of one family, not yet added
        parts: list[bytes] = []  # their number slices, line after line
        family = None
        max_batch = _MAX_BATCH
        for count, raw in enumerate(lines, 1):  # noqa: B007 (count is read after the loop)
            if b"\r" in raw:  # a progress bar: only its last state matters
                if len(raw) > MAX_LINE or b"\x1b[" in raw:
                    if batch:
                        found += flush(batch, parts, family)
                    found += feed_new(raw)  # long, or maybe a multi-row redraw: in full
                    continue
                line = raw[raw.rfind(b"\r") + 1 :]
                if b"\x1b" in line or b"\x08" in line or b"\x00" in line or not line.strip():
                    if batch:
                        found += flush(batch, parts, family)
                    found += feed_new(raw)  # escapes to strip, or a blank last segment
                    continue
                # `line` is what reduce_line(raw) gives: a clean line, parsed as one
                template = line.translate(marks)
                if template == line:
                    if batch:
                        found += flush(batch, parts, family)
                    found += feed_new(line)  # no digit: the parser's own rules
                    continue
            else:
                # Plans are keyed by reduced lines (no \r, no escapes), so a hit is clean.
                line = raw
                template = raw.translate(marks)
            known = gathered_get(template)
            if known is not None:  # a plan whose lines can be gathered: gather this one
                take, its_family, its_plan = known
                if its_family is not family:
                    if batch:
                        found += flush(batch, parts, family)
                    family = its_family
                    if its_family.alone:
                        # Its lines came one at a time last time (DeepSpeed's three kinds
                        # of lines in turn): no batch unless the next line is of it too.
                        found += self._feed_planned(its_plan, line)
                        continue
                batch.append(line)
                parts.extend(take(line))
                if len(batch) >= max_batch:
                    found += flush(batch, parts, family)
                continue
            plan = plans_get(template)
            if plan is NOTHING:
                continue  # changes no state: a pending batch can wait
            if batch:
                found += flush(batch, parts, family)
            if plan is None:
                found += feed_new(line)
                continue
            found += self._feed_planned(plan, line)
            its_family = self._family_of(plan)
            if its_family is not None and plan is plans_get(template):
                gathered[template] = (plan.take, its_family, plan)
        if batch:
            found += flush(batch, parts, family)
        self.lines += count
        return found

    def _feed_planned(self, plan, line: bytes) -> int:
        """One line of a template that has a plan; 1 if it gave metrics."""
        if plan.inline:
            return self._feed_inline(plan, line)
        parser = self.parser
        try:
            parsed = parser.apply(plan, line)
        except ValueError:
            parsed = parser.parse_bytes(line)
        return 1 if parsed is not None and self._add(*parsed) else 0

    def _family_of(self, plan) -> _Family | None:
        """The family of a plan's lines, once their series exist; None when its lines must
        go one by one (Keras epochs, `Epoch N/M`, one number only, a name twice)."""
        if plan.keras or plan.doubled or plan.epoch_context_at is not None or not plan.names:
            return None
        sinks = self._sinks.get(plan.names)
        if sinks is None:
            return None
        key = (plan.names, plan.has_step)
        family = self._families.get(key)
        if family is None:
            family = self._families[key] = _Family(plan.names, sinks, plan.has_step)
        return family

    def _flush(self, batch: list[bytes], parts: list[bytes], family: _Family) -> int:
        """Add the gathered lines of `family` and empty the lists.

        In one go when every line would simply append its values: all slices are numbers
        and every value is finite; with a step, every step a whole number >= 0 that differs
        from the step before it; without one, a known x (the last step, or the record's
        epoch). When only the first line would not, it goes alone and the rest together.
        Otherwise line by line, exactly as one at a time."""
        lines = len(batch)
        family.alone = lines == 1
        if lines == 1:
            found = self._feed_planned(self._plan_of(batch[0]), batch[0])
            batch.clear()
            parts.clear()
            return found
        width = family.width
        values = None
        if len(parts) == lines * width:
            try:
                values = list(map(float, parts))
            except ValueError:
                values = None
        if values is not None:
            total = sum(values)
            if total - total == 0:  # all finite (an overflowing sum only costs the fast way)
                add_many = self._add_stepped if family.stepped else self._add_stepless
                added = add_many(family, lines, values)
                if added is None:  # the first line may be the odd one (a repeated step)
                    first = self._feed_planned(self._plan_of(batch[0]), batch[0])
                    added = add_many(family, lines - 1, values[width:])
                    if added is not None:
                        added += first
                    else:
                        del batch[0]
                        return first + self._one_by_one(batch, parts)
                batch.clear()
                parts.clear()
                return added
        return self._one_by_one(batch, parts)

    def _plan_of(self, line: bytes):
        # Nothing in `_flush` adds or drops a plan (a line whose slice is no number is
        # parsed in full, but its template already has a plan), so a gathered line's
        # template still leads to the plan it was gathered under.
        return self.parser.plans[line.translate(DIGIT_MARKS)]

    def _one_by_one(self, batch: list[bytes], parts: list[bytes]) -> int:
        found = 0
        for line in batch:
            found += self._feed_planned(self._plan_of(line), line)
        batch.clear()
        parts.clear()
        return found

    def _add_stepped(self, family: _Family, lines: int, values: list[float]) -> int | None:
        width = family.width
        steps = values[::width]
        if not (steps[0] != self._last_step
                and min(steps) >= 0
                and all(map(float.is_integer, steps))
                and not any(map(eq, steps, islice(steps, 1, None)))):
            return None
        for column, series in enumerate(family.series, 1):
            series.xs.extend(steps)
            series.ys.extend(values[column::width])
        self._last_step = steps[-1]
        self.records += lines
        return lines

    def _add_stepless(self, family: _Family, lines: int, values: list[float]) -> int | None:
        # `_add` with no step, for many lines: a line equal to the one before it (of these
        # names) is a progress bar redrawing itself and adds nothing.
        width = family.width
        rows = list(zip(*[iter(values)] * width, strict=True))
        previous = self._previous.get(family.names)
        fresh = list(map(ne, rows, [None if previous is None else tuple(previous), *rows]))
        kept = list(compress(rows, fresh)) if not all(fresh) else rows
        if self._last_step is not None:
            xs = [self._last_step] * len(kept)
        elif family.epoch_at >= 0:
            xs = [row[family.epoch_at] for row in kept]
        else:
            return None  # x is each series' own index: one by one
        if kept:
            columns = list(zip(*kept, strict=True))
            for series, column in zip(family.series, columns, strict=True):
                series.xs.extend(xs)
                series.ys.extend(column)
            self._previous[family.names] = list(kept[-1])
        self.records += len(kept)
        return len(kept)

    def _feed_inline(self, plan, line: bytes) -> int:
        """One line of an inline plan (`step N ... loss X ...`); 1 if it gave metrics."""
        try:
            values = list(map(float, plan.take(line)))
        except ValueError:
            return self._feed_new(line)  # a slice that is no number: full parse
        if plan.doubled:
            values.pop()
        step = values.pop(0)
        if not (step >= 0 and step.is_integer()):
            step = None  # `step: 2.41`, `step nan`: not a step this time
        if step is None or step == self._last_step:
            return self._add(step, plan.names, values)
        sinks = self._plan_sinks.get(plan)
        if sinks is None:
            sinks = self._sinks_of_plan(plan)
            if sinks is None:  # series not made yet
                return self._add(step, plan.names, values)
        self._last_step = step
        for (append_x, append_y, _), value in zip(sinks, values, strict=True):
            append_x(step)
            append_y(value)
        total = sum(values)
        if total - total:  # a nan or inf among them (or finite values overflowing)
            _note_nonfinite(sinks, values)
        self.records += 1
        return 1

    def _sinks_of_plan(self, plan) -> tuple | None:
        sinks = self._sinks.get(plan.names)
        if sinks is None:  # series not made yet (or a name twice)
            return None
        if len(self._plan_sinks) >= _MAX_PLAN_SINKS:
            self._plan_sinks.clear()  # the parser dropped its plans: forget theirs too
        self._plan_sinks[plan] = sinks
        return sinks

    def _feed_each(self, lines: Iterable[bytes]) -> int:
        count = found = 0
        for raw in lines:
            count += 1
            found += self._feed_new(raw)
        self.lines += count
        return found

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
            # A name twice (two custom groups with one canonical name): no sinks, so
            # those points go one by one below and each nan/inf is noted where it lands.
            self._sinks[names] = tuple((s.xs.append, s.ys.append, s) for s in targets) if (
                len(set(names)) == len(names)) else None
        if step is None:
            if self._previous.get(names) == values:
                return False  # a progress bar drawing the same numbers again
            self._previous[names] = values
            x = self._last_step
            if x is None and "epoch" in names:
                # No step anywhere (HF Trainer's dicts): the record's epoch lines train and
                # eval points up on one chart, where per-series indexes would not.
                x = values[names.index("epoch")]
            if x is None:
                return self._add_by_index(targets, values)
        elif step == self._last_step:
            return self._add_repeated_step(targets, step, values)
        else:
            x = self._last_step = step
        sinks = self._sinks[names]
        if sinks is None:
            for series, value in zip(targets, values, strict=True):
                series.append(x, value)
            self.records += 1
            return True
        for (append_x, append_y, _), value in zip(sinks, values, strict=True):
            append_x(x)
            append_y(value)
        total = sum(values)
        if total - total:  # nan or inf
            _note_nonfinite(sinks, values)
        self.records += 1
        return True

    def _series(self, name: str) -> Series:
        found = self.series.get(name)
        if found is None:
            found = self.series[name] = Series(name)
        return found

    def _add_by_index(self, targets: list[Series], values: list[float]) -> bool:
        for series, value in zip(targets, values, strict=True):
            series.append(len(series.ys), value)
        self.records += 1
        return True

    def _add_repeated_step(self, targets: list[Series], step: float, values: list[float]) -> bool:
        # A second line naming the step of the line before it: skip points it only repeats
        # (a final summary line such as `done: step 300, train loss 0.3996`).
        added = False
        for series, value in zip(targets, values, strict=True):
            if len(series.ys) and series.xs[-1] == step and series.ys[-1] == value:
                continue
            series.append(step, value)
            added = True
        if added:
            self.records += 1
        return added

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
            entry = {k: _json_number(v) for k, v in s.summary().items()}
            entry["first_nonfinite"] = None if bad is None else [bad[0], _json_number(bad[1])]
            entry["x"] = xs
            entry["y"] = [_json_number(y) for y in ys]
            out[name] = entry
        return {"lines": self.lines, "records": self.records, "series": out}


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def extract_file(path: str | os.PathLike, patterns: Sequence[str] = (), *,
                 chunk: int = 1 << 20) -> MetricSet:
    """Every metric of a log file, read in `chunk`-byte blocks (memory stays flat for any
    size). Invalid UTF-8 is replaced; a line longer than 64 KiB keeps its last 64 KiB."""
    metrics = MetricSet(patterns)
    feed = metrics.feed_bytes
    pending = b""
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            lines = block.split(b"\n")  # no copy of the block: its last piece is pending
            if len(lines) == 1:
                pending = _cap(pending + block)
                continue
            if pending:
                lines[0] = pending + lines[0]
            pending = lines.pop()
            feed(lines)
    if pending:
        feed([pending])
    return metrics


def _cap(pending: bytes) -> bytes:
    # A line with no newline for megabytes is a progress bar redrawing with \r: only its
    # end matters, and keeping all of it would let one line eat memory.
    return pending[-MAX_LINE:] if len(pending) > 2 * MAX_LINE else pending
