"""A block of dense metric lines parsed with a few C-level passes per series, not a Python
loop per line.

A log of `step N ... loss X ...` lines (nanoGPT, key=value prints, JSON lines, DeepSpeed)
repeats a few line templates, and `MetricsParser` keeps a plan per template: which byte slice
is the step, which are the values of which series. `LineBlocks.feed` looks up the plans of a
whole block at once and gives each line a one-byte code: the step plan it has, the plan of a
step-less record (DeepSpeed's `time (ms) | fwd: 0.78 | ...`, a step plan's line whose step is
no step: `step: 2.41`), SKIP (a line that gives nothing), or SLOW (anything else). Then, a
series at a time, `map` cuts the slices of every line feeding it and converts them, and one
`extend` appends them.

The result is what `MetricSet.feed_plain` (the loop a line) gives, line for line: SLOW lines go
through that loop, in order, between the runs of regular lines appended in bulk. In a run, a
line at the step of the step line before it adds only the points that differ from the last
of their series; a step-less record goes at the last step and adds nothing when it repeats
the record of the same names before it (the first one of a run is compared with the values
the loop kept, as are the first step and the step the loop left); before the log's first step
such a record is SLOW (its x is not a step).
"""

from __future__ import annotations

import math
import weakref
from array import array
from collections.abc import Iterable, Iterator
from functools import partial
from itertools import accumulate, compress, islice, repeat
from operator import and_, eq, is_, itemgetter, not_

from .parsers import MAX_LINE, NOTHING, Plan

SLOW, SKIP = 0, 1
MAX_CODES = 256
MIN_LINES = 64  # a smaller block goes through the loop: the passes cost more than they save
NEW_TEMPLATES = 8  # times a block learns new templates before it is fed line by line
LEARN_LINES = 128  # lines fed by the loop from a new template on, to learn the templates
UNKNOWN_SHARE = 16  # a block with more than 1/16 of lines of new templates learns them first
_SLOW_LINES = bytes([1] + [0] * (MAX_CODES - 1))
_FLIP = bytes([1, 0] + [0] * (MAX_CODES - 2))  # translate table: 0 <-> 1


def floats(texts: Iterable[bytes]) -> array:
    """float() of each text, by fastnumbers (the same doubles bit for bit, nan's sign too),
    written straight into the array: twice as fast as float(), and as a list of floats
    put into an array; ValueError if one is no number."""
    global _try_array
    if _try_array is None:
        from fastnumbers import RAISE, try_array

        _try_array = partial(try_array, on_fail=RAISE)
    texts = texts if isinstance(texts, list) else list(texts)
    values = array("d", bytes(8 * len(texts)))  # zeros, one memset: filled in place
    _try_array(texts, values)
    return values


_try_array = None


def _bulk_plan(plan: Plan) -> bool:
    """A plan whose lines only append (step, values) at a new step: the loop's inlined line."""
    return (plan.has_step and not plan.keras and not plan.live_only
            and plan.epoch_context_at is None and plan.progress_of is None
            and len(plan.slices) == len(plan.names) + 1)


