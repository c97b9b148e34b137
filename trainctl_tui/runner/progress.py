"""How far a training is, from what its log says, and how fast this attempt goes.

Only where the log gives a total: a tqdm bar's `40/2000 [` (HF Trainer's bar counts global
steps), Lightning's rich bar (`Epoch 1/3 ━━ 12/24`: epochs 0..3 of 24 batches), `step 40/2000`
or `iter 40/2000`, Keras' `Epoch 3/20` with its `12/32` batch bar, a printed setting
(`max_iters = 5000` as nanoGPT echoes its config, `max_steps=2000`, HF's "Total optimization
steps = 2,000") with the step or iter lines that follow, and HF's trainer_state.json
(`max_steps`) in the checkpoint an attempt resumed from. Without a total there is no
progress: never a guess. Evaluation and sanity-check bars are not the run's.

The runner reads what the log gained since its last heartbeat (`LogProgress.poll`): the
training writes the log itself, so this costs a read of the new bytes (at most READ_LIMIT,
the end of them) and a few regex searches, every heartbeat. The rate is the median of the
recent step intervals this attempt was seen to make (`Rate`): steps a resumed attempt starts
at are not speed, so a resume or a requeue never makes the ETA jump.

Stdlib only, Python 3.7+: shipped with the runner."""

from __future__ import annotations

import json
import os
import re

READ_LIMIT = 256 * 1024  # of the bytes new since the last poll: the newest count
SAMPLES = 24  # (time, done) observations kept for the rate

_ESCAPE = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|[\x00-\x08]")
# A tqdm frame: `desc: 46%|███ | 11/24 [00:01<00:02, 9.1it/s...]` (the `[` after the counter).
_TQDM = re.compile(rb"(?:^|\|)\s*(\d+)/(\d+) \[\d")
_TQDM_DESC = re.compile(rb"^\s*([^|]*?)\s*(?:\d+%)?\|")
# Lightning's rich bar: `Epoch 1/3  ━━━━╸━━━ 12/24 0:00:01 • ...`
_RICH_EPOCH = re.compile(rb"Epoch (\d+)/(\d+)\s+(?:\xe2\x94\x81|\xe2\x95[\xb8\xba]|\s)*?"
                         rb"\s(\d+)/(\d+)\s")
_KERAS_EPOCH = re.compile(rb"^\s*Epoch (\d+)/(\d+)\s*$")
_KERAS_EPOCH_END = re.compile(rb"Epoch (\d+)/(\d+)[ \t]*(?:[\r\n]|$)")
_KERAS_BAR = re.compile(rb"^\s*(\d+)/(\d+) (?:\[[=>.]*\]|\xe2\x94\x81)")
_STEP_OF = re.compile(rb"\b(?:step|iter|iteration|global_step)\s*[:=]?\s*(\d+)\s*/\s*(\d+)\b",
                      re.IGNORECASE)
_SETTING = re.compile(rb"\b(max_steps|max_iters|total_steps|num_training_steps"
                      rb"|Total optimization steps)\b['\"]?\s*[:=]\s*(\d[\d,]*)\b")
_SETTING_WORDS = (b"max_steps", b"max_iters", b"total_steps", b"num_training_steps",
                  b"optimization steps")
_STEP = re.compile(rb"\b(?:step|iter|global_step)\s*[:=]?\s*(\d+)\b", re.IGNORECASE)
_EVAL_BAR = re.compile(rb"valid|sanity|test|predict|eval", re.IGNORECASE)
# A bar with a description is the run's only when it says so (torchtune's `1|12|Loss: ..`);
# HF Trainer's own bar has none, and `Writing model shards`, `Map`, `Downloading` are not it.
_TRAIN_BAR = re.compile(rb"train|step|iter|loss", re.IGNORECASE)


class Progress:
    """done of total, in `unit` (`step`), and what said so (`source`)."""

    __slots__ = ("done", "total", "unit", "source")

    def __init__(self, done, total, unit="step", source=""):
        self.done, self.total, self.unit, self.source = done, total, unit, source

    def as_dict(self) -> dict:
        return {"done": self.done, "total": self.total, "unit": self.unit,
                "source": self.source}


