"""When each step of a run was reached, from the steps.jsonl its runners kept (the format is
runner/step_times.py's): the compare's elapsed-time axis.

Elapsed time here is *active* time: the time the session's runners ran, from the first one's
start. The gap of an interruption (no runner: a lost machine, a stop and a later resume) does
not count, so runs compare by the time they trained; `gaps` says where each was and how long.
A step is placed by interpolating between the two samples around it within one stretch of
counting up (until the count goes back, as a restart from a checkpoint does; a new runner
that counts on continues it, its gap left out); points before a stretch's first sample or
past its last have no place rather than a guessed one. Points are matched in their order: a
series that counts again (a restart) moves on to the next stretch, so a step the log gives
again after a restart is placed when it was reached again.

A file whose lines are not all records of that format (a torn last line aside: a runner may be
writing it) is not used at all: `load` says which line, and the caller falls back.
Stdlib only."""

from __future__ import annotations

import json
from bisect import bisect_left
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

STEPS_FILE = "steps.jsonl"  # runner/step_times.py writes it
MAX_BYTES = 8 * 1024 * 1024  # far past what a runner keeps: not a steps file


class Damaged(Exception):
    """steps.jsonl cannot be trusted; the message says why, in a few words."""


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if value - value == 0 else None  # finite


@dataclass
class Stretch:
    """Samples of one runner while the count went up: active seconds and steps."""

    times: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    _lines: tuple | None = field(default=None, repr=False)  # place_rising's, made once

    def place_rising(self, xs) -> list[float | None]:
        """`place` of every x of a non-decreasing `xs` from the stretch's start, without a
        Python call a point (the compare redraws hundreds of them per run and frame)."""
        steps, times, n = self.steps, self.times, len(self.steps)
        if self._lines is None:  # t = base + slope * step between samples i and i + 1
            slopes = [(t1 - t0) / (s1 - s0) if s1 > s0 else 0.0 for t0, t1, s0, s1
                      in zip(times, times[1:], steps, steps[1:], strict=False)]
            self._lines = (slopes, [t - k * s for t, k, s
                                    in zip(times, slopes, steps, strict=False)])
        slopes, bases = self._lines
        at = map(partial(bisect_left, steps), xs)
        return [times[a] if a < n and steps[a] == x else
                (bases[a - 1] + slopes[a - 1] * x if 0 < a < n else None)
                for x, a in zip(xs, at, strict=True)]

    def place(self, step: float, start: int) -> tuple[float, int] | None:
        """(active seconds, index) at which `step` was reached, searching from `start`."""
        at = bisect_left(self.steps, step, start)
        if at >= len(self.steps):
            return None
        if self.steps[at] == step:
            return self.times[at], at
        if at - 1 < start:
            return None  # before the stretch's first sample, or behind the last point
        t0, t1 = self.times[at - 1], self.times[at]
        s0, s1 = self.steps[at - 1], self.steps[at]
        return t0 + (t1 - t0) * (step - s0) / (s1 - s0), at - 1


@dataclass
class StepClock:
    stretches: list[Stretch]
    gaps: list[tuple[float, float]]  # (active seconds where, seconds without a runner)
    active: float  # the active seconds the file covers
    sources: set[str]  # what said the steps (progress.py's sources)

    def place(self, xs) -> list[float | None]:
        """The active seconds at which each step of `xs` (in the series' order) was reached;
        None for a point with no place. Where the series counts again (a restart), so does
        the clock: the next stretch (if the runner saw none, what is behind has no place)."""
        if len(self.stretches) == 1 and all(a <= b for a, b in zip(xs, xs[1:], strict=False)):
            return self.stretches[0].place_rising(xs)  # the common case, fast
        out: list[float | None] = []
        here, index, previous = 0, 0, None  # the stretch and sample of the last point
        for x in xs:
            if previous is not None and x < previous and here + 1 < len(self.stretches):
                here, index = here + 1, 0
            previous = x
            found = self.stretches[here].place(x, index)
            if found is None:
                out.append(None)
            else:
                out.append(found[0])
                index = found[1]
        return out


def signature(folder: str | Path) -> tuple[int, int] | None:
    """(mtime, size) of the steps.jsonl in `folder`, None without one: read it again when
    this changed."""
    try:
        stat = (Path(folder) / STEPS_FILE).stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def load(folder: str | Path) -> StepClock | None:
    """The clock of the steps.jsonl in `folder`; None when there is none (or no sample).
    Raises Damaged when the file is there but cannot be trusted."""
    path = Path(folder) / STEPS_FILE
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Damaged(f"{STEPS_FILE} cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise Damaged(f"{STEPS_FILE} is over {MAX_BYTES // 2**20} MB")
    lines = data.split(b"\n")[:-1]  # after the last newline: a line still being written
    return parse(lines)


def parse(lines: list[bytes]) -> StepClock | None:
    stretches: list[Stretch] = [Stretch()]  # a new one where the count goes back
    gaps: list[tuple[float, float]] = []
    sources: set[str] = set()
    active = 0.0  # before the current runner
    start = last = None  # the current runner's start and its newest time
    for number, line in enumerate(lines, 1):
        record = _record(line, number)
        if "runner" in record:
            begun = _time(record, "runner", number)
            if start is not None:
                active += last - start
                if begun > last:
                    gaps.append((active, begun - last))
            start = last = begun
            continue
        if start is None:
            raise Damaged(f"{STEPS_FILE} line {number}: a sample before any runner started")
        if "end" in record:
            last = max(last, _time(record, "end", number))
            continue
        t, step = _time(record, "t", number), _number(record.get("step"))
        if step is None or t < last:
            raise Damaged(f"{STEPS_FILE} line {number} is not a sample in time order")
        last = t
        stretch = stretches[-1]
        if stretch.steps and step < stretch.steps[-1]:
            stretch = Stretch()  # counting again: a restart (a new runner going on does not)
            stretches.append(stretch)
        if len(stretch.steps) > 1 and step == stretch.steps[-1] == stretch.steps[-2]:
            stretch.times[-1] = active + t - start  # still there, later
            continue
        # A step twice: reached at the first time, still there at the second (a pause).
        stretch.times.append(active + t - start)
        stretch.steps.append(step)
        if isinstance(record.get("src"), str):
            sources.add(record["src"])
    if start is not None:
        active += last - start
    stretches = [s for s in stretches if s.steps]
    if not stretches:
        return None
    return StepClock(stretches, gaps, active, sources)


def _record(line: bytes, number: int) -> dict:
    try:
        record = json.loads(line.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise Damaged(f"{STEPS_FILE} line {number} is damaged") from None
    if not isinstance(record, dict):
        raise Damaged(f"{STEPS_FILE} line {number} is damaged")
    return record


def _time(record: dict, key: str, number: int) -> float:
    value = _number(record.get(key))
    if value is None:
        raise Damaged(f"{STEPS_FILE} line {number} has no time")
    return value
