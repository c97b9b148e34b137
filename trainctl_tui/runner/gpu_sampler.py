"""What the training uses: every few seconds the GPUs (nvidia-smi) and the training's CPU and
memory (its process group, from /proc), kept in usage.json beside status.json: the latest
values, a short ring of samples for sparklines, and since when the GPUs have been quiet.

A sampling thread of its own: a hung nvidia-smi is killed after a timeout and never stalls
the runner's main loop. Without nvidia-smi (or without a GPU) only CPU and memory are kept,
and "no GPU" is said once. Stdlib only, Python 3.7+, like the rest of the runner."""

from __future__ import annotations

import json
import os
import signal
import time

from .lazy_import import OnFirstUse
from .runner_log import log_stderr, one_line

subprocess = OnFirstUse("subprocess", globals())
threading = OnFirstUse("threading", globals())

USAGE_FILE = "usage.json"
USAGE_VERSION = 1
QUERY_FIELDS = ("index", "uuid", "name", "utilization.gpu", "memory.used", "memory.total",
                "power.draw", "temperature.gpu")
NVIDIA_SMI = ["nvidia-smi", "--query-gpu=" + ",".join(QUERY_FIELDS),
              "--format=csv,noheader,nounits"]
KEEP_SAMPLES = 60  # the ring: 5 minutes at the default 5 s
PROBE_SAMPLES = 12  # the newest samples a remote probe carries (the app keeps the ring)
NVIDIA_SMI_TIMEOUT = 10.0
UNKNOWN_LEVEL = 101  # a sample whose utilization is unknown counts as busy: no idle claim
SPEC_KEY = "usage_sample_seconds"
DEFAULT_INTERVAL = 5.0


# --------------------------------------------------------------------------- nvidia-smi


def parse_number(text: str):
    """'17.69' -> 17.69, '42' -> 42; '[N/A]', '[Not Supported]', '[Unknown Error]' and any
    other word -> None (never 0: an unknown value is not an idle GPU)."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return int(value) if value.is_integer() and "." not in text else value


def parse_gpu_csv(text: str) -> list:
    """nvidia-smi's `--query-gpu=<QUERY_FIELDS> --format=csv,noheader,nounits` lines, one GPU
    each ("0, GPU-5f0c…, NVIDIA A10G, 97, 20515, 23028, 187.41, 61"), as dicts. Lines that are
    no GPU's (warnings, "No devices were found") are skipped."""
    gpus = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < len(QUERY_FIELDS):
            continue
        if len(fields) > len(QUERY_FIELDS):  # a name holding commas
            extra = len(fields) - len(QUERY_FIELDS)
            fields[2:3 + extra] = [", ".join(fields[2:3 + extra])]
        index = parse_number(fields[0])
        if not isinstance(index, int):
            continue
        gpus.append({
            "index": index,
            "uuid": fields[1] if fields[1].startswith("GPU-") else None,
            "name": None if fields[2].startswith("[") else fields[2],
            "util": parse_number(fields[3]),
            "mem_used_mb": parse_number(fields[4]),
            "mem_total_mb": parse_number(fields[5]),
            "power_w": parse_number(fields[6]),
            "temp_c": parse_number(fields[7]),
        })
    return gpus


