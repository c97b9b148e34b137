"""A block of dense metric lines parsed with a few C-level passes per series, not a Python
loop per line.

A log of `step N ... loss X ...` lines (nanoGPT, key=value prints, JSON lines, DeepSpeed)
repeats a few line templates, and `MetricsParser` keeps a plan per template: which byte slice
is the step, which are the values of which series. `LineBlocks.feed` looks up the plans of a
whole block at once and gives each line a one-byte code: the step plan it has, SKIP (a line
that gives nothing), or SLOW (anything else). Then, a series at a time, `map` cuts the slices
of every line feeding it and converts them, and one `extend` appends them.

The result is what `MetricSet.feed_plain` (the loop a line) gives, line for line: a SLOW line,
a line whose step is the step before it (a summary line, a repeated record) or no step at all
(`step: 2.41`) goes through that loop, in order, between the runs of lines fed in bulk; a run
that starts at the step a line fed alone left is fed alone from there. The lines of a run only
append (x = their step), so the state they see is the state the loop would have seen.
"""

from __future__ import annotations

import math
import weakref
from array import array
from collections.abc import Iterable, Iterator
from functools import partial
from itertools import compress, islice, repeat
from operator import eq, itemgetter

from .parsers import NOTHING, Plan

SLOW, SKIP = 0, 1
MAX_CODES = 256
MIN_LINES = 64  # a smaller block goes through the loop: the passes cost more than they save
NEW_TEMPLATES = 8  # times a block learns new templates before it is fed line by line
LEARN_LINES = 128  # lines fed by the loop from a new template on, to learn the templates
_STEP_LINES = bytes([0, 0] + [1] * (MAX_CODES - 2))  # translate table: 1 for a step plan
_SLOW_LINES = bytes([1] + [0] * (MAX_CODES - 1))
_NOT_STEP = bytes([SLOW, SKIP])
_SKIP = bytes([SKIP])


def floats(texts: Iterable[bytes]) -> array:
    """float() of each text, by fastnumbers (twice as fast, the same doubles bit for bit);
    ValueError if one is no number."""
    global _try_float
    if _try_float is None:
        from fastnumbers import RAISE, try_float

        _try_float = partial(try_float, on_fail=RAISE, map=True)
    return array("d", _try_float(texts))


_try_float = None


def _bulk_plan(plan: Plan) -> bool:
    """A plan whose lines only append (step, values) at a new step: the loop's inlined line."""
    return (plan.has_step and not plan.keras and not plan.live_only
            and plan.epoch_context_at is None and plan.progress_of is None
            and len(plan.slices) == len(plan.names) + 1)


