"""Alerts on a training session: failed or lost, loss became nan/inf, loss diverged, log stalled.

Three parts with one job each:
  evaluate()    pure: the alerts that hold for one session right now (no dedup, no I/O)
  AlertTracker  remembers what already fired, so an alert fires once and not on every refresh
  Notifier      delivers one alert: terminal bell, desktop (notify-send), webhook (JSON POST)

Stdlib only, never imports textual or rich. Metrics are duck-typed: any object with
`series: dict[str, Series]`, where a Series has `xs`/`ys` sequences of floats and optionally
`nonfinite: int` (see monitor/metrics.py).
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Iterable, Mapping, MutableSet, Sequence
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Any, TextIO

from trainctl_tui.core.formatting import format_duration as core_format_duration
from trainctl_tui.core.models import Session, Status

__all__ = [
    "Alert",
    "AlertKind",
    "AlertTracker",
    "Notifier",
    "evaluate",
    "format_duration",
]

ERROR = "error"
WARNING = "warning"
SMOOTH_WINDOW = 5  # points averaged for the divergence test, so one noisy batch does not alert
NONFINITE_SERIES = ("loss", "val_loss")


class AlertKind(str, Enum):
    FAILED = "failed"
    LOST = "lost"
    NONFINITE = "nonfinite"
    DIVERGED = "diverged"
    STALLED = "stalled"
    INTERRUPTED = "interrupted"
    BUDGET = "budget"  # 90 % of the budget spent
    HOURS = "hours"  # 90 % of the max hours run
    PROJECTED = "projected"  # the cost to finish would pass the budget
    LIMIT = "limit"  # the runner stopped the run at its budget or max hours
    GPU_IDLE = "gpu_idle"  # a paid machine's GPUs sat idle while the run was running
    NODE_FAILED = "node_failed"  # a node of a multi-node run failed while the head runs on
    NODE_LOST = "node_lost"  # a node stopped answering (runner gone, host silent, no heartbeat)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Alert:
    session_id: str
    session_name: str
    kind: AlertKind
    message: str
    severity: str  # "error" | "warning"
    at: float  # when the condition began, if known; else when it was first seen
    attempt: int = 0  # the session's attempt when the alert was raised
    episode: str = ""  # a condition that can end and come back fires once per episode

    @property
    def key(self) -> str:
        """Identity for 'fired once'. A resumed session (attempt 2+) gets fresh keys so the new
        attempt can alert again; attempt 0/1 keep the plain form."""
        base = f"{self.session_id}:{self.kind.value}"
        base = f"{base}:{self.attempt}" if self.attempt > 1 else base
        return f"{base}@{self.episode}" if self.episode else base

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.episode:
            del data["episode"]  # only alerts that can come back carry it
        data["kind"] = self.kind.value
        data["key"] = self.key
        return data


# --------------------------------------------------------------------------- evaluate


def evaluate(
    session: Session,
    metrics: Any,
    *,
    log_mtime: float | None,
    now: float,
    divergence_factor: float,
    stall_seconds: float,
    min_points: int = 20,
) -> list[Alert]:
    """Every alert that currently holds for `session` (pure; not deduplicated).

    `metrics` may be None. `log_mtime` is the train.log modification time (None: no log yet).
    """
    found = [
        _status_alert(session, now),
        _nonfinite_alert(session, metrics, now),
        _diverged_alert(session, metrics, now, divergence_factor, min_points),
        _stalled_alert(session, log_mtime, now, stall_seconds),
    ]
    return [alert for alert in found if alert is not None]


def _make(session: Session, kind: AlertKind, message: str, severity: str, at: float) -> Alert:
    return Alert(
        session_id=session.id,
        session_name=session.name,
        kind=kind,
        message=message,
        severity=severity,
        at=at,
        attempt=session.attempt or 0,
    )


def _status_alert(session: Session, now: float) -> Alert | None:
    at = session.ended or now
    if session.status == Status.FAILED:
        return _make(session, AlertKind.FAILED, _failed_message(session), ERROR, at)
    if session.status == Status.LOST:
        detail = f": {session.detail}" if session.detail else ""
        return _make(session, AlertKind.LOST, f"session lost{detail}", ERROR, at)
    if session.status == Status.INTERRUPTED:
        detail = f": {session.detail}" if session.detail else ""
        return _make(session, AlertKind.INTERRUPTED, f"spot interruption{detail}", WARNING, at)
    return None


def _failed_message(session: Session) -> str:
    cause = _exit_cause(session)
    detail = session.detail or ""
    if cause and detail and _mentions_cause(detail, session):
        return f"failed: {detail}"  # the runner's reason already names the code or signal
    if cause and detail:
        return f"failed ({cause}): {detail}"
    if cause or detail:
        return f"failed: {cause or detail}"
    return "failed"


def _exit_cause(session: Session) -> str:
    if session.signal:
        return f"killed by {signal_name(session.signal)}"
    if session.exit_code is not None:
        return f"exit code {session.exit_code}"
    return ""


def _mentions_cause(detail: str, session: Session) -> bool:
    if session.signal:
        return signal_name(session.signal) in detail
    return f"code {session.exit_code}" in detail


def signal_name(number: int) -> str:
    """'SIGKILL' for 9; 'signal 99' for a number this platform does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _nonfinite_alert(session: Session, metrics: Any, now: float) -> Alert | None:
    for name in NONFINITE_SERIES:
        series = _series(metrics, name)
        if series is None or not getattr(series, "nonfinite", 1):
            continue  # nonfinite == 0 lets us skip the scan
        hit = _first_nonfinite(series)
        if hit is not None:
            step, value = hit
            message = f"{name} became {_fmt_value(value)} at step {_fmt_step(step)}"
            return _make(session, AlertKind.NONFINITE, message, ERROR, now)
        if getattr(series, "nonfinite", 0):
            # The series counted nan/inf values but did not keep them as points.
            message = f"{name} became nan/inf ({series.nonfinite} non-finite values)"
            return _make(session, AlertKind.NONFINITE, message, ERROR, now)
    return None