def _stepless_plan(plan: Plan) -> bool:
    """A plan of records without a step (`[Rank 0] time (ms) | fwd: 0.78 | bwd: 0.48`): their
    points go at the last step, unless they repeat the record before them."""
    return (plan.stateless and plan.progress_of is None and bool(plan.names)
            and len(plan.slices) == len(plan.names))


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
        self._step_slices: list[slice | None] = [None, None]  # None: a code of step-less lines
        self._value_slices: list[tuple] = [(), ()]  # code -> the slices of its values
        self._widths: list[int] = [0, 0]
        self._step_codes = bytearray(MAX_CODES)  # translate table: 1 for a step plan's code
        self._stepless_codes = bytearray(MAX_CODES)  # ... for a step-less record's code
        self._not_step = bytearray([SLOW, SKIP])  # the codes a step's slice is not cut from
        self._twins: dict[int, int | None] = {}  # step code -> code of its lines' `step: 2.4`
        self._seen = 0  # plans of the parser given a code (or not) so far
        self._generation = self.metrics.parser.generation
        self._deletes: dict[frozenset, bytes] = {}

    def _new_code(self, plan: Plan, width: int, step: bool) -> int | None:
        if len(self._plans) >= MAX_CODES:
            return None
        code = len(self._plans)
        self._plans.append(plan)
        self._step_slices.append(plan.slices[0] if step else None)
        self._value_slices.append(plan.slices[1:] if plan.has_step else plan.slices)
        self._widths.append(width)  # the length of each of its lines
        (self._step_codes if step else self._stepless_codes)[code] = 1
        if not step:
            self._not_step.append(code)
        return code

    def _refresh(self) -> None:
        """Codes for the plans the parser made since the last block."""
        parser = self.metrics.parser
        if parser.generation != self._generation:
            self._reset()
        plans = parser.plans
        if len(plans) <= self._seen:
            return
        for template, plan in islice(plans.items(), self._seen, None):
            if plan not in self._codes and (_bulk_plan(plan) or _stepless_plan(plan)):
                code = self._new_code(plan, len(template), plan.has_step)
                if code is not None:
                    self._codes[plan] = code
        self._seen = len(plans)

    def _twin(self, code: int) -> int:
        """The code of a step plan's lines whose step is no step (`step: 2.41`): the loop
        reads them as step-less records of the same names. SLOW when codes ran out."""
        if code not in self._twins:
            self._twins[code] = self._new_code(self._plans[code], self._widths[code], False)
        twin = self._twins[code]
        return SLOW if twin is None else twin

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
            if None in plans and self._learn(lines, templates, plans):
                self._refresh()
                plans = list(map(metrics.parser.plans.get, templates))
            codes = bytes(map(self._codes.get, plans, repeat(SLOW)))
            if plans.count(None) * UNKNOWN_SHARE <= len(codes):
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
            if first >= MIN_LINES:  # the lines before it have their plans: in bulk
                found += self._feed_coded(lines[:first], templates[:first], codes[:first])
                lines, templates, first = lines[first:], templates[first:], 0
            cut = first + LEARN_LINES  # new templates come together (a parse's first lines)
            found += metrics.feed_plain(lines[:cut], templates[:cut])
            lines, templates = lines[cut:], templates[cut:]
        return found + metrics.feed_plain(lines, templates)

    def _learn(self, lines: list[bytes], templates: list[bytes], plans: list) -> bool:
        """Make the plans of the block's new templates from one plain line of each, when
        they are a few templates of many lines (a step or a value one digit wider); whether
        any was made."""
        unknown = list(compress(range(len(lines)), map(is_, plans, repeat(None))))
        firsts: dict[bytes, bytes] = {}
        for at in unknown:
            key = templates[at]
            if key not in firsts:
                if len(firsts) * 4 > len(unknown):
                    return False  # mostly one-off templates (DeepSpeed's `lr=[0.000859...]`)
                firsts[key] = lines[at]
        parser = self.metrics.parser
        learned = False
        for line in firsts.values():
            if len(line) <= MAX_LINE and not (b"\r" in line or b"\x1b" in line
                                              or b"\x08" in line):
                parser.learn(line)  # the loop would parse such a line as it is
                learned = True
        return learned

    def _feed_coded(self, lines: list[bytes], templates: list[bytes], codes: bytes) -> int:
        metrics = self.metrics
        n = len(lines)
        if codes.count(SLOW) * 4 > n:
            return metrics.feed_plain(lines, templates)  # mostly irregular: the loop is faster
        step_codes = bytes(self._step_codes)
        step_mask = codes.translate(step_codes)
        step_at = list(compress(range(n), step_mask))
        if len(step_at) * 2 < n:
            return metrics.feed_plain(lines, templates)  # not a block of dense lines
        try:
            steps = floats(self._cut(compress(lines, step_mask),
                                     codes.translate(None, bytes(self._not_step)),
                                     self._step_slices))
        except ValueError:
            return metrics.feed_plain(lines, templates)
        regular = bytearray(codes)
        if not (all(map(float.is_integer, steps)) and min(steps, default=0.0) >= 0):
            # no step this time (`step: 2.41`): a step-less record of the same names
            invalid = [not (step >= 0 and step.is_integer()) for step in steps]
            for at in compress(step_at, invalid):
                regular[at] = self._twin(regular[at])
            steps = array("d", compress(steps, map(eq, invalid, repeat(False))))
        stepless_codes = bytes(self._stepless_codes)
        if metrics.last_step is None:  # before the block's first step: x is no step (the loop)
            first_step = bytes(regular).translate(step_codes).find(1)
            for at in compress(range(n if first_step < 0 else first_step),
                               bytes(regular).translate(stepless_codes)):
                regular[at] = SLOW
        regular = bytes(regular)
        alone = list(compress(range(n), regular.translate(_SLOW_LINES)))
        if len(alone) * 4 > n:
            return metrics.feed_plain(lines, templates)  # mostly irregular: the loop is faster
        try:
            block = _Block(self, lines, regular, steps, step_codes, stepless_codes)
        except ValueError:
            return metrics.feed_plain(lines, templates)
        return self._walk(lines, templates, block, alone)

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

    def _walk(self, lines, templates, block: _Block, alone: list[int]) -> int:
        """Append the runs of regular lines; feed the lines between them to the loop."""
        metrics = self.metrics
        found = 0
        at = 0  # the next line
        n = len(lines)
        alone.append(n)
        for stop in alone:
            if block.regular.count(SKIP, at, stop) < stop - at:
                added = self._append_run(block, at, stop)
                metrics.records += added
                found += added
            if stop < n:
                found += metrics.feed_plain(lines[stop:stop + 1], templates[stop:stop + 1])
            at = stop + 1
        metrics.lines += n - len(alone) + 1
        return found

    def _append_run(self, block: _Block, at: int, stop: int) -> int:
        """Append the points of the regular lines [at, stop); how many of them added one."""
        metrics, plans = self.metrics, self._plans
        run = block.regular[at:stop]
        for code in codes_in_order(run, len(plans)):  # series in the order lines
            metrics.name_series(plans[code].names)             # name them
        last_step = metrics.last_step
        previous = metrics.carried_state()["previous"]
        groups = [group for group in block.groups if group.mask.find(1, at, stop) >= 0]
        for group in groups:  # its first record here repeats the last one the loop kept?
            first = group.mask.find(1, at, stop)
            block.keep[first] = previous.get(group.names) != group.row(first)
        first_step = block.step_mask.find(1, at, stop)
        first_repeats = first_step >= 0 and block.step_of(first_step) == last_step
        any_repeat = first_repeats or (first_step >= 0 and
                                       block.repeats.find(1, first_step + 1, stop) >= 0)
        if any_repeat and metrics.reads is not None:
            metrics.reads["x"] = True
        repeats = bytearray(block.repeats[at:stop]) if any_repeat else None
        if any_repeat:  # the run's first step line: against the step the loop left
            repeats[first_step - at] = first_repeats
        leading = stop if first_step < 0 else first_step  # step-less lines before any step
        keep = block.keep[at:stop]
        dropped: dict[int, int] = {}  # run line -> points it did not add
        for column in block.columns:
            feeds = run.translate(column.table)
            count = feeds.count(1)
            if not count:
                continue
            series = metrics.series[column.name]
            start = column.taken
            column.taken = start + count
            xs, ys = column.xs[start:start + count], column.ys[start:start + count]
            if column.stepless and leading > at:  # at the step the lines before them left
                ahead = feeds.count(1, 0, leading - at)
                xs[:ahead] = array("d", repeat(last_step, ahead))
            kept = bytes(compress(keep, feeds)) if column.stepless else None
            if kept is not None and kept.count(0):  # a record equal to the one before it
                xs, ys = array("d", compress(xs, kept)), array("d", compress(ys, kept))
            if any_repeat:
                xs, ys = self._skip_repeats(series, feeds, kept, repeats, at, xs, ys, dropped)
            before = len(series.ys)
            series.xs.extend(xs)
            series.ys.extend(ys)
            if not column.finite:
                series.count_nonfinite(before)
        for group in groups:  # the loop's last step-less values: the last record kept
            rows = bytes(compress(keep, group.mask[at:stop]))
            if rows.count(1):
                lines_at = list(compress(range(at, stop), group.mask[at:stop]))
                first, last = rows.find(1), rows.rfind(1)
                previous[group.names] = group.row(lines_at[first])  # a parallel worker notes
                if last != first:                                   # the first one set
                    previous[group.names] = group.row(lines_at[last])
        last = block.step_mask.rfind(1, at, stop)
        if last >= 0:
            metrics.last_step = block.step_of(last)
        step_lines = block.step_mask.count(1, at, stop)
        full = sum(1 for line, count in dropped.items()
                   if count == len(plans[block.regular[line]].names))
        stepless = bytes(compress(keep, run.translate(block.stepless_codes))).count(1)
        return step_lines - full + stepless

    @staticmethod
    def _skip_repeats(series, feeds: bytes, kept: bytes | None, repeats: bytearray, at: int,
                      xs: array, ys: array, dropped: dict[int, int]) -> tuple[array, array]:
        """`_add_repeated_step`: a line at the step before it skips the points that equal
        the last point of their series."""
        flags = bytes(compress(repeats, feeds))
        if kept is not None:
            flags = bytes(compress(flags, kept))
        if not flags.count(1):
            return xs, ys
        # points equal to the point before them (a skipped one's equals it too)
        first = bool(len(series.ys)) and xs[0] == series.xs[-1] and ys[0] == series.ys[-1]
        if flags.count(1) * 8 < len(flags):  # a few: one at a time
            marks = bytearray(len(flags))
            for point in compress(range(len(flags)), flags):
                if (xs[point] == xs[point - 1] and ys[point] == ys[point - 1] if point
                        else first):
                    marks[point] = 1
            same = bytes(marks)
        else:
            same = bytes(map(and_, flags, map(and_, [first, *map(eq, islice(xs, 1, None), xs)],
                                              [first, *map(eq, islice(ys, 1, None), ys)])))
        if not same.count(1):
            return xs, ys
        lines = list(compress(range(at, at + len(feeds)), feeds))  # each point's line
        if kept is not None:
            lines = list(compress(lines, kept))
        for point in compress(range(len(same)), same):
            dropped[lines[point]] = dropped.get(lines[point], 0) + 1
        keep = same.translate(_FLIP)
        return array("d", compress(xs, keep)), array("d", compress(ys, keep))


