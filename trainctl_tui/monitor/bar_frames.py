"""The records of a progress-bar line (thousands of `\\r` frames) found with C-level passes
over all its frames, not a Python loop a frame.

`MetricSet._feed_frames` reads a bar line frame by frame: a frame whose counter (`12/24`)
is the next frame's too is replaced by it (Lightning draws each batch twice), the others are
records, each adding the values that changed. `bar_records` gives the same records for the
common line: every frame a bar with a counter, of a plan without a step (Lightning's
`Epoch 1: 46%|...| 11/24 [..., loss=0.5]`, tqdm with an epoch in its postfix). For any other
line it returns None, and the frame loop reads it.

What a line's templates say (where each plan's counter and values are, which templates one
getter cuts alike) is worked out once per sequence of templates and kept in a `BarCache`:
a Lightning epoch's lines repeat the same few.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from itertools import compress, groupby, islice, repeat
from operator import add, itemgetter, ne, truediv

from .line_blocks import floats
from .parsers import KERAS_FRAME, NOTHING, Plan, epoch_fraction

MIN_FRAMES = 16  # fewer: the frame loop costs less than the passes
_CACHE_LIMIT = 4096  # entries of a BarCache's dicts (one-off templates: start over)
_TOTALS = 16  # bar totals whose counters' fractions a BarCache keeps


class BarRun:
    """`count` consecutive records of one set of names: their x and their values, a column
    a name; an x or a column that is one float is that value in every record."""

    __slots__ = ("names", "x", "count", "columns")

    def __init__(self, names: tuple[str, ...], x: float | array, count: int,
                 columns: list[float | array]) -> None:
        self.names, self.x, self.count, self.columns = names, x, count, columns


class _Fractions(dict):
    """`epoch_fraction(done, total)` of a bar's counter texts, for one total: the next
    epoch's frames show the same counters."""

    __slots__ = ("total",)
    LIMIT = 1 << 15  # counters kept (a bar of more batches looks the rest up no more)

    def __init__(self, total: float) -> None:
        super().__init__()
        self.total = total

    def of(self, done: list[bytes]) -> Iterable[float]:
        """The fraction of each counter text: looked up when all were seen before, else
        computed (and kept while there is room). ValueError when one is no number."""
        if all(map(self.__contains__, done)):
            return map(self.__getitem__, done)
        values, total = floats(done), self.total
        if total > 0 and all(map((0.0).__le__, values)) and all(map(total.__ge__, values)):
            fractions = array("d", map(truediv, values, repeat(total)))  # nan: neither
        else:
            fractions = array("d", map(epoch_fraction, values, repeat(total)))
        if len(self) + len(done) <= self.LIMIT:
            self.update(zip(done, fractions, strict=True))
        return fractions


class BarCache:
    """What `bar_records` learned of a MetricSet's bar templates. A plan of the parser is
    one template's, so the plans a line's frames have stand for their templates."""

    def __init__(self) -> None:
        self.counters: dict[tuple, tuple | None] = {}  # (plan, x is the epoch) -> counter
        self.layouts: dict[tuple, list] = {}  # plans in a line, in order -> its runs' cuts
        self.fractions: dict[bytes, _Fractions] = {}  # a bar's total -> its fractions

    def fractions_of(self, total: bytes) -> _Fractions:
        found = self.fractions.get(total)
        if found is None:
            if len(self.fractions) >= _TOTALS:
                self.fractions.clear()
            found = self.fractions[total] = _Fractions(float(total))
        return found