class NvidiaSmi:
    """Runs nvidia-smi with a timeout. A run that does not end in time is killed (its whole
    process group); one stuck even after SIGKILL (a driver hang) is reaped on later calls and
    no new one is started meanwhile, so hung processes never pile up."""

    def __init__(self, command=None, timeout: float = NVIDIA_SMI_TIMEOUT):
        self.command = list(command or NVIDIA_SMI)
        self.timeout = timeout
        self.stuck = None  # a killed nvidia-smi that has not exited yet
        self.missing = False

    def query(self):
        """(gpus, None) or (None, why not): 'nvidia-smi not found', 'timed out ...'."""
        if self.missing:
            return None, "nvidia-smi not found"
        if self.stuck is not None:
            if self.stuck.poll() is None:
                return None, "nvidia-smi still hung after SIGKILL"
            self.stuck = None
        try:
            proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except FileNotFoundError:
            self.missing = True
            return None, "nvidia-smi not found"
        except OSError as exc:
            return None, f"cannot run nvidia-smi: {exc.strerror or exc}"
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            return None, f"nvidia-smi timed out after {self.timeout:g}s (killed)"
        text = out.decode("utf-8", "replace")
        gpus = parse_gpu_csv(text) if proc.returncode == 0 else []
        if gpus:
            return gpus, None
        why = one_line(text) or f"nvidia-smi exited with code {proc.returncode}"
        return None, why

    def _kill(self, proc) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            proc.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            self.stuck = proc  # uninterruptible (D state): reaped later, never waited on


# --------------------------------------------------------------------------- the training


class GroupCpu:
    """CPU and resident memory of a process group, from /proc: utime+stime (and the times of
    children it reaped, so a finished dataloader worker's time is not lost) summed over the
    group's processes; CPU % from the change between two looks. None where /proc is absent."""

    def __init__(self):
        self.ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self.previous = None  # (pgid, ticks, when)

    def sample(self, pgid, now: float):
        """(cpu percent or None, rss MB or None) of group `pgid` now."""
        if not pgid or not os.path.isdir("/proc/self"):
            self.previous = None
            return None, None
        ticks = rss_pages = 0
        found = False
        try:
            names = os.listdir("/proc")
        except OSError:
            return None, None
        for name in names:
            if not name.isdigit():
                continue
            try:
                with open("/proc/" + name + "/stat", "rb") as fh:
                    raw = fh.read()
            except OSError:
                continue  # gone meanwhile
            fields = raw[raw.rfind(b")") + 2:].split()
            if len(fields) < 22 or int(fields[2]) != pgid:  # field 5: the process group
                continue
            found = True
            ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
            rss_pages += int(fields[21])  # field 24: rss in pages
        if not found:
            self.previous = None
            return None, None
        cpu = None
        if self.previous is not None and self.previous[0] == pgid and now > self.previous[2]:
            used = max(0, ticks - self.previous[1]) / self.ticks
            cpu = round(100.0 * used / (now - self.previous[2]), 1)
        self.previous = (pgid, ticks, now)
        return cpu, round(rss_pages * self.page / 1048576.0, 1)


# --------------------------------------------------------------------------- the sampler