def codes_in_order(codes: bytes, count: int) -> list[int]:
    """The codes of regular lines (not SLOW, not SKIP, below `count`) in `codes`, in the
    order they first appear: a search a code, not a pass a line."""
    firsts = [(codes.find(code), code) for code in range(SKIP + 1, count)]
    return [code for at, code in sorted(firsts) if at >= 0]


def select(values: array, mask: bytes, chosen: dict[tuple, array]) -> array:
    """The values where `mask` is 1 (read only: the array may be `values` itself, or one
    given for the same mask before, kept in `chosen`)."""
    if mask.count(1) == len(mask):
        return values
    key = (id(values), mask)
    found = chosen.get(key)
    if found is None:
        runs = mask.count(b"\x00\x01") + (mask[:1] == b"\x01")  # of consecutive 1s
        if runs * 16 < mask.count(1):  # long runs (a few lines skipped): copied in C
            found, view, at = array("d"), memoryview(values).cast("B"), mask.find(1)
            while at >= 0:
                end = mask.find(0, at)
                end = len(mask) if end < 0 else end
                found.frombytes(view[8 * at:8 * end])
                at = mask.find(1, end)
        else:
            found = array("d", compress(values, mask))
        chosen[key] = found
    return found


class _Block:
    """What the regular lines of one block give: a column of points for each series (in the
    order the loop would create them) and the step-less records' groups."""

    def __init__(self, blocks: LineBlocks, lines: list[bytes], regular: bytes, steps: array,
                 step_codes: bytes, stepless_codes: bytes) -> None:
        n = len(lines)
        self.regular = regular
        self.steps = steps
        self.stepless_codes = stepless_codes
        self.step_mask = regular.translate(step_codes)  # 1 for a line at a step
        stepless = regular.translate(stepless_codes).count(1)
        xs = None
        if stepless:  # x of each line: its step, or the last step line's before it (nan: none)
            below = array("d", [math.nan])
            below.extend(steps)
            xs = array("d", map(below.__getitem__, accumulate(self.step_mask)))
        # 1 for a step line at the step of the step line before it
        repeats = bytearray(n)
        for at in compress(compress(range(n), self.step_mask),
                           [0, *map(eq, islice(steps, 1, None), steps)]):
            repeats[at] = 1
        self.repeats = bytes(repeats)
        self.keep = bytearray(b"\x01") * n  # 0: a step-less record equal to the one before
        step_codes_only = regular.translate(None, bytes(blocks._not_step))
        plans = blocks._plans
        feeding: dict[str, set[int]] = {}
        for code in codes_in_order(regular, len(plans)):
            for name in plans[code].names:
                feeding.setdefault(name, set()).add(code)
        self.columns: list[_Column] = []
        by_name: dict[str, _Column] = {}
        chosen: dict[tuple, array] = {}  # series fed by the same lines share their xs
        for name, codes in feeding.items():
            table = bytearray(MAX_CODES)
            slices: list[slice | None] = [None] * MAX_CODES
            for code in codes:
                table[code] = 1
                slices[code] = blocks._value_slices[code][plans[code].names.index(name)]
            table = bytes(table)
            delete = blocks._delete_all_but(frozenset(codes))
            feeds = regular.translate(table)
            ys = floats(blocks._cut(compress(lines, feeds), regular.translate(None, delete),
                                    slices))
            with_stepless = any(map(stepless_codes.__getitem__, codes))
            column = _Column(name, table, select(xs, feeds, chosen) if with_stepless
                             else select(steps, step_codes_only.translate(table), chosen),
                             ys, with_stepless)
            self.columns.append(column)
            by_name[name] = column
        self.groups: list[_Group] = []
        stepless_names: dict[tuple[str, ...], set[int]] = {}
        for code in codes_in_order(regular, len(plans)):
            if stepless_codes[code]:
                stepless_names.setdefault(plans[code].names, set()).add(code)
        for names, codes in stepless_names.items():
            table = bytearray(MAX_CODES)
            for code in codes:
                table[code] = 1
            group = _Group(names, regular.translate(bytes(table)), by_name, regular)
            self.groups.append(group)
            for at in compress(group.lines, map(not_, group.keep_rows)):
                self.keep[at] = 0


    def step_of(self, line: int) -> float:
        """The step of a step line."""
        return self.steps[self.step_mask.count(1, 0, line)]