def _first_nonfinite(series: Any) -> tuple[float, float] | None:
    # Not strict: a parser thread may have appended x but not yet y.
    for x, y in zip(series.xs, series.ys, strict=False):
        if not math.isfinite(y):
            return x, y
    return None


def _diverged_alert(
    session: Session, metrics: Any, now: float, factor: float, min_points: int
) -> Alert | None:
    series = _series(metrics, "loss")
    if series is None or len(series.ys) < max(min_points, SMOOTH_WINDOW):
        return None
    if not math.isfinite(series.ys[-1]):
        return None  # nan/inf is the nonfinite alert's business
    values = _finite(series)
    if len(values) < max(min_points, SMOOTH_WINDOW):
        return None
    best = _min_rolling_mean(values, SMOOTH_WINDOW)
    latest = sum(values[-SMOOTH_WINDOW:]) / SMOOTH_WINDOW
    # "factor × best" means nothing for a loss that can reach zero or go negative.
    if best <= 0 or latest <= factor * best:
        return None
    message = (
        f"loss diverged: {_fmt_value(latest)} (mean of last {SMOOTH_WINDOW}) is "
        f"{latest / best:.1f}× its best {_fmt_value(best)} (limit {factor:g}×)"
    )
    return _make(session, AlertKind.DIVERGED, message, WARNING, now)


def _finite(series: Any) -> Sequence[float]:
    if getattr(series, "nonfinite", None) == 0:
        return series.ys
    return [y for y in series.ys if math.isfinite(y)]


def _min_rolling_mean(values: Sequence[float], window: int) -> float:
    # A running sum keeps this O(n); it is rebuilt each call, so float drift stays small.
    total = sum(values[:window])
    best = total
    for i in range(window, len(values)):
        total += values[i] - values[i - window]
        best = min(best, total)
    return best / window


def _stalled_alert(
    session: Session, log_mtime: float | None, now: float, stall_seconds: float
) -> Alert | None:
    if session.status != Status.RUNNING:
        return None
    # A run that never wrote a line is silent since it started.
    last_output = log_mtime if log_mtime is not None else session.started
    if last_output is None:
        return None
    silent = now - last_output
    if silent <= stall_seconds:
        return None
    message = f"no log output for {format_duration(silent)}"
    return _make(session, AlertKind.STALLED, message, WARNING, last_output + stall_seconds)


def _series(metrics: Any, name: str) -> Any:
    if metrics is None:
        return None
    table = metrics if isinstance(metrics, Mapping) else getattr(metrics, "series", None)
    if not isinstance(table, Mapping):
        return None
    return table.get(name)


def format_duration(seconds: float) -> str:
    """'45s', '12m03s', '2h05m09s': an alert names a silence to the second."""
    return core_format_duration(seconds, units=3)


