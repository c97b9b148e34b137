"""The records of a progress-bar line (thousands of `\\r` frames) found with C-level passes
over all its frames, not a Python loop a frame.

`MetricSet._feed_frames` reads a bar line frame by frame: a frame whose counter (`12/24`)
is the next frame's too is replaced by it (Lightning draws each batch twice), the others are
records, each adding the values that changed. `bar_records` gives the same records for the
common line: every frame a bar with a counter, of a plan without a step (Lightning's
`Epoch 1: 46%|...| 11/24 [..., loss=0.5]`, tqdm with an epoch in its postfix). For any other
line it returns None, and the frame loop reads it.
"""

from __future__ import annotations

from array import array
from itertools import compress, groupby, islice, repeat
from operator import add, itemgetter, le, ne, truediv

from .line_blocks import floats
from .parsers import KERAS_FRAME, NOTHING, Plan, epoch_fraction

MIN_FRAMES = 16  # fewer: the frame loop costs less than the passes


class BarRun:
    """`count` consecutive records of one set of names: their x and their values, a column
    a name; an x or a column that is one float is that value in every record."""

    __slots__ = ("names", "x", "count", "columns")

    def __init__(self, names: tuple[str, ...], x: float | array, count: int,
                 columns: list[float | array]) -> None:
        self.names, self.x, self.count, self.columns = names, x, count, columns


def bar_records(frames: list[bytes], templates: list[bytes], plans: dict[bytes, Plan],
                shapes: dict[bytes, tuple], last_step: float | None
                ) -> tuple[list[BarRun] | None, list[bytes], list[bytes]]:
    """(the records of one whole bar line, its frames cleaned of escapes, or None when the
    frame loop must read it: a new template, a glued print, a frame with a step, ...; the
    frames and templates for that loop, less frames it would skip). Raises ValueError when
    a slice is no number (the loop then reads the line too)."""
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
    return _records(frames, templates, plan_of, shapes, last_step), frames, templates


def _records(frames: list[bytes], templates: list[bytes], plan_of: list[Plan],
             shapes: dict[bytes, tuple], last_step: float | None) -> list[BarRun] | None:
    counter_at = {}  # a plan is its template's: the template's counter
    for plan, template in dict(zip(plan_of, templates, strict=True)).items():
        shape = shapes.get(template)
        if shape is None or shape[0] is None or shape[0] == KERAS_FRAME or shape[1] is not None:
            return None  # not seen yet, no counter, Keras, a print glued to the frame
        if shape[2] is not None and "epoch" not in plan.names:
            return None  # x at the tqdm counter: a record with a step
        if not plan.stateless or (last_step is None and "epoch" not in plan.names):
            return None
        counter_at[plan] = itemgetter(slice(*shape[0]))
    counters, at = [], 0
    for plan, group in groupby(plan_of):  # a template's frames come in runs
        count = len(list(group))
        counters += map(counter_at[plan], frames[at:at + count])
        at += count
    last = [*map(ne, counters, islice(counters, 1, None)), True]  # of frames at one counter
    frames = list(compress(frames, last))
    plan_of = list(compress(plan_of, last))
    # Templates that differ only where the bar fills up (`|███   |`, a multi-byte block a
    # step) cut the same bytes: before the bar from the frame's start, after it from its end.
    widths = dict(zip(plan_of, map(len, frames), strict=True))
    runs, at = [], 0
    cuts: list | None = None
    first, size = plan_of[0], 0
    for plan, group in groupby(plan_of):
        count = len(list(group))
        if cuts is not None:
            joined = _join(cuts, plan, widths[plan]) if _alike(plan, first) else None
            if joined is not None:
                cuts, size = joined, size + count
                continue
            runs.append(_run(first, frames[at:at + size], cuts, last_step))
            at += size
        first, size, cuts = plan, count, _cuts(plan, widths[plan])
    if cuts is not None:
        runs.append(_run(first, frames[at:at + size], cuts, last_step))
    return runs


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


def _run(plan: Plan, frames: list[bytes], cuts: list[tuple], last_step: float | None) -> BarRun:
    names, progress_of = plan.names, plan.progress_of
    columns: list = []
    for from_start, from_end in cuts:
        texts = list(map(itemgetter(from_end if from_start is None else from_start), frames))
        if texts.count(texts[0]) == len(texts):  # a postfix's val_loss, the bar's total
            value = floats(texts[:1])[0]
            columns.append(value if value == value else floats(texts))  # nan: never alike
        else:
            columns.append(floats(texts))
    if progress_of is not None:  # `_apply_stateless`: the epoch moves along its bar
        total, done = (column if isinstance(column, array) else repeated(column, len(frames))
                       for column in columns[-1:-3:-1])
        del columns[-2:]
        if min(done) >= 0 and min(total) > 0 and all(map(le, done, total)):
            fractions = map(truediv, done, total)
        else:
            fractions = map(epoch_fraction, done, total)
        epoch = columns[progress_of]
        columns[progress_of] = array("d", map(add, epoch if isinstance(epoch, array)
                                              else repeat(epoch), fractions))
    x = last_step if last_step is not None else columns[names.index("epoch")]
    return BarRun(names, x, len(frames), columns)


def repeated(x: float, count: int) -> array:
    return array("d", repeat(x, count))