class ProgressScanner:
    """Reads progress out of log text, fed in pieces (what the log gained). Remembers the
    settings and the Keras epoch that later lines need."""

    def __init__(self) -> None:
        self.setting_total = None  # from max_iters = N and the like (the last one printed)
        self.keras_epoch = None  # (epoch, epochs) of the last `Epoch 3/20`
        self.keras_batches = None  # the batches of a Keras epoch, once a bar said
        self.last = None  # the newest Progress found
        self.bare_step = None  # the newest `step N` of a log that gives no total
        self.row = b""  # the last row of the previous block: the next may go on with it

    def feed(self, data: bytes) -> Progress | None:
        """Scan the next block of log bytes; returns the newest progress known after it."""
        cut = max(data.rfind(b"\r"), data.rfind(b"\n")) + 1
        data, self.row = self.row + data, data[cut:] if cut else self.row + data
        self.row = self.row[-4096:]  # a row without end for megabytes is no bar
        # What later rows need, from the whole block (a search for a word first: most
        # blocks have none): the last setting printed, the last Keras epoch begun.
        last_word = max(data.rfind(word) for word in _SETTING_WORDS)
        if last_word >= 0:
            match = _SETTING.search(data, max(0, last_word - 16), last_word + 64)
            if match is None:  # not a setting there (prose): look through the block
                for match in _SETTING.finditer(data):  # noqa: B007 - the last one
                    pass
            if match is not None and int(match.group(2).replace(b",", b"")) > 0:
                self.setting_total = int(match.group(2).replace(b",", b""))
        if b"Epoch " in data:
            epoch = _last_epoch_row(data)
            if epoch is not None:
                self.keras_epoch = epoch
        # Only the newest row that says how far the run is counts: rows from the end.
        bare = None
        for frame in _rows_from_end(data):
            found = self._frame(frame)
            if found is not None:
                self.last = found
                break
            if bare is None and self.last is None:
                match = _STEP.search(frame)
                bare = int(match.group(1)) if match else None
        if bare is not None:
            self.bare_step = bare
        return self.last

    def _frame(self, frame: bytes) -> Progress | None:
        if b"poch" in frame:
            match = _KERAS_EPOCH.match(frame)
            if match:
                self.keras_epoch = (int(match.group(1)), int(match.group(2)))
                epoch, epochs = self.keras_epoch
                if self.keras_batches:
                    batches = self.keras_batches
                    return Progress((epoch - 1) * batches, epochs * batches, "step", "keras")
                return Progress(epoch - 1, epochs, "epoch", "keras")
            match = _RICH_EPOCH.search(frame)
            if match:
                epoch, last, batch, batches = (int(g) for g in match.groups())
                if batches and epoch <= last:
                    return Progress(epoch * batches + batch, (last + 1) * batches,
                                    "step", "lightning")
        if self.keras_epoch is not None and (b"/step" in frame or b"ETA:" in frame):
            match = _KERAS_BAR.match(frame)
            if match:
                batch, batches = int(match.group(1)), int(match.group(2))
                epoch, epochs = self.keras_epoch
                if batches and batch <= batches:
                    self.keras_batches = batches
                    return Progress((epoch - 1) * batches + batch, epochs * batches,
                                    "step", "keras")
        if b"/" in frame and b" [" in frame:
            found = self._tqdm(frame)
            if found is not None:
                return found
        if b"/" in frame:
            match = _STEP_OF.search(frame)
            if match:
                done, total = int(match.group(1)), int(match.group(2))
                if total and done <= total:
                    return Progress(done, total, "step", "log")
        if self.setting_total:
            match = _STEP.search(frame)
            if match:
                return Progress(int(match.group(1)), self.setting_total, "step", "setting")
        return None

    @staticmethod
    def _tqdm(frame: bytes) -> Progress | None:
        match = None
        for match in _TQDM.finditer(frame):  # noqa: B007 - the last bar of the frame
            pass
        if match is None:
            return None
        desc = _TQDM_DESC.match(frame)
        label = desc.group(1) if desc else b""
        if label and (_EVAL_BAR.search(label) or label.startswith(b"Epoch")
                      or not _TRAIN_BAR.search(label)):
            # Evaluation and saving bars are not the run's; Lightning's `Epoch 3:` bar counts
            # one epoch's batches, and the number of epochs is not in it.
            return None
        done, total = int(match.group(1)), int(match.group(2))
        if not total or done > total:
            return None
        return Progress(done, total, "step", "bar")


def _rows_from_end(data: bytes):
    """The rows of a block as a terminal draws them (each redraw of a bar a row), newest
    first, cleaned of escapes one by one: only the last few are ever looked at."""
    end = len(data)
    while end > 0:
        start = max(data.rfind(b"\r", 0, end), data.rfind(b"\n", 0, end)) + 1
        row = data[start:end]
        if b"\x1b" in row or b"\x08" in row:
            row = _ESCAPE.sub(b"", row)
        if row.strip():
            yield row
        end = start - 1


