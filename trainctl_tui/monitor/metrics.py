"""Log lines -> named metric series.

    metrics = MetricSet(patterns=config_patterns)
    for line in follow(log): metrics.feed_line(line)
    xs, ys = metrics.series["loss"].downsample(plot_width)

x is the step when the line gives one (`step`, `global_step`, `iter`, `iteration`, `it`,
Keras' `Epoch N/M`, torchtune's `epoch|step|`); a line without one takes the last step the
log gave, and a log that never gives one uses the record index of each series.

A record repeating the previous record with the same names (same step, same values) is a
progress bar redrawing itself (tqdm, rich, Keras) and is skipped, and so is a point of a line
that names its step when it equals the last point of its series (a final summary line).

Stdlib only; parsing lives in `parsers`, storage and sampling in `series`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence

from .parsers import (
    DIGIT_MARKS, MAX_LINE, NOTHING, MetricsParser, ParsedLine, canonical_name, line_states,
    reduce_line, strip_ansi,
)
from .series import Series, downsample, first_nonfinite

__all__ = [
    "MetricSet", "MetricsParser", "ParsedLine", "Series", "canonical_name", "downsample",
    "extract_file", "first_nonfinite", "line_states", "strip_ansi",
]

DEFAULT_JSON_WIDTH = 200


class MetricSet:
    """All series of one log, fed line by line (live) or from a whole file."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        self.parser = MetricsParser(patterns)
        self.series: dict[str, Series] = {}
        self.lines = 0  # lines fed
        self.records = 0  # lines that added at least one point
        self._last_step: float | None = None
        self._previous: dict[tuple[str, ...], tuple] = {}

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

        The hot loop of `extract_file`: a line whose template the parser knows costs one
        bytes.translate, one dict lookup and a float() per value.
        """
        parser = self.parser
        plans = parser.plans
        apply = parser.apply
        parse = parser.parse_bytes
        add = self._add
        marks = DIGIT_MARKS
        custom = bool(parser.patterns)
        count = found = 0
        for raw in lines:
            count += 1
            if len(raw) > MAX_LINE or b"\r" in raw or b"\x1b" in raw or b"\x08" in raw:
                states = reduce_line(raw)
            else:
                states = (raw,)
            hit = False
            for line in states:
                plan = None if custom else plans.get(line.translate(marks))
                if plan is NOTHING:
                    continue
                if plan is None:
                    parsed = parse(line)
                else:
                    try:
                        parsed = apply(plan, line)
                    except ValueError:
                        parsed = parse(line)
                if parsed is not None and add(*parsed):
                    hit = True
            found += hit
        self.lines += count
        return found

    def _add(self, step: float | None, names: tuple[str, ...], values: list[float]) -> bool:
        signature = (step, values)
        if self._previous.get(names) == signature:
            return False  # a progress bar drawing the same numbers again
        self._previous[names] = signature
        if step is not None:
            self._last_step = step
        x = step if step is not None else self._last_step
        series = self.series
        added = False
        for name, value in zip(names, values):
            found = series.get(name)
            if found is None:
                found = series[name] = Series(name)
            elif step is not None and found.xs[-1] == step and found.ys[-1] == value:
                continue  # the same step and value again: a final summary line, a redraw
            ys = found.ys
            found.xs.append(len(ys) if x is None else x)
            ys.append(value)
            if value - value:  # nan or inf
                found.note_nonfinite()
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
            end = block.rfind(b"\n")
            if end < 0:
                pending = _cap(pending + block)
                continue
            data = pending + block[: end + 1] if pending else block[: end + 1]
            pending = block[end + 1 :]
            lines = data.split(b"\n")
            lines.pop()
            feed(lines)
    if pending:
        feed([pending])
    return metrics


def _cap(pending: bytes) -> bytes:
    # A line with no newline for megabytes is a progress bar redrawing with \r: only its
    # end matters, and keeping all of it would let one line eat memory.
    return pending[-MAX_LINE:] if len(pending) > 2 * MAX_LINE else pending