def bar_records(frames: list[bytes], templates: list[bytes], plans: dict[bytes, Plan],
                shapes: dict[bytes, tuple], last_step: float | None, cache: BarCache,
                numbers: dict[bytes, float]
                ) -> tuple[list[BarRun] | None, list[bytes], list[bytes]]:
    """(the records of one whole bar line, its frames cleaned of escapes, or None when the
    frame loop must read it: a new template, a glued print, a frame with a step, ...; the
    frames and templates for that loop, less frames it would skip). Raises ValueError when
    a slice is no number (the loop then reads the line too). `numbers`: float() of a text
    (a lookup where seen before), for the values a whole line shows alike."""
    if not frames[0]:  # the line starts with its first \r
        frames, templates = frames[1:], templates[1:]
    plan_of = list(map(plans.get, templates))
    if None in plan_of or NOTHING in plan_of:  # frames the loop skips, or cannot read here
        if None in plan_of and any(frame.strip() for frame, plan
                                   in zip(frames, plan_of, strict=True) if plan is None):
            return None, frames, templates  # a template new to the parser
        bars = [plan is not NOTHING and plan is not None for plan in plan_of]
        frames = list(compress(frames, bars))
        templates = list(compress(templates, bars))
        plan_of = list(compress(plan_of, bars))
    if len(frames) < MIN_FRAMES:
        return None, frames, templates
    return (_records(frames, templates, plan_of, shapes, last_step, cache, numbers),
            frames, templates)


def _counter_at(plan: Plan, template: bytes, shapes: dict[bytes, tuple],
                last_step: float | None, cache: BarCache) -> tuple | None:
    """(from the start, from the end) slices of the counter of `plan`'s frames, or None when
    they are no frames read here: not seen yet, no counter, Keras, a print glued on, a step."""
    key = (plan, last_step is None)
    found = cache.counters.get(key)
    if found is not None:
        return found
    shape = shapes.get(template)
    if shape is None or shape[0] is None or shape[0] == KERAS_FRAME or shape[1] is not None:
        return None  # not seen yet, no counter, Keras, a print glued to the frame
    if shape[2] is not None and "epoch" not in plan.names:
        return None  # x at the tqdm counter: a record with a step
    if not plan.stateless or (last_step is None and "epoch" not in plan.names):
        return None
    if len(cache.counters) >= _CACHE_LIMIT:
        cache.counters.clear()
    start, stop = shape[0]
    width = len(template)
    found = cache.counters[key] = (slice(start, stop), slice(start - width, (stop - width) or None))
    return found


def _one_getter(cuts: list[tuple]) -> itemgetter | None:
    """The getter that cuts the same bytes from every template of `cuts` ((from the start,
    from the end) slices, one a template), counting from the start or from the end."""
    starts = {(cut.start, cut.stop) for cut, _ in cuts}
    if len(starts) == 1:
        return itemgetter(cuts[0][0])
    ends = {(cut.start, cut.stop) for _, cut in cuts}
    return itemgetter(cuts[0][1]) if len(ends) == 1 else None


def _records(frames: list[bytes], templates: list[bytes], plan_of: list[Plan],
             shapes: dict[bytes, tuple], last_step: float | None, cache: BarCache,
             numbers: dict[bytes, float]) -> list[BarRun] | None:
    groups, at = [], 0  # a template's frames come in runs: (plan, count)
    for plan, group in groupby(plan_of):
        count = len(list(group))
        groups.append((plan, count, templates[at]))
        at += count
    counter_cuts = []
    for plan, _, template in groups:
        cuts = _counter_at(plan, template, shapes, last_step, cache)
        if cuts is None:
            return None
        counter_cuts.append(cuts)
    getter = _one_getter(counter_cuts)
    if getter is not None:
        counters = list(map(getter, frames))
    else:
        counters, at = [], 0
        for (_, count, _), (from_start, _) in zip(groups, counter_cuts, strict=True):
            counters += map(itemgetter(from_start), frames[at:at + count])
            at += count
    last = bytes([*map(ne, counters, islice(counters, 1, None)), True])  # of frames at
    if last.count(0):                                                    # one counter
        frames = list(compress(frames, last))
        plan_of = list(compress(plan_of, last))
        groups, at = [], 0
        for plan, group in groupby(plan_of):
            count = len(list(group))
            groups.append((plan, count, None))
            at += count
    key = tuple(plan for plan, _, _ in groups)
    layout = cache.layouts.get(key)
    if layout is None:
        widths = {plan: len(frame) for plan, frame in zip(plan_of, frames, strict=True)}
        layout = _layout(key, widths)
        if len(cache.layouts) >= _CACHE_LIMIT:
            cache.layouts.clear()
        cache.layouts[key] = layout
    runs, at, group = [], 0, 0
    for first, joined, getters in layout:
        size = sum(count for _, count, _ in groups[group:group + joined])
        group += joined
        runs.append(_run(first, frames[at:at + size], getters, last_step, cache, numbers))
        at += size
    return runs


