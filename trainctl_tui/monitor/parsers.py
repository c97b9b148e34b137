"""Turning one log line into metric values: the formats real trainers print, plus user regexes.

Recognised out of the box (see tests/fixtures/logs for real samples of each):
- HuggingFace Trainer dicts, `{'loss': 0.69, 'learning_rate': 5e-05, 'epoch': 0.5}`, values
  possibly quoted (`'0.6943'`), `np.float64(...)`, `tensor(...)` or `nan`;
- tqdm / Lightning postfixes (`..., loss=1.23, v_num=0]`) and Lightning's rich bar
  (`v_num: 0.000 train_loss_step: 0.455`);
- Keras (`32/32 ━━━ 0s 2ms/step - accuracy: 0.5 - loss: 0.69`), stepped by `Epoch 3/10` lines;
- nanoGPT (`iter 10: loss 3.12, time 12.3ms, mfu 1.2%`, `step 250: train loss 2.1, val loss 2.2`);
- JSON lines, `key=value` and `key: value` prints, `512.0 samples/s`;
- DeepSpeed (`step=10, skipped=0, lr=[0.0001]`, throughput and wall-clock timer lines);
- torchtune's bar description (`1|10|Loss: 1.234`).

A line is first reduced to what a terminal would finally show of it (the last non-blank
`\\r` segment), then cleaned of ANSI escapes. Names are normalised (see `canonical_name`) so
train and validation curves of every format share the same series names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter

MAX_LINE = 64 * 1024  # longer lines keep their last 64 KiB: the last state of a \r line

# --------------------------------------------------------------------------- text cleanup

# CSI (colours, cursor moves, erase), OSC (titles, hyperlinks), two-byte escapes, and C0
# controls other than \t \n \r (backspaces from Keras' bar, bells, NULs from garbage).
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]"
)


def strip_ansi(text: str) -> str:
    """`text` without ANSI escape sequences and stray control characters (keeps \\t \\n \\r)."""
    return _ANSI.sub("", text)


# A redraw that starts by moving the cursor up (rich's live display, nested tqdm bars) draws
# other rows than the one the line was on: what came before it is a finished row of its own.
_FRAME_START = re.compile(r"\r(?=(?:\x1b\[[0-9;]*K)*\x1b\[\d*A)")


def line_states(line: str) -> list[str]:
    """The finished rows one log line holds: usually one (`last_state`), several when a
    multi-row progress display redraws itself with cursor moves inside the line."""
    if "\x1b[" in line and _FRAME_START.search(line):
        if len(line) > MAX_LINE:
            line = line[-MAX_LINE:]
        states = [last_state(part) for part in _FRAME_START.split(line)]
        return [state for state in states if state and not state.isspace()]
    return [last_state(line)]


def last_state(line: str) -> str:
    """What a terminal finally shows of one line: its last non-blank `\\r` segment, cleaned."""
    if len(line) > MAX_LINE:
        line = line[-MAX_LINE:]
    if "\r" in line:
        segments = line.split("\r")
        line = ""
        for segment in reversed(segments):
            if "\x1b" in segment or "\x08" in segment:
                segment = _ANSI.sub("", segment)
            if segment and not segment.isspace():
                return segment
        return line
    if "\x1b" in line or "\x08" in line or "\x00" in line:
        line = _ANSI.sub("", line)
    return line


# The same reduction on raw bytes, which is how the fast path sees lines: no decoding unless
# a line is new to the parser.
_ANSI_B = re.compile(_ANSI.pattern.encode())
_FRAME_START_B = re.compile(_FRAME_START.pattern.encode())


def reduce_line(line: bytes) -> list[bytes]:
    """`line_states` for a raw line of bytes."""
    if len(line) > MAX_LINE:
        line = line[-MAX_LINE:]
    if b"\x1b[" in line and _FRAME_START_B.search(line):
        states = [_last_state_bytes(part) for part in _FRAME_START_B.split(line)]
        return [state for state in states if state.strip()]
    return [_last_state_bytes(line)]


def _last_state_bytes(line: bytes) -> bytes:
    end = len(line)
    while True:  # walk \r segments from the end (a bar line can hold thousands of them)
        start = line.rfind(b"\r", 0, end) + 1
        segment = line[start:end]
        if b"\x1b" in segment or b"\x08" in segment or b"\x00" in segment:
            segment = _ANSI_B.sub(b"", segment)
        if start == 0 or segment.strip():
            return segment if segment.strip() else b""
        end = start - 1


# --------------------------------------------------------------------------- bar frames
#
# A progress bar written to a file redraws with `\r` inside one long line: every frame of it
# is there, not only the last. `frame_shape` says where a frame's counter is, so `MetricSet`
# can keep a point for each frame whose counter advanced.

# A tqdm frame ends with its `12/24 [00:01<00:02, 9.1it/s, loss=0.5]` (elapsed time first,
# unlike Keras' `12/32 [===>...]`); text after it is a print glued to the frame.
_TQDM_COUNTER = re.compile(rb"(?<![\w./:\-])(\d+)/(?:\d+|\?) \[\d[^\]]*\]")
_COUNTER = re.compile(rb"(?<![\w./:\-])\d+/ *(?:\d+|\?)(?![\w/.:\-])")
KERAS_FRAME = "keras"  # the counter of every Keras frame


def strip_escapes(frame: bytes) -> bytes:
    """`frame` without ANSI escapes, backspaces and NULs."""
    return _ANSI_B.sub(b"", frame)


def frame_shape(frame: bytes) -> tuple:
    """(counter span, glued print offset, tqdm position span) of one cleaned bar frame; the
    same for every frame of its template (digits at the same places).

    The counter is the bar's last `12/24` (rich's `Epoch 1/3 ━━ 12/24`), None in a frame
    that is no bar, KERAS_FRAME for all of Keras' (running averages: only the last of them
    counts). A print glued after a tqdm frame's `]` starts at the offset given. The tqdm
    position is the `12` of `12/24 [`: the x of a frame with neither step nor epoch."""
    if b"/step" in frame or b"ETA: " in frame:
        return KERAS_FRAME, None, None
    counter = None
    for counter in _COUNTER.finditer(frame):  # noqa: B007 - the last one
        pass
    tqdm = None
    for tqdm in _TQDM_COUNTER.finditer(frame):  # noqa: B007 - the last one
        pass
    glued = None
    if tqdm is not None and frame[tqdm.end():].strip():
        glued = tqdm.end()
    return (counter.span() if counter else None, glued, tqdm.span(1) if tqdm else None)


# --------------------------------------------------------------------------- names

STEP, EPOCH, IGNORED, KNOWN, OTHER = range(5)

STEP_KEYS = ("step", "global_step", "iter", "iteration", "it", "trainer/global_step")
IGNORED_KEYS = ("v_num", "rank", "local_rank", "world_size", "pid", "seed", "port", "line",
                "version", "eta")

_TRAIN_PREFIXES = ("", "train_", "train/", "training_", "training/")
_VAL_PREFIXES = ("val_", "val/", "eval_", "eval/", "valid_", "valid/", "validation_",
                 "validation/", "evaluation_", "evaluation/")


def _build_aliases() -> dict[str, str]:
    aliases: dict[str, str] = {}
    families = {
        "loss": ("loss",),
        "accuracy": ("acc", "accuracy"),
        "perplexity": ("ppl", "perplexity"),
    }
    for canonical, bases in families.items():
        for base in bases:
            for prefix in _TRAIN_PREFIXES:
                aliases[prefix + base] = canonical
                aliases[prefix + base + "_step"] = canonical
            for prefix in _VAL_PREFIXES:
                aliases[prefix + base] = "val_" + canonical
    for prefix in _TRAIN_PREFIXES:
        for base in ("lr", "learning_rate"):
            aliases[prefix + base] = "lr"
        for base in ("grad_norm", "gradient_norm", "gnorm", "grad_norm_step"):
            aliases[prefix + base] = "grad_norm"
        for base in ("throughput", "samples_per_sec", "samples_per_second", "samples/s",
                     "samples/sec", "curr_samples_per_sec"):
            aliases[prefix + base] = "throughput"
    aliases["epoch"] = "epoch"
    aliases["train_loss_epoch"] = "loss_epoch"
    return aliases


ALIASES = _build_aliases()
KNOWN_NAMES = frozenset(
    ["loss", "val_loss", "lr", "grad_norm", "accuracy", "val_accuracy", "throughput",
     "perplexity", "val_perplexity", "loss_epoch", "mfu", "time", "tokens_per_sec"]
)

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[\s\-]+")


def clean_name(raw: str) -> str:
    """`RunningAvgSamplesPerSec` -> `running_avg_samples_per_sec`, `val acc` -> `val_acc`."""
    name = raw.strip().strip("'\"")
    name = _CAMEL.sub("_", name).lower()
    return _SEPARATORS.sub("_", name)


def canonical_name(raw: str) -> str:
    """The series name for a key as printed: aliases map to `loss`, `val_loss`, `lr`,
    `grad_norm`, `accuracy`, `val_accuracy`, `throughput`, `epoch`; other keys keep their
    cleaned name."""
    name = clean_name(raw)
    return ALIASES.get(name, name)


def _classify(raw: str) -> tuple[str, int]:
    name = clean_name(raw)
    if name in STEP_KEYS:
        return name, STEP
    if name in IGNORED_KEYS:
        return name, IGNORED
    name = ALIASES.get(name, name)
    if name == "epoch":
        return name, EPOCH
    return name, KNOWN if name in KNOWN_NAMES else OTHER


# --------------------------------------------------------------------------- patterns

_NUM = (r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?"
        r"|nan(?![a-z])|inf(?:inity)?(?![a-z]))")
_WORDS = r"(?:True|False|None|true|false|null)\b"

# key, separator (`=`/`:`, or '' when only blanks separate them), value. Keys start a word
# (not `ms/step`, not `12.3it`), may be quoted (then the quote closes before the separator,
# so `'cuda:0'` is no pair), may be two words for `train loss`/`val acc`. A value must not run
# on into a version, a date, a time or `file.py:12:func`.
_PAIR = re.compile(
    r"(?<![\w.`'\"\-])(?<![A-Za-z]/)(?P<quote>['\"])?"
    r"(?P<key>(?:(?:train|training|val|valid|validation|eval|test)[ ])?[A-Za-z](?:[\w./\-]*\w)?)"
    r"(?(quote)(?P=quote))(?:\s*(?P<sep>[=:])\s*|[ \t]+)"
    r"(?:['\"]|\[|np\.float\d+\(|tensor\()?"
    rf"(?P<value>{_NUM}|{_WORDS})"
    r"(?!\d|[.:\-]\d|:[A-Za-z_])",
    re.IGNORECASE,
)
_RATE = re.compile(r"(\d[\d.]*(?:[eE][-+]?\d+)?)\s*([Ss]amples|[Tt]okens|[Tt]ok)/s(?:ec)?\b")

# Lines that are never metrics: tracebacks, warnings, exceptions, and config dumps (an
# indented YAML/JSON entry, a `name = value  # comment` assignment as nanoGPT echoes its config).
_NOISE = re.compile(
    r"\s*(?:Traceback \(most recent call last\)"
    r"|File \""
    r"|\S+\.py:\d+: "
    r"|[\w.]*(?:Warning|Error|Exception)\b[:(]"
    r"|\^+\s*$)"
    r"|[ \t]{1,16}[\"']?[\w.\-]+[\"']?\s*:\s*[\"']?[^\s,]+[\"']?,?\s*$"
    r"|\s*(?:Overriding:\s*)?[A-Za-z_][\w.]*\s=\s[^\s,;]+\s*(?:#.*)?$"
)
_OBJECT_REPR = re.compile(r"\b[A-Z]\w*\(\w+=")
_EPOCH_ONLY = re.compile(r"\s*Epoch\s+(\d+)\s*/\s*\d+\s*$", re.IGNORECASE)
_KERAS = re.compile(r"\s*\d+/\d+\s.*?\d\s*[mun\u00b5]?s/step\s")
# Keras 2's bar before the end of its epoch (`12/32 [====>....] - ETA: 1s - loss: 0.69`):
# running averages, live values only; the finalised bar (`... 17ms/step - loss`) is the record.
_KERAS_RUNNING = re.compile(r"\s*\d+/\d+ \[[=>.]*\] - ETA: ")
_TORCHTUNE = re.compile(rf"\s*(\d+)\|(\d+)\|Loss:\s*({_NUM})")
_SUMMARY_KEY = "train_runtime"  # HF's end-of-training dict: its train_loss is a run average
_TIMER_HEADER = "time (ms)"  # DeepSpeed wall-clock breakdown: `step: 2.41` is a duration


# A bar's batch counter, `12/24` (not a version, date, path or time).
_PROGRESS = re.compile(r"(?<![\w./:\-])(\d+)/ *(\d+)(?![\w/.:\-])")


def epoch_fraction(done: float, total: float) -> float:
    """How far into its epoch a bar at `done`/`total` is; 0 when that is no fraction."""
    return done / total if 0 <= done <= total and total > 0 else 0.0


def _place_in_epoch(found, text: str) -> None:
    """`Epoch 1: 46%|... | 11/24` and `Epoch 1/3 ━━━ 12/24` (Lightning's tqdm and rich bars,
    `epoch 3 | 120/500 batches`): the epoch becomes 1.458, as HF Trainer counts epochs, so
    the bar's redraws and the records of one epoch spread along x instead of stacking."""
    index = found.names.index("epoch")
    if not found.values[index].is_integer():
        return
    epoch_at = found.spans[index][0]
    bars = [m for m in _PROGRESS.finditer(text) if m.start(1) != epoch_at]  # not `Epoch 1/3`
    if bars:
        done, total = bars[-1].span(1), bars[-1].span(2)
        found.values[index] += epoch_fraction(float(text[slice(*done)]),
                                              float(text[slice(*total)]))
        found.progress_spans = (done, total)


