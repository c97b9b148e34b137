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
from itertools import compress, groupby, islice, repeat
from operator import add, eq, itemgetter, ne

from .line_blocks import floats
from .parsers import KERAS_FRAME, NOTHING, Plan, epoch_fraction

MIN_FRAMES = 16  # fewer: the frame loop costs less than the passes
_CACHE_LIMIT = 4096  # entries of a BarCache's dicts (one-off templates: start over)
_FRACTIONS = 1 << 15  # counters whose fractions a BarCache keeps


class BarRun:
    """`count` consecutive records of one set of names: their x and their values, a column
    a name; an x or a column that is one float is that value in every record."""

    __slots__ = ("names", "x", "count", "columns")

    def __init__(self, names: tuple[str, ...], x: float | array, count: int,
                 columns: list[float | array]) -> None:
        self.names, self.x, self.count, self.columns = names, x, count, columns


class _Fractions(dict):
    """`epoch_fraction(done, total)` of bar counter texts `done/total` (`12/ 24` too), found
    on a miss: the next epoch's frames show the same counters, a lookup each."""

    def __missing__(self, counter: bytes) -> float:
        if len(self) >= _FRACTIONS:
            self.clear()
        done, _, total = counter.partition(b"/")
        fraction = self[counter] = epoch_fraction(float(done), float(total))
        return fraction


class BarCache:
    """What `bar_records` learned of a MetricSet's bar templates. A plan of the parser is
    one template's, so the plans a line's frames have stand for their templates."""

    def __init__(self) -> None:
        self.counters: dict[tuple, tuple | None] = {}  # (plan, x is the epoch) -> counter
        self.layouts: dict[tuple, list] = {}  # plans in a line, in order -> its runs' cuts
        self.fractions = _Fractions()  # a counter `12/24` -> its epoch_fraction


def bar_records(frames: list[bytes], line_template: bytes, plans: dict[bytes, Plan],
                shapes: dict[bytes, tuple], last_step: float | None, cache: BarCache,
                numbers: dict[bytes, float]) -> list[BarRun] | None:
    """The records of one whole bar line (`frames`: its frames cleaned of escapes;
    `line_template`: their templates joined by \\r), or None when the frame loop must read
    it: a new template, a glued print, a frame with a step, ... Raises ValueError when a
    slice is no number (the loop then reads the line too). `numbers`: float() of a text (a
    lookup where seen before), for the values a whole line shows alike."""
    if not frames[0]:  # the line starts with its first \r
        frames, line_template = frames[1:], line_template[1:]
    groups, at, skipped = [], 0, False  # (plan, count, template) of each run of frames
    for template, count in template_runs(frames, line_template):
        plan = plans.get(template)
        if plan is None or plan is NOTHING:  # frames the loop skips, or cannot read here
            if plan is None and any(frame.strip() for frame in frames[at:at + count]):
                return None  # a template new to the parser
            skipped = True
        groups.append((plan, count, template))
        at += count
    if skipped:
        frames = list(compress(frames, b"".join(
            (b"\0" if plan is None or plan is NOTHING else b"\1") * count
            for plan, count, _ in groups)))
        groups = _merged([group for group in groups
                          if group[0] is not None and group[0] is not NOTHING])
    if len(frames) < MIN_FRAMES:
        return None
    return _records(frames, groups, shapes, last_step, cache, numbers)


def template_runs(frames: list[bytes], line_template: bytes) -> list[tuple[bytes, int]]:
    """(template, how many frames in a row have it) along a line, without cutting the line's
    template into one bytes object a frame and hashing each: consecutive frames of one
    length, at one stride in `line_template`, share their template when that stretch of it
    equals itself shifted by one frame (one memcmp). Runs that do not are cut and compared."""
    runs, at = [], 0
    for length, same in groupby(map(len, frames)):
        count = len(list(same))
        stride = length + 1  # a frame and its \r
        end = at + count * stride - 1
        if count == 1 or line_template[at:end - stride] == line_template[at + stride:end]:
            runs.append((line_template[at:at + length], count))
        else:
            runs += ((template, len(list(alike))) for template, alike
                     in groupby(line_template[at:end].split(b"\r")))
        at = end + 1
    return runs


def _merged(groups: list[tuple]) -> list[tuple]:
    """`groups` ((plan, count, template)) with neighbours of one plan joined and empty ones
    left out: the plans of a line's frames, as groupby would give them."""
    merged = []
    for plan, count, template in groups:
        if not count:
            continue
        if merged and merged[-1][0] is plan:
            merged[-1] = (plan, merged[-1][1] + count, template)
        else:
            merged.append((plan, count, template))
    return merged


def _counter_at(plan: Plan, template: bytes, shapes: dict[bytes, tuple],
                last_step: float | None, cache: BarCache) -> tuple | None:
    """(from the start, from the end) slices of the counter of `plan`'s frames, and whether
    the counter is the `done/total` of its progress (its text then tells the fraction), or
    None when they are no frames read here: not seen yet, no counter, Keras, a print glued
    on, a step."""
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
    progress = plan.progress_of is not None
    if progress:
        done, total = plan.slices[-2:]
        progress = (done.start == start and total.stop == stop
                    and template[done.stop:total.start].rstrip(b" ") == b"/")
    found = cache.counters[key] = (slice(start, stop),
                                   slice(start - width, (stop - width) or None), progress)
    return found