def _layout(plans: tuple[Plan, ...], widths: dict[Plan, int]) -> list[tuple]:
    """The runs of a line whose frames have `plans` (a group of frames each, in order):
    (the first plan of a run, how many groups it holds, a getter for each slice). Templates
    that differ only where the bar fills up (`|███   |`, a multi-byte block a step) cut the
    same bytes: before the bar from the frame's start, after it from its end."""
    layout, cuts, first, joined = [], None, None, 0
    for plan in plans:
        if cuts is not None:
            merged = _join(cuts, plan, widths[plan]) if _alike(plan, first) else None
            if merged is not None:
                cuts, joined = merged, joined + 1
                continue
            layout.append((first, joined, _getters(cuts)))
        first, joined, cuts = plan, 1, _cuts(plan, widths[plan])
    if cuts is not None:
        layout.append((first, joined, _getters(cuts)))
    return layout


def _getters(cuts: list[tuple]) -> list[itemgetter]:
    return [itemgetter(from_end if from_start is None else from_start)
            for from_start, from_end in cuts]


def _cuts(plan: Plan, width: int) -> list[tuple]:
    """Each slice of `plan`, counted from the frame's start and from its end."""
    return [(cut, slice(cut.start - width, (cut.stop - width) or None)) for cut in plan.slices]


def _alike(plan: Plan, other: Plan) -> bool:
    return (plan.names == other.names and plan.progress_of == other.progress_of
            and len(plan.slices) == len(other.slices))


def _join(cuts: list[tuple], plan: Plan, width: int) -> list[tuple] | None:
    """The slices both `cuts` and `plan` cut alike (from the start or from the end), or
    None when one of them is cut alike neither way."""
    joined = []
    for (from_start, from_end), (start, end) in zip(cuts, _cuts(plan, width), strict=True):
        from_start = from_start if from_start == start else None
        from_end = from_end if from_end == end else None
        if from_start is None and from_end is None:
            return None
        joined.append((from_start, from_end))
    return joined


def _run(plan: Plan, frames: list[bytes], getters: list[itemgetter],
         last_step: float | None, cache: BarCache, numbers: dict[bytes, float]) -> BarRun:
    names, progress_of = plan.names, plan.progress_of
    count = len(frames)
    value_getters = getters if progress_of is None else getters[:-2]
    columns: list = []
    for getter in value_getters:
        texts = list(map(getter, frames))
        if texts.count(texts[0]) == count:  # a postfix's val_loss, the bar's total
            value = numbers[texts[0]]
            columns.append(value if value == value else repeated(value, count))  # nan: never
        else:                                                                    # alike
            columns.append(floats(texts))
    if progress_of is not None:  # `_apply_stateless`: the epoch moves along its bar
        done, total = (list(map(getter, frames)) for getter in getters[-2:])
        if total.count(total[0]) == count:
            fractions = cache.fractions_of(total[0]).of(done)
        else:
            fractions = map(epoch_fraction, floats(done), floats(total))
        epoch = columns[progress_of]
        columns[progress_of] = array("d", map(add, epoch if isinstance(epoch, array)
                                              else repeat(epoch), fractions))
    x = last_step if last_step is not None else columns[names.index("epoch")]
    return BarRun(names, x, count, columns)


def repeated(x: float, count: int) -> array:
    return array("d", repeat(x, count))