class LineBlocks:
    """The block feeder of one MetricSet."""

    def __init__(self, metrics) -> None:
        self._metrics = weakref.ref(metrics)  # no cycle: a MetricSet goes when its user drops it
        self._reset()

    @property
    def metrics(self):
        return self._metrics()

    def _reset(self) -> None:
        self._codes: dict[Plan, int] = {NOTHING: SKIP}
        self._plans: list[Plan | None] = [None, NOTHING]  # code -> plan
        self._step_slices: list[slice | None] = [None, None]
        self._widths: list[int] = [0, 0]
        self._seen = 0  # plans of the parser given a code (or not) so far
        self._generation = self.metrics.parser.generation
        self._deletes: dict[frozenset, bytes] = {}

    def _refresh(self) -> None:
        """Codes for the plans the parser made since the last block."""
        parser = self.metrics.parser
        if parser.generation != self._generation:
            self._reset()
        plans = parser.plans
        if len(plans) <= self._seen:
            return
        for template, plan in islice(plans.items(), self._seen, None):
            if len(self._plans) < MAX_CODES and plan not in self._codes and _bulk_plan(plan):
                self._codes[plan] = len(self._plans)
                self._plans.append(plan)
                self._step_slices.append(plan.slices[0])
                self._widths.append(len(template))  # the length of each of its lines
        self._seen = len(plans)

    def _delete_all_but(self, codes: frozenset) -> bytes:
        found = self._deletes.get(codes)
        if found is None:
            if len(self._deletes) > 1024:
                self._deletes.clear()
            found = self._deletes[codes] = bytes(c for c in range(MAX_CODES) if c not in codes)
        return found

    def feed(self, lines: list[bytes], templates: list[bytes]) -> int:
        """Feed a block of lines (with their templates); how many gave metrics."""
        metrics, found = self.metrics, 0
        for _ in range(NEW_TEMPLATES):
            if len(lines) < MIN_LINES:
                break
            self._refresh()
            plans = list(map(metrics.parser.plans.get, templates))
            codes = bytes(map(self._codes.get, plans, repeat(SLOW)))
            if codes.count(SLOW) * 4 <= len(codes) or None not in plans:
                return found + self._feed_coded(lines, templates, codes)
            # A template new to the parser (the first block, a step with one more digit):
            # the loop makes its plan from its first line, the rest of its lines use it.
            first = plans.index(None)
            if b"\r" in templates[first]:
                break  # bar lines have no plan: this block is for the loop
            new = [template for template, plan in zip(templates, plans, strict=True)
                   if plan is None]
            if len(set(new)) * 4 > len(new):
                break  # mostly one-off templates (DeepSpeed's `lr=[0.000859...]`): the loop
            cut = first + LEARN_LINES  # new templates come together (a parse's first lines)
            found += metrics.feed_plain(lines[:cut], templates[:cut])
            lines, templates = lines[cut:], templates[cut:]
        return found + metrics.feed_plain(lines, templates)

    def _feed_coded(self, lines: list[bytes], templates: list[bytes], codes: bytes) -> int:
        metrics = self.metrics
        n = len(lines)
        if codes.count(SLOW) * 4 > n:
            return metrics.feed_plain(lines, templates)  # mostly irregular: the loop is faster
        step_mask = codes.translate(_STEP_LINES)
        step_at = list(compress(range(n), step_mask))
        if len(step_at) * 2 < n:
            return metrics.feed_plain(lines, templates)  # not a block of dense lines
        try:
            steps = floats(self._cut(compress(lines, step_mask), codes.translate(None, _NOT_STEP),
                                     self._step_slices))
        except ValueError:
            return metrics.feed_plain(lines, templates)
        regular = codes
        if not (all(map(float.is_integer, steps)) and min(steps, default=0.0) >= 0):
            # no step this time (`step: 2.41`): the loop reads the line as step-less
            invalid = [not (step >= 0 and step.is_integer()) for step in steps]
            marked = bytearray(codes)
            for at in compress(step_at, invalid):
                marked[at] = SLOW
            regular = bytes(marked)
            steps = array("d", compress(steps, map(eq, invalid, repeat(False))))
        alone = list(compress(range(n), regular.translate(_SLOW_LINES)))
        if len(alone) * 4 > n:
            return metrics.feed_plain(lines, templates)  # mostly irregular: the loop is faster
        # A step the same as the step line's before: `_add_repeated_step` (the first line
        # of a run is compared with the step the loop left when the run starts).
        repeats = bytes([0, *map(eq, islice(steps, 1, None), steps)])
        try:
            columns = self._columns(lines, regular, steps, repeats)
        except ValueError:
            return metrics.feed_plain(lines, templates)
        return self._walk(lines, templates, regular, steps, repeats, alone, columns)

    def _cut(self, lines: Iterable[bytes], codes: bytes, slices: list) -> Iterator[bytes]:
        """The slice each line's code gives (`slices[code]`), of each line."""
        present = set(codes)
        if len(present) > 1:  # templates whose digits differ in width before or after it
            starts = {(slices[code].start, slices[code].stop) for code in present}
            widths = self._widths
            ends = {(slices[code].start - widths[code], slices[code].stop - widths[code])
                    for code in present}
            if len(starts) > 1 and len(ends) > 1:
                return map(bytes.__getitem__, lines, map(slices.__getitem__, codes))
            start, stop = starts.pop() if len(starts) == 1 else ends.pop()
            return map(itemgetter(slice(start, stop or None)), lines)  # one getter for all
        return map(itemgetter(slices[present.pop()]) if present else repeat(None), lines)

    def _columns(self, lines: list[bytes], regular: bytes, steps: array,
                 repeats: bytes) -> list[_Column]:
        """The points the regular lines give each series, in the order the loop would
        create the series."""
        plans = self._plans
        regular_steps = regular.translate(None, _NOT_STEP)
        feeding: dict[str, set[int]] = {}
        for code in dict.fromkeys(regular_steps):
            for name in plans[code].names:
                feeding.setdefault(name, set()).add(code)
        columns = []
        for name, codes in feeding.items():
            table = bytearray(MAX_CODES)
            slices: list[slice | None] = [None] * MAX_CODES
            for code in codes:
                table[code] = 1
                plan = plans[code]
                slices[code] = plan.slices[1 + plan.names.index(name)]
            table = bytes(table)
            delete = self._delete_all_but(frozenset(codes))
            ys = floats(self._cut(compress(lines, regular.translate(table)),
                                  regular.translate(None, delete), slices))
            feeds = regular_steps.translate(table)
            columns.append(_Column(name, table, delete, array("d", compress(steps, feeds)),
                                   ys, bytes(compress(repeats, feeds))))
        return columns

    def _walk(self, lines, templates, regular: bytes, steps: array, repeats: bytes,
              alone: list[int], columns: list[_Column]) -> int:
        """Append the runs of regular lines; feed the lines between them to the loop."""
        metrics = self.metrics
        found = 0
        at = done = 0  # the next line; step lines appended so far
        n = len(lines)
        alone.append(n)
        for stop in alone:
            run = regular[at:stop].translate(None, _SKIP)
            if run:
                added = self._append_run(run, done, steps, repeats, columns)
                metrics.last_step = steps[done + len(run) - 1]
                done += len(run)
                metrics.records += added
                found += added
            if stop < n:
                found += metrics.feed_plain(lines[stop:stop + 1], templates[stop:stop + 1])
            at = stop + 1
        metrics.lines += n - len(alone) + 1
        return found

    def _append_run(self, run: bytes, done: int, steps: array, repeats: bytes,
                    columns: list[_Column]) -> int:
        """Append the points of one run of step lines; how many of its lines added one."""
        metrics, plans = self.metrics, self._plans
        for code in dict.fromkeys(run):  # series are created in the order lines name them
            metrics.name_series(plans[code].names)
        first_repeats = steps[done] == metrics.last_step
        any_repeat = first_repeats or repeats.find(1, done + 1, done + len(run)) >= 0
        if any_repeat and metrics.reads is not None:
            metrics.reads["x"] = True
        dropped: dict[int, int] = {}  # run line -> points it did not add
        for column in columns:
            count = len(run.translate(None, column.delete))
            if not count:
                continue
            series = metrics.series[column.name]
            start = column.taken
            column.taken = start + count
            xs, ys = column.xs[start:start + count], column.ys[start:start + count]
            if any_repeat:
                xs, ys = self._skip_repeats(series, run, column, start, xs, ys,
                                            first_repeats, dropped)
            before = len(series.ys)
            series.xs.extend(xs)
            series.ys.extend(ys)
            if not column.finite:
                series.count_nonfinite(before)
        return len(run) - sum(1 for line, count in dropped.items()
                              if count == len(plans[run[line]].names))

    @staticmethod
    def _skip_repeats(series, run: bytes, column: _Column, start: int, xs: array, ys: array,
                      first_repeats: bool, dropped: dict[int, int]) -> tuple[array, array]:
        """`_add_repeated_step`: a line at the step before it skips the points that equal
        the last point of their series."""
        repeats = bytearray(column.repeats[start:start + len(xs)])
        if column.table[run[0]]:
            repeats[0] = first_repeats
        same = []  # points equal to the point before them (a skipped one's equals it too)
        for at in compress(range(len(repeats)), repeats):
            if at:
                if xs[at] == xs[at - 1] and ys[at] == ys[at - 1]:
                    same.append(at)
            elif len(series.ys) and xs[0] == series.xs[-1] and ys[0] == series.ys[-1]:
                same.append(at)
        if not same:
            return xs, ys
        lines = list(compress(range(len(run)), run.translate(column.table)))
        keep = bytearray(b"\x01") * len(xs)
        for at in same:
            dropped[lines[at]] = dropped.get(lines[at], 0) + 1
            keep[at] = 0
        return array("d", compress(xs, keep)), array("d", compress(ys, keep))


class _Column:
    """The points regular lines of one block give one series."""

    __slots__ = ("name", "table", "delete", "xs", "ys", "repeats", "finite", "taken")

    def __init__(self, name: str, table: bytes, delete: bytes, xs: array, ys: array,
                 repeats: bytes) -> None:
        self.name = name
        self.table = table  # translate table: 1 for the codes of lines feeding the series
        self.delete = delete  # the other codes
        self.xs, self.ys = xs, ys
        self.repeats = repeats  # 1 for a point of a line whose step repeats the one before
        self.finite = math.isfinite(sum(ys))
        self.taken = 0  # points appended so far
