"""When each step was reached: the session's (wall time, step) samples, kept in steps.jsonl
beside status.json for the compare's elapsed-time axis (monitor/step_clock.py reads them).

One JSON object a line, appended (one write each, O_APPEND):
  {"runner": T}                      a runner started (the active time of a session is the
                                     time its runners ran; the gap between two is not)
  {"t": T, "step": N, "src": S}      the log said step N by T (S: what said it, progress.py's
                                     `source`; Keras counts epochs here, as its logs do); a
                                     second line at the same step says it was still there at
                                     T (the last poll before the next step: a pause ends)
  {"end": T}                         the runner ended
T is the log's modification time when that is newer than the last poll (the line with the
step was the last written), else the poll's time: a step is placed within a heartbeat. An
attempt starts at step 0 (or its checkpoint's step) at its start, still there at the last
poll before its log gives a step: a run's start-up is not spread over its first steps.

Kept across attempts and runners: a resumed run appends to its file. A torn last line (the
runner killed mid-write, a full disk) is cut off before the next runner appends. The file
stays small: past MAX_LINES the older samples are thinned (every other one kept; markers and
the newest KEEP_NEWEST samples whole), rewritten atomically. A sample at an unchanged step is
written only after STILL_SECONDS, so a stalled run's runner is still seen to run.

Stdlib only, Python 3.7+: shipped with the runner."""

from __future__ import annotations

import json
import os

from .runner_log import log_stderr

STEPS_FILE = "steps.jsonl"
MAX_LINES = 4000
KEEP_NEWEST = 1000
STILL_SECONDS = 60.0
PROBE_RECORDS = 64  # the newest records a remote probe carries (the app keeps the file)
TAIL_BYTES = 16 * 1024
LINE_BYTES = 48  # about a sample's line


def line_of(record: dict) -> bytes:
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


class StepTimes:
    """The runner's writer of steps.jsonl in `folder`. Never raises: a disk that fails is
    said once on the runner's stderr and the training goes on."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, STEPS_FILE)
        self.lines = 0
        self.last_t = None  # of the last line written: times only go forward in one runner
        self.step = None  # the newest step this attempt's log gave
        self.still_t = None  # the newest poll that found nothing newer than `step`
        self.anchor = None  # (step, time) an attempt starts at, written with its first step
        self.failed = False

    def runner_started(self, now: float) -> None:
        self.lines = self._repair()
        self._append({"runner": round(now, 3)}, now)

    def runner_ended(self, now: float) -> None:
        self._append({"end": round(max(now, self.last_t or now), 3)}, now)

    def attempt_started(self, now: float, start_step) -> None:
        """An attempt starts at `start_step` (0 from scratch; a checkpoint's step; None when
        not known): until its log gives a step, every poll says it is still there."""
        self.step = None
        self.still_t = now
        self.anchor = (start_step, now) if start_step is not None else None

    def poll(self, now: float, step, source: str = "", log_mtime=None) -> None:
        """What a poll at `now` found: the newest step the log gave (None: none yet), what
        said it, and when the log was last written."""
        if step is None or step == self.step:
            self.still_t = now
            if self.step is not None and now - (self.last_t or now) >= STILL_SECONDS:
                self._sample(now, self.step, source)  # a stalled run's runner still runs
            return
        if self.anchor is not None and self.anchor[0] <= step:
            start_step, started = self.anchor
            self._sample(started, start_step, "start")
            if self.still_t > started:
                self._sample(self.still_t, start_step, "start")
        elif self.step is not None and self.still_t > (self.last_t or 0.0):
            self._sample(self.still_t, self.step, source)  # where a pause ended
        self.anchor = None
        t = now
        if log_mtime is not None and (self.still_t or 0.0) < log_mtime < now:
            t = log_mtime  # the line with the step was the last written
        self._sample(t, step, source)
        self.step, self.still_t = step, t

    def _sample(self, t: float, step, source: str) -> None:
        t = max(t, self.last_t or t)
        self._append({"t": round(t, 3), "step": step, "src": source}, t)

    def _append(self, record: dict, t: float) -> None:
        self.last_t = t
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line_of(record))
            finally:
                os.close(fd)
            self.lines += 1
            if self.lines > MAX_LINES:
                self.lines = self._thin()
        except OSError as exc:
            if not self.failed:
                self.failed = True
                log_stderr(f"cannot write {self.path}: {exc}")

    def _repair(self) -> int:
        """Cut a torn last line off; the number of lines."""
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except OSError:
            return 0
        whole = data[:data.rfind(b"\n") + 1]
        if len(whole) != len(data):
            try:
                os.truncate(self.path, len(whole))
            except OSError as exc:
                log_stderr(f"cannot repair {self.path}: {exc}")
        return whole.count(b"\n")

    def _thin(self) -> int:
        """Rewrite the file thinned (atomically: temp, fsync, rename); its new line count."""
        with open(self.path, "rb") as fh:
            lines = fh.read().splitlines(True)
        kept = thinned(lines)
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as fh:
            fh.writelines(kept)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        return len(kept)


def thinned(lines: list) -> list:
    """Every marker and the newest KEEP_NEWEST samples; of the older samples every other one,
    with the first and last of each runner's stretch kept (where its time starts and ends)."""
    samples = [i for i, line in enumerate(lines) if line.startswith(b'{"t"')]
    old = set(samples[:-KEEP_NEWEST]) if len(samples) > KEEP_NEWEST else set()
    kept, nth = [], 0
    for i, line in enumerate(lines):
        if i in old:
            edge = not lines[i - 1].startswith(b'{"t"') if i else True
            edge = edge or (i + 1 < len(lines) and not lines[i + 1].startswith(b'{"t"'))
            nth += 1
            if not edge and nth % 2 == 0:
                continue
        kept.append(line)
    return kept


def newest_records(folder: str, count: int = PROBE_RECORDS) -> list:
    """The newest `count` whole records of steps.jsonl in `folder` (what a probe carries)."""
    try:
        with open(os.path.join(folder, STEPS_FILE), "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_BYTES))
            data = fh.read()
    except OSError:
        return []
    lines = data.split(b"\n")[:-1]  # the part after the last newline is not a whole line
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first may be the end of a line
    records = []
    for line in lines[-count:]:
        try:
            record = json.loads(line.decode("utf-8"))
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def record_time(record: dict):
    """The time a record was written at, whatever its kind; None for no record of ours."""
    for key in ("t", "runner", "end"):
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def merge_records(folder: str, records: list) -> int:
    """Append to the local steps.jsonl the records (a probe's) newer than its last one: the
    app's copy of a remote runner's file. Returns how many were added."""
    path = os.path.join(folder, STEPS_FILE)
    known = newest_records(folder, 1)
    last = record_time(known[-1]) if known else None
    fresh = []
    for record in records:
        t = record_time(record) if isinstance(record, dict) else None
        if t is None:
            continue
        if last is None or t > last or (t == last and record not in known):
            fresh.append(record)
            last = t
    if fresh:
        copy = StepTimes(folder)
        copy._repair()
        with open(path, "ab") as fh:
            fh.writelines(line_of(record) for record in fresh)
        if os.path.getsize(path) > MAX_LINES * LINE_BYTES:  # kept small as the runner's
            copy._thin()
    return len(fresh)