def _last_epoch_row(data: bytes):
    """(epoch, epochs) of the last row that is only `Epoch 3/20` (Keras), or None."""
    found = None
    for match in _KERAS_EPOCH_END.finditer(data):
        row_start = max(data.rfind(b"\r", 0, match.start()),
                        data.rfind(b"\n", 0, match.start())) + 1
        if not data[row_start:match.start()].strip():
            found = match
    return (int(found.group(1)), int(found.group(2))) if found else None


class Rate:
    """Seconds per step of this attempt: the median of the intervals between observations
    that saw the count advance. A count at 0 is not a start: a resumed HF Trainer draws its
    bar at 0/40, then at 22/40 with the 20 steps of its checkpoint, which it never ran."""

    def __init__(self) -> None:
        self.samples = []  # [(time, done)], oldest first

    def observe(self, now: float, done: float) -> None:
        if self.samples and done < self.samples[-1][1]:
            self.samples = []  # counting started again (a new bar): not a speed
        if done <= 0 or (self.samples and done == self.samples[-1][1]):
            return
        self.samples.append((now, done))
        del self.samples[:-SAMPLES]

    def seconds_per_step(self) -> float | None:
        intervals = sorted((t2 - t1) / (d2 - d1) for (t1, d1), (t2, d2)
                           in zip(self.samples, self.samples[1:]))  # noqa: B905 - 3.7
        if not intervals:
            return None
        middle = len(intervals) // 2
        if len(intervals) % 2:
            return intervals[middle]
        return (intervals[middle - 1] + intervals[middle]) / 2


class LogProgress:
    """One attempt's progress, read from the log the supervisor's child writes: call `poll`
    each heartbeat. Starts at the log's end (what the attempt prints is its own)."""

    def __init__(self, log_path: str, resumed_from=None) -> None:
        self.log_path = log_path
        try:
            self.offset = os.path.getsize(log_path)
        except OSError:
            self.offset = 0
        self.scanner = ProgressScanner()
        self.scanner.setting_total = trainer_state_max_steps(resumed_from)
        self.rate = Rate()
        self.log_mtime = None  # when the log was last written, as of the last poll

    def poll(self, now: float) -> dict | None:
        """The progress as status.json keeps it, or None when the log gives no total."""
        try:
            stat = os.stat(self.log_path)
            size, self.log_mtime = stat.st_size, stat.st_mtime
            if size < self.offset:
                self.offset = 0  # truncated: read it again
            if size > self.offset:
                start = max(self.offset, size - READ_LIMIT)
                with open(self.log_path, "rb") as handle:
                    handle.seek(start)
                    data = handle.read(size - start)
                if start > self.offset:  # too much to read: the end, from a whole line
                    data = data.split(b"\n", 1)[-1]
                self.offset = size
                before = self.scanner.last
                found = self.scanner.feed(data)
                if found is not None:
                    if before is not None and before.unit != found.unit:
                        self.rate = Rate()  # epochs, then batches: not one count
                    self.rate.observe(now, found.done)
        except OSError:
            pass
        found = self.scanner.last
        if found is None:
            return None
        result = found.as_dict()
        per_step = self.rate.seconds_per_step()
        result["seconds_per_step"] = per_step
        result["eta_seconds"] = (max(0, found.total - found.done) * per_step
                                 if per_step is not None else None)
        result["at"] = now
        return result


    def log_step(self):
        """The newest count as the log's own metric lines number it, or None: steps (a bare
        `step N` too, where the log gives no total), but Keras' in epochs (its lines say
        `Epoch 3/20`; a batch bar counts within one)."""
        found = self.scanner.last
        if found is None:
            return self.scanner.bare_step  # no total: no progress, but still a step
        if found.source == "keras" and found.unit == "step":
            batches = self.scanner.keras_batches
            return round(found.done / batches, 4) if batches else None
        return found.done


def trainer_state_max_steps(checkpoint) -> int | None:
    """HF Trainer's max_steps from trainer_state.json in a checkpoint folder, or None."""
    if not checkpoint or not os.path.isdir(checkpoint):
        return None
    try:
        with open(os.path.join(checkpoint, "trainer_state.json"), encoding="utf-8") as fh:
            state = json.load(fh)
    except (OSError, ValueError):
        return None
    steps = state.get("max_steps") if isinstance(state, dict) else None
    return steps if isinstance(steps, int) and steps > 0 else None