@dataclass
class ParsedLine:
    step: float | None
    values: dict[str, float] = field(default_factory=dict)


def compile_patterns(patterns: Sequence[str]) -> list[re.Pattern]:
    """User regexes; named groups become series, a group named `step` gives x."""
    compiled = []
    for pattern in patterns:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"metrics pattern {pattern!r} is not a valid regex: {exc}") from None
        if not regex.groupindex:
            raise ValueError(f"metrics pattern {pattern!r} has no named group (?P<name>...)")
        compiled.append(regex)
    return compiled


# --------------------------------------------------------------------------- plans
#
# Lines of one log repeat a few shapes with different numbers. A line's template is the line
# with every digit replaced by `#` (one fast bytes.translate); the first line of a template is
# parsed in full and leaves a plan: which byte slice is the step, which slices are values of
# which series, or that the template gives nothing. Later lines of that template only run
# float() on their slices. A slice that is no number falls back to the full parse.

DIGIT_MARKS = bytes.maketrans(b"0123456789", b"##########")
_MAX_PLANS = 8192


class Plan:
    __slots__ = ("names", "has_step", "take", "slices", "doubled", "keras", "epoch_context_at",
                 "progress_of", "live_only", "stateless")

    def __init__(self, step_at=None, names=(), value_at=(), keras=False, epoch_context_at=None,
                 progress_at=(), live_only=False):
        self.names: tuple[str, ...] = names
        self.has_step = step_at is not None
        # An epoch bar's `12/24`: its two numbers come last and move the epoch value along.
        self.progress_of = names.index("epoch") if progress_at else None
        # One C call slices every number out of a line: the step first, then the values.
        slices = [slice(*span) for span in
                  ((step_at,) if step_at else ()) + tuple(value_at) + tuple(progress_at)]
        self.slices = tuple(slices)
        self.doubled = len(slices) == 1  # itemgetter returns a tuple only for 2+ items
        self.take = itemgetter(*slices, *slices[:1]) if self.doubled else (
            itemgetter(*slices) if slices else None)
        self.keras = keras  # a Keras epoch line: stepped by the last `Epoch N/M`
        self.epoch_context_at = epoch_context_at  # an `Epoch N/M` line: sets that epoch
        self.live_only = live_only  # Keras 2's running averages: shown live, never a point
        # Neither steps nor Keras epochs: `apply` reads no parser state (bar frames inline it)
        self.stateless = not (self.has_step or keras or live_only or epoch_context_at)