class UsageSampler:
    """Samples every `interval` seconds in its own thread into session_dir/usage.json (written
    whole each time: temp file, rename). `pgid` is called for the training's process group
    (None between attempts); `note` gets the one line saying there is no GPU."""

    def __init__(self, session_dir: str, interval: float, pgid, note=None,
                 nvidia_smi: NvidiaSmi | None = None, keep: int = KEEP_SAMPLES):
        self.path = os.path.join(session_dir, USAGE_FILE)
        self.interval = interval
        self.pgid = pgid
        self.note = note or log_stderr
        self.smi = nvidia_smi or NvidiaSmi(
            timeout=min(NVIDIA_SMI_TIMEOUT, max(1.0, 2 * interval)))
        self.keep = keep
        self.cpu = GroupCpu()
        self.samples = []
        self.busy = []  # (time, level): the strict suffix maxima of the GPUs' busiest util
        self.gpu_since = None  # first sample with GPUs
        self.gpu_problem = None  # why there are no GPU values, said once per change
        self.gpus = []
        self._stop = None
        self._thread = None

    def start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trainctl-usage", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stop is None:
            return
        self._stop.set()
        self._thread.join(self.smi.timeout + 2.0)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample(time.time())
            except Exception as exc:  # a bug here must never end the training's runner
                log_stderr(f"usage sampling failed: {exc!r}")
            self._stop.wait(self.interval)

    def sample(self, now: float) -> dict:
        """Take one sample and write usage.json; returns what was written."""
        cpu, rss = self.cpu.sample(self.pgid(), now)
        gpus, problem = self.smi.query()
        if problem != self.gpu_problem:
            if problem is not None:
                self.note(f"no GPU: {problem}; sampling CPU and memory only")
            elif self.gpu_problem is not None:
                self.note("GPUs answer again")
            self.gpu_problem = problem
        self.gpus = gpus or []
        if gpus:
            self.gpu_since = self.gpu_since or now
            utils = [gpu["util"] for gpu in gpus]
            level = UNKNOWN_LEVEL if None in utils else max(utils)
            while self.busy and self.busy[-1][1] <= level:
                self.busy.pop()
            self.busy.append((now, level))
        self.samples.append([round(now, 2), cpu, rss,
                             [gpu["util"] for gpu in self.gpus],
                             [gpu["mem_used_mb"] for gpu in self.gpus]])
        del self.samples[:-self.keep]
        usage = self.snapshot(now, cpu, rss)
        write_usage(self.path, usage)
        return usage

    def snapshot(self, now: float, cpu, rss) -> dict:
        return {
            "version": USAGE_VERSION, "at": round(now, 2), "interval": self.interval,
            "gpus": self.gpus, "cpu_percent": cpu, "rss_mb": rss,
            "gpu_note": None if self.gpu_problem is None else f"no GPU: {self.gpu_problem}",
            "gpu_since": self.gpu_since,
            "busy": [[round(t, 2), level] for t, level in self.busy],
            "samples": self.samples,
        }


def write_usage(path: str, usage: dict) -> None:
    """Readers see the old or the new file; not fsynced (a view, rewritten every sample)."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as fh:
            fh.write(json.dumps(usage, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError as exc:
        log_stderr(f"cannot write {path}: {exc}")


def read_usage(session_dir: str, samples: int | None = None):
    """usage.json as a dict (with only the newest `samples` samples), or None."""
    try:
        with open(os.path.join(session_dir, USAGE_FILE), encoding="utf-8") as fh:
            usage = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(usage, dict):
        return None
    if samples is not None and isinstance(usage.get("samples"), list):
        usage["samples"] = usage["samples"][-samples:]
    return usage


def sample_interval(spec: dict):
    """The spec's sampling interval in seconds; None when it turns sampling off (0)."""
    value = spec.get(SPEC_KEY, DEFAULT_INTERVAL)
    try:
        value = float(DEFAULT_INTERVAL if value is None else value)
    except (TypeError, ValueError):
        value = DEFAULT_INTERVAL
    return value if value > 0 else None


def start_sampler(supervisor):
    """The hook in Supervisor.run: sampling started as the spec says (or None when off)."""
    interval = sample_interval(supervisor.spec)
    if interval is None:
        return None
    # "no GPU" goes to the runner's own log (runner.log) and usage.json, never into the
    # training's log: train.log stays what the training printed plus the attempts' lines.
    # Node R of a multi-node run samples into its own folder (nodes/R/): on a shared
    # filesystem the nodes would otherwise overwrite one usage.json.
    folder = os.path.dirname(supervisor.status_path)
    sampler = UsageSampler(folder, interval, pgid=lambda: supervisor.status.get("child_pid"))
    sampler.start()
    return sampler


def merge_usage(kept, fresh: dict, keep: int = KEEP_SAMPLES) -> dict:
    """A remote runner's usage as its probe carried it (the newest samples only) laid over
    the copy kept here: the ring grows by the samples newer than the kept ones."""
    samples = list(kept.get("samples") or []) if isinstance(kept, dict) else []
    newest = samples[-1][0] if samples and isinstance(samples[-1], list) and samples[-1] \
        else None
    for sample in fresh.get("samples") or []:
        if isinstance(sample, list) and sample and (newest is None or sample[0] > newest):
            samples.append(sample)
    merged = dict(fresh)
    merged["samples"] = samples[-keep:]
    return merged