def _fmt_value(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def _fmt_step(step: float) -> str:
    return str(int(step)) if math.isfinite(step) and step == int(step) else f"{step:g}"


# --------------------------------------------------------------------------- tracker


class AlertTracker:
    """Turns 'alerts that hold now' into 'alerts to announce': each key fires once.

    `fired` holds the keys already announced; pass a set backed by storage to keep that
    across restarts of the app. Not thread-safe: call it from one thread.
    """

    def __init__(self, fired: MutableSet[str] | None = None):
        self.fired: MutableSet[str] = fired if fired is not None else set()
        self._open: dict[str, dict[str, Alert]] = {}  # session id -> key -> alert

    def update(self, alerts_now_by_session: Mapping[str, Iterable[Alert]]) -> list[Alert]:
        """Record the current alerts of the sessions given (others are left as they were) and
        return the ones that never fired before, oldest first."""
        new: list[Alert] = []
        for session_id, alerts in alerts_now_by_session.items():
            new.extend(self._update_session(session_id, alerts))
        return sorted(new, key=lambda a: a.at)

    def _update_session(self, session_id: str, alerts: Iterable[Alert]) -> list[Alert]:
        before = self._open.get(session_id, {})
        now: dict[str, Alert] = {}
        new: list[Alert] = []
        for alert in alerts:
            previous = before.get(alert.key)
            # Keep when it was first seen; take the fresh message ("stalled for 13m" etc.).
            now[alert.key] = replace(alert, at=previous.at) if previous else alert
            if alert.key not in self.fired:
                self.fired.add(alert.key)
                new.append(alert)
        if now:
            self._open[session_id] = now
        else:
            self._open.pop(session_id, None)
        return new

    @property
    def open(self) -> list[Alert]:
        """Alerts that currently hold, newest first."""
        alerts = [a for by_key in self._open.values() for a in by_key.values()]
        return sorted(alerts, key=lambda a: a.at, reverse=True)

    def open_for(self, session_id: str) -> list[Alert]:
        return sorted(self._open.get(session_id, {}).values(), key=lambda a: a.at, reverse=True)

    def clear(self, session_id: str) -> None:
        """Forget a session (e.g. removed): its open alerts and its fired keys."""
        self._open.pop(session_id, None)
        prefix = f"{session_id}:"
        for key in [k for k in self.fired if k.startswith(prefix)]:
            self.fired.discard(key)


# --------------------------------------------------------------------------- notifier

_WHICH = object()  # default for notify_send: look it up when the Notifier is made
_MAX_ERROR_BODY = 120


class Notifier:
    """Delivers an alert on the enabled channels. `send` blocks (run it in a worker thread)
    and never raises: it returns one error string per channel that failed.

    The webhook URL is a secret (Slack URLs embed a token): errors name it "webhook" and its
    host only.
    """

    def __init__(
        self,
        *,
        bell: bool,
        desktop: bool,
        webhook_url: Any = None,
        timeout: float = 5.0,
        notify_send: Any = _WHICH,
        stream: TextIO | None = None,
    ):
        self.bell = bell
        self.desktop = desktop
        self.timeout = timeout
        self.notify_send = shutil.which("notify-send") if notify_send is _WHICH else notify_send
        self.stream = stream  # None: /dev/tty, else stderr
        self._webhook_url = _reveal(webhook_url)

    @classmethod
    def from_config(cls, alerts_config: Any, **kwargs: Any) -> Notifier:
        """From an AlertsConfig (bell, desktop, webhook_url as SecretStr or None)."""
        return cls(
            bell=alerts_config.bell,
            desktop=alerts_config.desktop,
            webhook_url=alerts_config.webhook_url,
            **kwargs,
        )

    @property
    def enabled(self) -> bool:
        return self.bell or self.desktop or bool(self._webhook_url)

    def __repr__(self) -> str:  # never show the URL
        hook = f"webhook={_host(self._webhook_url)!r}" if self._webhook_url else "webhook=None"
        return f"Notifier(bell={self.bell}, desktop={self.desktop}, {hook})"

    def send(self, alert: Alert) -> list[str]:
        errors: list[str] = []
        channels = [
            (self.bell, self._ring, "bell"),
            (self.desktop, self._notify_desktop, "desktop"),
            (bool(self._webhook_url), self._post_webhook, "webhook"),
        ]
        for enabled, deliver, name in channels:
            if not enabled:
                continue
            try:
                error = deliver(alert)
            except Exception as exc:  # a channel bug must not stop the others
                error = f"{name}: {type(exc).__name__}"
            if error:
                errors.append(self._scrub(error))
        return errors

    # ----------------------------------------------------------------- bell

    def _ring(self, alert: Alert) -> str | None:
        if self.stream is not None:
            return _write_bell(self.stream, "bell")
        try:
            with open("/dev/tty", "w") as tty:
                return _write_bell(tty, "bell")
        except OSError:
            pass  # no controlling terminal (service, CI)
        if sys.stderr is None:
            return "bell: no terminal to ring"
        return _write_bell(sys.stderr, "bell")

    # ----------------------------------------------------------------- desktop

    def _notify_desktop(self, alert: Alert) -> str | None:
        if not self.notify_send:
            return "desktop: notify-send not found (install libnotify-bin)"
        urgency = "critical" if alert.severity == ERROR else "normal"
        title = f"trainctl: {alert.session_name}"
        # An argv list, never a shell; "--" so a name starting with "-" is not an option.
        argv = [self.notify_send, f"--urgency={urgency}", "--", title, alert.message]
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"desktop: notify-send timed out after {self.timeout:g}s"
        except OSError as exc:
            return f"desktop: cannot run notify-send: {exc.strerror or exc}"
        if done.returncode != 0:
            why = _first_line(done.stderr.decode("utf-8", "replace"))
            return f"desktop: notify-send exited {done.returncode}" + (f": {why}" if why else "")
        return None

    # ----------------------------------------------------------------- webhook

    def webhook_body(self, alert: Alert) -> dict[str, Any]:
        """Slack-compatible: `text` is what Slack shows; `alert` is for other receivers."""
        text = f"trainctl: {alert.session_name} ({alert.session_id}) {alert.message}"
        return {"text": text, "alert": alert.to_json()}

    def _post_webhook(self, alert: Alert) -> str | None:
        url = self._webhook_url
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            return "webhook: URL must start with http:// or https://"
        data = json.dumps(self.webhook_body(alert)).encode("utf-8")
        error, retry = self._post_once(url, data)
        if retry:  # one more try on 5xx or timeout; the total stays bounded at 2 × timeout
            error, _ = self._post_once(url, data)
        return error

    def _post_once(self, url: str, data: bytes) -> tuple[str | None, bool]:
        """(error or None, worth retrying)."""
        # Here only: urllib.request brings http.client and ssl, which `trainctl --once` skips.
        import urllib.error
        import urllib.request

        where = f"webhook ({_host(url)})"
        request = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "trainctl"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(4096)
            return None, False
        except urllib.error.HTTPError as exc:
            body = _first_line(_read_quietly(exc))
            suffix = f": {body[:_MAX_ERROR_BODY]}" if body else ""
            return f"{where}: HTTP {exc.code}{suffix}", exc.code >= 500
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                return self._timed_out(where), True
            return f"{where}: {_reason(exc.reason)}", False
        except TimeoutError:
            return self._timed_out(where), True
        except (OSError, ValueError) as exc:  # reset connection, bad URL, bad port ...
            return f"{where}: {type(exc).__name__}", False

    def _timed_out(self, where: str) -> str:
        return f"{where}: timed out after {self.timeout:g}s"

    def _scrub(self, text: str) -> str:
        """Last line of defence: no part of the webhook URL beyond its host leaks out."""
        url = self._webhook_url
        if not url:
            return text
        parts = urllib.parse.urlsplit(url)
        for secret in (url, parts.path, parts.query, parts.username, parts.password):
            if secret and len(secret) > 1:
                text = text.replace(secret, "****")
        return text


def _reveal(url: Any) -> str | None:
    if url is None:
        return None
    if hasattr(url, "get_secret_value"):  # pydantic SecretStr, without importing pydantic
        url = url.get_secret_value()
    return str(url).strip() or None


def _host(url: str | None) -> str:
    try:
        return urllib.parse.urlsplit(url or "").hostname or "?"
    except ValueError:
        return "?"


def _reason(reason: Any) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) if isinstance(reason, str) else type(reason).__name__


def _read_quietly(response: Any) -> str:
    try:
        return response.read(_MAX_ERROR_BODY * 4).decode("utf-8", "replace")
    except Exception:
        return ""
    finally:
        response.close()


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def _write_bell(stream: TextIO, name: str) -> str | None:
    try:
        stream.write("\a")
        stream.flush()
    except (OSError, ValueError) as exc:  # closed stream, broken pipe
        return f"{name}: {type(exc).__name__}"
    return None