def _one_getter(cuts: list[tuple]) -> itemgetter | None:
    """The getter that cuts the same bytes from every template of `cuts` ((from the start,
    from the end) slices, one a template), counting from the start or from the end."""
    starts = {(cut.start, cut.stop) for cut, _, _ in cuts}
    if len(starts) == 1:
        return itemgetter(cuts[0][0])
    ends = {(cut.start, cut.stop) for _, cut, _ in cuts}
    return itemgetter(cuts[0][1]) if len(ends) == 1 else None


def _records(frames: list[bytes], groups: list[tuple], shapes: dict[bytes, tuple],
             last_step: float | None, cache: BarCache, numbers: dict[bytes, float]
             ) -> list[BarRun] | None:
    """The records of a line's `frames`, whose templates come in `groups` ((plan, how
    many frames in a row, template)), or None when some are no frames read here."""
    counter_cuts = []
    for plan, _, template in groups:
        cuts = _counter_at(plan, template, shapes, last_step, cache)
        if cuts is None:
            return None
        counter_cuts.append(cuts)
    all_groups = groups  # before frames at one counter are left out
    getter = _one_getter(counter_cuts)
    if getter is not None:
        counters = list(map(getter, frames))
    else:
        counters, at = [], 0
        for (_, count, _), (from_start, _, _) in zip(groups, counter_cuts, strict=True):
            counters += map(itemgetter(from_start), frames[at:at + count])
            at += count
    if any(map(eq, counters, islice(counters, 1, None))):  # frames at one counter: the
        last = bytes([*map(ne, counters, islice(counters, 1, None)), True])  # last counts
        frames = list(compress(frames, last))
        counters = list(compress(counters, last))
        kept, at = [], 0
        for plan, count, template in groups:
            kept.append((plan, last.count(1, at, at + count), template))
            at += count
        groups = _merged(kept)
    key = tuple(plan for plan, _, _ in groups)
    layout = cache.layouts.get(key)
    if layout is None:
        widths = {plan: len(template) for plan, _, template in groups}
        progress = {plan: cuts[2] for (plan, _, _), cuts in zip(all_groups, counter_cuts,
                                                                 strict=True)}
        layout = _layout(key, widths, progress)
        if len(cache.layouts) >= _CACHE_LIMIT:
            cache.layouts.clear()
        cache.layouts[key] = layout
    runs, at, group = [], 0, 0
    for first, joined, getters, counted in layout:
        size = sum(count for _, count, _ in groups[group:group + joined])
        group += joined
        runs.append(_run(first, frames[at:at + size], getters,
                         counters[at:at + size] if counted else None,
                         last_step, cache, numbers))
        at += size
    return runs


def _layout(plans: tuple[Plan, ...], widths: dict[Plan, int], progress: dict[Plan, bool]
            ) -> list[tuple]:
    """The runs of a line whose frames have `plans` (a group of frames each, in order):
    (the first plan of a run, how many groups it holds, a getter for each slice, whether
    each plan's counter is its progress: `_counter_at`). Templates
    that differ only where the bar fills up (`|███   |`, a multi-byte block a step) cut the
    same bytes: before the bar from the frame's start, after it from its end."""
    layout, cuts, first, joined, at = [], None, None, 0, 0
    for plan in plans:
        if cuts is not None:
            merged = _join(cuts, plan, widths[plan]) if _alike(plan, first) else None
            if merged is not None:
                cuts, joined = merged, joined + 1
                continue
            layout.append((first, joined, _getters(cuts),
                           all(map(progress.get, plans[at:at + joined]))))
            at += joined
        first, joined, cuts = plan, 1, _cuts(plan, widths[plan])
    if cuts is not None:
        layout.append((first, joined, _getters(cuts),
                       all(map(progress.get, plans[at:at + joined]))))
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
         counters: list[bytes] | None, last_step: float | None, cache: BarCache,
         numbers: dict[bytes, float]) -> BarRun:
    """The records of `frames` (frames of plans cut alike by `getters`); `counters`: their
    counters where those are their progress `done/total`."""
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
        if counters is not None:
            fractions = map(cache.fractions.__getitem__, counters)
        else:
            done, total = (list(map(getter, frames)) for getter in getters[-2:])
            fractions = map(epoch_fraction, floats(done), floats(total))
        epoch = columns[progress_of]
        columns[progress_of] = array("d", map(add, epoch if isinstance(epoch, array)
                                              else repeat(epoch), fractions))
    x = last_step if last_step is not None else columns[names.index("epoch")]
    return BarRun(names, x, count, columns)


def repeated(x: float, count: int) -> array:
    return array("d", (x,)) * count  # one memcpy, not an append a value