NOTHING = Plan()  # lines of this template give no metrics


class _Found:
    """What the full parse of one line found, with where each number sits in the line."""

    __slots__ = ("step", "step_span", "names", "values", "spans", "keras", "epoch_span",
                 "cacheable", "progress_spans", "live_only")

    def __init__(self) -> None:
        self.step: float | None = None
        self.step_span: tuple[int, int] | None = None
        self.names: list[str] = []
        self.values: list[float] = []
        self.spans: list[tuple[int, int]] = []
        self.keras = False
        self.epoch_span: tuple[int, int] | None = None
        self.cacheable = True
        self.progress_spans: tuple = ()  # (done, total) spans of an epoch bar's `12/24`
        self.live_only = False

    def add(self, name: str, value: float, span: tuple[int, int]) -> None:
        self.names.append(name)
        self.values.append(value)
        self.spans.append(span)


class MetricsParser:
    """Parses lines one at a time. Keeps the little state some formats need (the epoch of
    Keras' `Epoch 3/10` lines applies to the metrics line that follows) and the plans of the
    line templates it has seen."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        self.patterns = compile_patterns(patterns)
        self.plans: dict[bytes, Plan] = {}  # new plans are added at the end
        self.generation = 0  # counts the times `plans` was emptied
        self._names: dict[str, tuple[str, int]] = {}
        self._epoch: float | None = None

    def parse_line(self, line: str) -> ParsedLine | None:
        """The metrics of one raw line (the last of its rows when it holds several)."""
        parsed = None
        for state in reduce_line(line.encode("utf-8", "surrogateescape")):
            parsed = self.parse_bytes(state) or parsed
        if parsed is None:
            return None
        step, names, values = parsed
        return ParsedLine(step, dict(zip(names, values, strict=True)))

    def learn(self, line: bytes) -> None:
        """Make the plan of a plain line's template (no \\r, no escapes, not too long) without
        reading it as a record: an `Epoch N/M` line sets no epoch here."""
        epoch = self._epoch
        try:
            self.parse_bytes(line)
        finally:
            self._epoch = epoch

    def parse_bytes(self, line: bytes, live: bool = False
                    ) -> tuple[float | None, tuple[str, ...], list] | None:
        """(step, names, values) of one reduced line (see `reduce_line`), or None. With
        `live`, also the values a bar shows only while it runs (Keras 2's running averages)."""
        if self.patterns:
            found = self._parse_custom(line.decode("utf-8", "replace"))
            if found is not None:
                return found
        template = line.translate(DIGIT_MARKS)
        if template == line:  # no digit: only a bare `loss: nan` can still be a metric
            if b"nan" in line or b"NaN" in line or b"inf" in line or b"Inf" in line:
                return self._finish(self._parse_full(line.decode("utf-8", "replace")), live)
            if not (self.patterns or b"\x1b" in line or b"\x08" in line or b"\x00" in line):
                self._remember_nothing(template)  # prose, blank lines: a lookup next time
            return None
        plan = self.plans.get(template)
        if plan is not None:
            if plan is NOTHING:
                return None
            try:
                return self.apply(plan, line, live)
            except ValueError:
                pass  # a slice of this line is no number: parse it in full
        text = line.decode("utf-8", "replace")
        found = self._parse_full(text)
        if plan is None:
            self._remember_plan(template, line, text, found)
        return self._finish(found, live)

    def apply(self, plan: Plan, line: bytes, live: bool = False):
        """The metrics of a line whose template has `plan`. Raises ValueError when a slice
        is no number."""
        if plan.live_only and not live:
            return None
        if plan.epoch_context_at is not None:
            start, stop = plan.epoch_context_at
            self._epoch = float(line[start:stop])
            return None
        values = list(map(float, plan.take(line)))
        if plan.doubled:
            values.pop()
        if plan.progress_of is not None:
            total = values.pop()
            values[plan.progress_of] += epoch_fraction(values.pop(), total)
        step = None
        if plan.has_step:
            step = values.pop(0)
            if not (step >= 0 and step.is_integer()):
                step = None
        if plan.keras:
            return self._keras_step(step, plan.names, values)
        return step, plan.names, values

    def _keras_step(self, step, names, values):
        if step is None and self._epoch is not None:
            step = self._epoch
            if "epoch" not in names:
                names = (*names, "epoch")
                values.append(step)
        return step, names, values

    def _finish(self, found: _Found | None, live: bool = False):
        if found is None or (found.live_only and not live):
            return None
        if found.epoch_span is not None:
            self._epoch = found.step
            return None
        names = tuple(found.names)
        if found.keras:
            return self._keras_step(found.step, names, found.values)
        return found.step, names, found.values

    def _make_room(self) -> None:
        if len(self.plans) >= _MAX_PLANS:
            self.plans.clear()  # a log of endless one-off shapes: start over, stay bounded
            self.generation += 1

    def _remember_nothing(self, template: bytes) -> None:
        self._make_room()
        self.plans[template] = NOTHING

    def _remember_plan(self, template: bytes, line: bytes, text: str,
                       found: _Found | None) -> None:
        if found is None:
            self._remember_nothing(template)
            return
        self._make_room()
        if not found.cacheable:
            return
        if len(text) == len(line):
            def to_bytes(span):
                return span
        elif text.encode("utf-8") == line:
            def to_bytes(span):
                return (len(text[: span[0]].encode()), len(text[: span[1]].encode()))
        else:
            return  # invalid UTF-8: offsets in the text are not offsets in the bytes
        self.plans[template] = Plan(
            step_at=to_bytes(found.step_span) if found.step_span else None,
            names=tuple(found.names),
            value_at=tuple(to_bytes(span) for span in found.spans),
            keras=found.keras,
            epoch_context_at=to_bytes(found.epoch_span) if found.epoch_span else None,
            progress_at=tuple(to_bytes(span) for span in found.progress_spans),
            live_only=found.live_only,
        )

    # -- the full parse

    def _parse_custom(self, text: str):
        for regex in self.patterns:
            match = regex.search(text)
            if match is None:
                continue
            step, names, values = None, [], []
            for key, raw in match.groupdict().items():
                if raw is None:
                    continue
                try:
                    value = float(raw.replace(",", ""))
                except ValueError:
                    continue
                if key == "step":
                    step = value
                else:
                    names.append(canonical_name(key))
                    values.append(value)
            if names:
                return step, tuple(names), values
        return None

    def _parse_full(self, text: str) -> _Found | None:
        if _NOISE.match(text):
            return None
        if "|Loss:" in text:
            match = _TORCHTUNE.match(text)
            if match:
                found = _Found()
                found.step, found.step_span = float(match.group(2)), match.span(2)
                found.add("epoch", float(match.group(1)), match.span(1))
                found.add("loss", float(match.group(3)), match.span(3))
                return found
        if "poch" in text:
            match = _EPOCH_ONLY.match(text)
            if match:
                found = _Found()
                found.step, found.epoch_span = float(match.group(1)), match.span(1)
                return found
        if "(" in text and _OBJECT_REPR.search(text):
            return None  # Namespace(lr=0.1, ...), TrainingArguments(...): settings
        if "...." in text and not _KERAS_RUNNING.match(text):  # not Keras' `[==>.....]`
            return None  # `name ........ value` tables of settings (DeepSpeed, Megatron)
        return self._parse_pairs(text)

    def _parse_pairs(self, text: str) -> _Found | None:
        found = _Found()
        summary = _SUMMARY_KEY in text
        timer = _TIMER_HEADER in text
        known = symbolic = 0
        for match in _PAIR.finditer(text):
            key, sep, raw = match.group("key", "sep", "value")
            name, kind = self._classify(key)
            if raw[0] in "TFNtfn" and raw[-1] in "eElL":  # True/False/None/null
                if raw[0] in "TFN":
                    return None  # Python settings (`enabled=False`, `{'x': None}`), not metrics
                continue
            if kind == IGNORED:
                continue
            if sep:
                symbolic += 1
            elif kind == OTHER:
                continue  # `on 2 GPUs`, `seed 0`: only known names may go without = or :
            if any(c.isdigit() for c in key):
                found.cacheable = False  # `layer1_loss` and `layer2_loss` share a template
            value = float(raw)
            if timer:
                name, kind = "time_" + name, OTHER
            elif summary:
                name = clean_name(key)
            if kind == STEP:
                if found.step is None and value >= 0 and value.is_integer():
                    found.step, found.step_span = value, match.span("value")
                continue
            if kind == KNOWN:
                known += 1
            if name in found.names:
                name = clean_name(key)
                if name in found.names:
                    continue
            found.add(name, value, match.span("value"))
        if "/s" in text:
            rate = _RATE.search(text)
            if rate is not None:
                name = "throughput" if rate.group(2).lower() == "samples" else "tokens_per_sec"
                if name not in found.names:
                    found.add(name, float(rate.group(1)), rate.span(1))
                    known += 1
        names = found.names
        if not names or (not known and symbolic < 2) or names == ["epoch"]:
            return None
        found.live_only = "ETA" in text and _KERAS_RUNNING.match(text) is not None
        found.keras = found.live_only or _KERAS.match(text) is not None
        if "epoch" in names and found.step is None and not found.keras:
            _place_in_epoch(found, text)
        return found

    def _classify(self, key: str) -> tuple[str, int]:
        info = self._names.get(key)
        if info is None:
            info = _classify(key)
            if len(self._names) < 4096:  # garbage keys must not grow the cache without bound
                self._names[key] = info
        return info
