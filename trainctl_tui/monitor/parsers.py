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


# --------------------------------------------------------------------------- names

STEP, EPOCH, IGNORED, KNOWN, OTHER = range(5)

STEP_KEYS = ("step", "global_step", "iter", "iteration", "it", "trainer/global_step")
IGNORED_KEYS = ("v_num", "rank", "local_rank", "world_size", "pid", "seed", "port", "line",
                "version")

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

_NUM = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan(?![a-z])|inf(?:inity)?(?![a-z]))"
_WORDS = r"(?:True|False|None|true|false|null)\b"

# key, separator (`=`/`:`, or '' when only blanks separate them), value. Keys start a word
# (not `ms/step`, not `12.3it`), may be quoted, may be two words for `train loss`/`val acc`.
# A value must not run on into a version, a date, a time or `file.py:12:func`.
_PAIR = re.compile(
    r"(?<![\w.`\-])(?<![A-Za-z]/)['\"]?"
    r"((?:(?:train|training|val|valid|validation|eval|test)[ ])?[A-Za-z](?:[\w./\-]*\w)?)"
    r"['\"]?(?:\s*([=:])\s*|[ \t]+)"
    r"(?:['\"]|\[|np\.float\d+\(|tensor\()?"
    rf"({_NUM}|{_WORDS})"
    r"(?!\d|[.:\-]\d|:[A-Za-z_])",
    re.IGNORECASE,
)
_RATE = re.compile(rf"({_NUM})\s*(samples|tokens|tok)/s(?:ec)?\b", re.IGNORECASE)
_DIGIT = re.compile(r"\d")

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
_TORCHTUNE = re.compile(rf"\s*(\d+)\|(\d+)\|Loss:\s*({_NUM})")
_SUMMARY_KEY = "train_runtime"  # HF's end-of-training dict: its train_loss is a run average
_TIMER_HEADER = "time (ms)"  # DeepSpeed wall-clock breakdown: `step: 2.41` is a duration


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


class MetricsParser:
    """Parses lines one at a time. Keeps the little state some formats need (the epoch of
    Keras' `Epoch 3/10` lines applies to the metrics line that follows)."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        self.patterns = compile_patterns(patterns)
        self._names: dict[str, tuple[str, int]] = {}
        self._epoch: float | None = None

    def parse_line(self, line: str) -> ParsedLine | None:
        parsed = self.parse_state(last_state(line))
        if parsed is None:
            return None
        step, names, values = parsed
        return ParsedLine(step, dict(zip(names, values)))

    def parse_state(self, text: str) -> tuple[float | None, list[str], list[float]] | None:
        """(step, names, values) of one already reduced line (see `last_state`), or None."""
        if self.patterns:
            found = self._parse_custom(text)
            if found is not None:
                return found
        if not _DIGIT.search(text) or _NOISE.match(text):
            return None
        if "|Loss:" in text:
            match = _TORCHTUNE.match(text)
            if match:
                return (float(match.group(2)), ["epoch", "loss"],
                        [float(match.group(1)), float(match.group(3))])
        if "poch" in text:
            match = _EPOCH_ONLY.match(text)
            if match:
                self._epoch = float(match.group(1))
                return None
        if "(" in text and _OBJECT_REPR.search(text):
            return None  # Namespace(lr=0.1, ...), TrainingArguments(...): settings
        if "...." in text:
            return None  # `name ........ value` tables of settings (DeepSpeed, Megatron)
        return self._parse_pairs(text)

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
                return step, names, values
        return None

    def _parse_pairs(self, text: str):
        pairs = _PAIR.findall(text)
        rate = _RATE.search(text) if "/s" in text else None
        if not pairs and rate is None:
            return None
        summary = _SUMMARY_KEY in text
        timer = _TIMER_HEADER in text
        cache = self._names
        step = None
        names: list[str] = []
        values: list[float] = []
        known = symbolic = 0
        for key, sep, raw in pairs:
            info = cache.get(key)
            if info is None:
                info = self._remember(key)
            name, kind = info
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
            value = float(raw)
            if timer:
                name, kind = "time_" + name, OTHER
            elif summary:
                name = clean_name(key)
            if kind == STEP:
                if step is None and value >= 0 and value == int(value):
                    step = value
                continue
            if kind == KNOWN:
                known += 1
            if name in names:
                name = clean_name(key)
                if name in names:
                    continue
            names.append(name)
            values.append(value)
        if rate is not None:
            name = "throughput" if rate.group(2).lower() == "samples" else "tokens_per_sec"
            if name not in names:
                names.append(name)
                values.append(float(rate.group(1)))
                known += 1
        if not names or (not known and symbolic < 2) or names == ["epoch"]:
            return None
        if step is None and self._epoch is not None and _KERAS.match(text):
            step = self._epoch
            if "epoch" not in names:
                names.append("epoch")
                values.append(step)
        return step, names, values

    def _remember(self, key: str) -> tuple[str, int]:
        info = _classify(key)
        if len(self._names) < 4096:  # garbage keys must not grow the cache without bound
            self._names[key] = info
        return info