class _Group:
    """The step-less records of one set of names in a block: their values, and which of
    them differ from the record before them (the first one is checked when appended)."""

    __slots__ = ("names", "mask", "lines", "values", "keep_rows")

    def __init__(self, names: tuple[str, ...], mask: bytes, columns: dict, regular: bytes
                 ) -> None:
        self.names, self.mask = names, mask
        self.lines = list(compress(range(len(mask)), mask))
        self.values = [array("d", compress(columns[name].ys,
                                           compress(mask, regular.translate(columns[name].table))))
                       for name in names]
        same = b"\x00" + b"\x01" * (len(self.lines) - 1)  # the first: checked when appended
        for values in self.values:
            same = bytes(map(and_, same, [0, *map(eq, islice(values, 1, None), values)]))
        self.keep_rows = bytes(map(not_, same))

    def row(self, line: int) -> list[float]:
        """The values of the record on `line`, as the loop holds them."""
        at = self.mask.count(1, 0, line)
        return [values[at] for values in self.values]


class _Column:
    """The points regular lines of one block give one series."""

    __slots__ = ("name", "table", "xs", "ys", "stepless", "finite", "taken")

    def __init__(self, name: str, table: bytes, xs: array, ys: array, stepless: bool) -> None:
        self.name = name
        self.table = table  # translate table: 1 for the codes of lines feeding the series
        self.xs, self.ys = xs, ys
        self.stepless = stepless  # some of its points are step-less records'
        self.finite = math.isfinite(sum(ys))
        self.taken = 0  # points appended so far
