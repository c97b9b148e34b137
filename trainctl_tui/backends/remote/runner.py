"""What every backend whose runner lives on another machine shares: the runner installed
there once per version, started detached and probed through a transport (ssh, SSM, a pod's
ssh), the remote train.log mirrored into the session folder by byte offset (a dropped
connection resumes where it stopped: no line lost or repeated), and a backoff for hosts that
keep failing."""

from __future__ import annotations

import json
import posixpath
import time
from contextlib import contextmanager
from pathlib import Path

from ...core import aio
from ...core.atomic import atomic_write
from ...core.models import Session
from ...core.paths import state_dir
from ...runner.bundle import RUNNER_NAME, bundle_version, runner_bundle
from ..base import ProviderError

LOG_CHUNK = 8 << 20  # bytes mirrored per refresh: a long backlog arrives over a few refreshes
PROBE_TTL = 1.0  # seconds a probe answers read_status/runner_alive/training_alive together
MIRROR_WAIT = 10.0  # seconds a log copy waits for another process copying the same log


def runner_version() -> str:
    """Names the remote runner folder: the runner and the inspector it judges checkpoints
    with are shipped together (one zipapp), so a change to any of them is a new folder."""
    return bundle_version()


def remote_path(workdir: str, *parts: str) -> str:
    """Paths under the host's workdir; `~/x` becomes `x`, relative to the login directory,
    so no remote shell has to expand `~` (paths are always passed quoted)."""
    base = workdir[2:] if workdir.startswith("~/") else ("." if workdir == "~" else workdir)
    return "/".join([base.rstrip("/"), *parts])


def remote_checkpoint_dir(session: Session) -> str | None:
    """Where the runner looks for a session's checkpoints: a relative checkpoint dir is under
    the session's cwd (itself relative to the login dir), as the runner resolves it."""
    folder = session.checkpoint_dir
    if not folder or posixpath.isabs(folder) or folder.startswith("s3://"):
        return folder
    return posixpath.normpath(posixpath.join(session.cwd or ".", folder))


class RemoteRunnerProvider:
    """A session whose runner lives on another machine, reached through a transport with
    run / read_range / size / put / download (SSHTransport, SSMTransport ...). Subclasses give
    `transport`, `python` and `workdir` (on that machine) and `label` for messages; `host`
    names the machine in the session and in remote.json."""

    remote = True
    host: str
    probes_nodes_apart = False  # True: the other nodes are probed on hosts of their own

    def __init__(self) -> None:
        self._probes: dict[str, tuple[float, dict]] = {}

    @property
    def transport(self):
        raise NotImplementedError

    @property
    def python(self) -> str:
        raise NotImplementedError

    @property
    def workdir(self) -> str:
        raise NotImplementedError

    @property
    def label(self) -> str:
        """How messages name the machine: 'ssh gpu-box', 'aws i-0123...'."""
        return self.host

    # -- launching ----------------------------------------------------------------------

    def remote_dir(self, session: Session) -> str:
        info = remote_info(session)
        if info:
            return info["remote_dir"]
        return remote_path(self.workdir, "sessions", session.id)

    async def launch(self, session: Session, node_args: tuple[str, ...] = (),
                     record: bool = True) -> None:
        """Start the session's runner there. `node_args`: its node of a multi-node run
        (runner/nodes.py); record=False leaves remote.json to the caller (one of several)."""
        local = Path(session.session_dir)
        remote_dir = self.remote_dir(session)
        runner = await self._install_runner()
        await self.transport.run(["mkdir", "-p", remote_dir])
        await self.transport.put((local / "spec.json").read_bytes(), f"{remote_dir}/spec.json",
                                 mode=0o644)
        secrets = local / "secret_env.json"
        if secrets.exists():
            await self._ship_secrets(session, remote_dir, secrets.read_bytes())
        self.started = {"host": self.host, "remote_dir": remote_dir, "runner": runner}
        if record:
            (local / "remote.json").write_text(json.dumps(self.started))
        result = await self.transport.run(
            [self.python, runner, "--detach", remote_dir, *node_args], check=False, timeout=60,
            retry=False)  # never start a second runner because a connection hiccuped
        if result.returncode != 0:
            message = (result.stderr or result.stdout).decode(errors="replace").strip()
            raise ProviderError(f"runner on {self.host} failed to start: "
                                f"{message.splitlines()[-1] if message else result.returncode}")

    async def _ship_secrets(self, session: Session, remote_dir: str, data: bytes) -> None:
        """On stdin, into a 0600 file: never on a command line."""
        await self.transport.put(data, f"{remote_dir}/secret_env.json")

    async def _install_runner(self) -> str:
        """Copy the runner zipapp (the runner with the checkpoint inspector and its HDF5
        reader) to <workdir>/runner/<version>/ unless that version is there already."""
        local = runner_bundle(state_dir() / "runner")
        remote = remote_path(self.workdir, "runner", runner_version(), RUNNER_NAME)
        if await self.transport.size(remote) != local.stat().st_size:
            await self.transport.put(local.read_bytes(), remote, mode=0o644)
        return remote

    # -- checkpoints --------------------------------------------------------------------

    def checkpoint_path(self, session: Session) -> str | None:
        """Where the runner on the machine looks for the session's checkpoints."""
        return remote_checkpoint_dir(session)

    async def list_checkpoints(self, session: Session, directory: str | None = None) -> list:
        """The checkpoints on the host, inspected there; rows like the local catalog's."""
        from .checkpoints import listing_command, parse_listing, rows_from_listing

        directory = directory or remote_checkpoint_dir(session)
        runner = await self._install_runner()
        result = await self.transport.run(
            listing_command(self.python, runner, directory), timeout=120)
        listing = parse_listing(result.stdout)
        if "error" in listing:
            raise ProviderError(f"{self.label}: {listing['error']}")
        return rows_from_listing(listing, directory)

    async def inspect_checkpoint(self, path: str, *, deep: bool = False):
        """The inspector's report, computed on the host (nothing is downloaded)."""
        from .checkpoints import info_from_json, inspect_command

        runner = await self._install_runner()
        command = inspect_command(self.python, runner, path, deep)
        result = await self.transport.run(command, check=False, timeout=600)
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip().splitlines()
            raise ProviderError(f"{self.label}: {message[-1] if message else 'inspect failed'}")
        return info_from_json(json.loads(result.stdout))

    async def download(self, remote: str, local: Path, *, kind: str, progress=None) -> int:
        """Copy a checkpoint file or directory home; resumable (partial files continue)."""
        if kind == "file":
            local.parent.mkdir(parents=True, exist_ok=True)
            return await self.transport.download(remote, str(local), progress=progress)
        result = await self.transport.run(["find", remote, "-type", "f", "-printf", "%P\\0%s\\0"])
        fields = result.stdout.split(b"\0")
        files = [(fields[i].decode(), int(fields[i + 1])) for i in range(0, len(fields) - 1, 2)]
        total, done = sum(size for _, size in files), 0
        for relative, size in files:
            def step(current, _total, base=done):
                if progress:
                    progress(base + current, total)
            target = local / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if not (target.exists() and target.stat().st_size == size):
                await self.transport.download(f"{remote}/{relative}", str(target),
                                              progress=step)
            done += size
            if progress:
                progress(done, total)
        return total

    # -- watching -----------------------------------------------------------------------

    async def probe(self, session: Session) -> dict:
        cached = self._probes.get(session.id)
        if cached and time.monotonic() - cached[0] < PROBE_TTL:
            return cached[1]
        with backoff(self.backoff_key):
            return await self._probe(session)

    async def _probe(self, session: Session) -> dict:
        runner = (remote_info(session) or {}).get("runner") or \
            remote_path(self.workdir, "runner", runner_version(), RUNNER_NAME)
        result = await self.transport.run(
            [self.python, runner, "--probe", self.remote_dir(session)], timeout=30)
        try:
            answer = json.loads(result.stdout)
        except ValueError:
            raise ProviderError(
                f"{self.label}: unreadable answer from the runner probe") from None
        self._probes[session.id] = (time.monotonic(), answer)
        keep_usage(session, answer.get("usage"))
        keep_step_times(session, answer.get("steps"))
        await self.sync_log(session, answer.get("log_size", 0))
        if not self.probes_nodes_apart:
            from .node_view import keep_nodes

            keep_nodes(session, answer)  # each node's row, for the session screen
        if answer.get("nodes"):  # a multi-node run whose nodes share the session folder
            from .nodes import hold_for_nodes, node_logs

            for remote, local, offset, size in node_logs(
                    self.remote_dir(session), session.session_dir, answer["nodes"]):
                await RemoteLogMirror(self.transport, remote, local, offset).sync(size)
            group = self.healing_nodes(session, answer)
            if group is None:
                hold_for_nodes(answer)
            else:
                from .healing import heal_shared

                await heal_shared(group, session, answer)
        return answer

    def healing_nodes(self, session: Session, answer: dict):
        """The HealingNodes (healing.py) of a multi-node run whose nodes share the session
        folder, for a backend that heals them; None: the run is only held for its nodes."""
        return None

    async def sync_log(self, session: Session, remote_size: int) -> int:
        """Append what the remote train.log has beyond the local copy; returns bytes added."""
        folder = Path(session.session_dir)
        mirror = RemoteLogMirror(self.transport, f"{self.remote_dir(session)}/train.log",
                                 folder / "train.log", folder / "remote.offset")
        return await mirror.sync(remote_size)

    async def newest_checkpoint(self, session: Session):
        """The newest checkpoint on the host, as the runner's probe saw it (stat only)."""
        from ...checkpoints.scan import CheckpointEntry

        try:
            found = (await self.probe(session)).get("newest_checkpoint")
        except ProviderError:
            return None
        if not found:
            return None
        return CheckpointEntry(path=found["path"], name=found["path"].rsplit("/", 1)[-1],
                               kind="file", step=found["step"], mtime=found["mtime"],
                               size=found["size"], writing=False)

    async def read_status(self, session: Session) -> dict | None:
        return (await self.probe(session)).get("status")

    async def runner_alive(self, session: Session, status: dict) -> bool:
        return bool((await self.probe(session)).get("runner_alive"))

    async def training_alive(self, session: Session, status: dict) -> bool:
        return bool((await self.probe(session)).get("child_alive"))

    # -- stopping -----------------------------------------------------------------------

    async def settle_before_stop(self, session: Session, note=None) -> bool:
        """A run on several nodes (remote.json's `nodes`: an SSH group's, EC2 instances'): a
        healing decision in progress ends first (a replacement it starts is then among the
        nodes the stop reaches), and none follows (healing.py). Whether it had nodes to
        settle (the session may then have moved)."""
        if len(remote_nodes(session)) < 2:
            return False
        from .healing import settle_for_stop

        await settle_for_stop(session.session_dir, note=note)
        return True

    async def stop(self, session: Session, status: dict, *, force: bool) -> None:
        await self._stop(session, force)

    async def kill_orphan(self, session: Session, status: dict, *, force: bool) -> bool:
        return (await self._stop(session, force)) == "orphaned training stopped"

    async def _stop(self, session: Session, force: bool) -> str:
        runner = (remote_info(session) or {}).get("runner") or await self._install_runner()
        command = [self.python, runner, "--stop", self.remote_dir(session)]
        result = await self.transport.run(command + (["--force"] if force else []),
                                          timeout=session.grace_seconds + 30)
        self._probes.pop(session.id, None)
        return result.stdout.decode(errors="replace").strip()


    @property
    def backoff_key(self) -> str:
        return self.host


class HostOverSSH(RemoteRunnerProvider):
    """A runner on a machine reached with the system ssh client (~/.ssh/config, agents and
    jump hosts work). Subclasses give `target`, an SSHTarget, and set `host`."""

    def __init__(self) -> None:
        super().__init__()
        self._target = None
        self._transport = None

    @property
    def transport(self):
        if self._transport is None:
            from .transport import SSHTransport

            self._transport = SSHTransport(self.target)
        return self._transport

    @property
    def python(self) -> str:
        return self.target.python

    @property
    def workdir(self) -> str:
        return self.target.workdir


def keep_usage(session: Session, usage) -> None:
    """The GPU, CPU and memory samples a probe carried, kept in the session folder's
    usage.json as the runner keeps its own (the ring grows by the newer samples)."""
    from ...runner.gpu_sampler import USAGE_FILE, merge_usage, read_usage

    if not isinstance(usage, dict):
        return
    merged = merge_usage(read_usage(session.session_dir), usage)
    try:
        atomic_write(Path(session.session_dir) / USAGE_FILE,
                     json.dumps(merged, separators=(",", ":")), durable=False)
    except OSError:
        pass  # a view: a full disk must not break a refresh


def keep_step_times(session: Session, records) -> None:
    """The newest records of the runner's steps.jsonl a probe carried, added to the session
    folder's copy (for the compare's elapsed axis). A probe carries the newest few: after a
    long time without one, the copy interpolates across what it missed."""
    from ...runner.step_times import merge_records

    if not isinstance(records, list) or not records:
        return
    try:
        merge_records(session.session_dir, records)
    except OSError:
        pass  # a view: a full disk must not break a refresh


def remote_info(session: Session) -> dict | None:
    try:
        return json.loads((Path(session.session_dir) / "remote.json").read_text())
    except (OSError, ValueError):
        return None


def remote_nodes(session: Session) -> list[dict]:
    """A run on several nodes: remote.json's record of each, head first; [] otherwise."""
    return (remote_info(session) or {}).get("nodes") or []


# host -> (consecutive failures, monotonic time before which we don't try, last error)
_FAILURES: dict[str, tuple[int, float, str]] = {}
BACKOFF_MAX = 60.0


@contextmanager
def backoff(host: str):
    """A host that keeps failing is retried after 2, 4, 8 ... 60 s instead of on every refresh,
    so a long-lived TUI neither hammers it nor waits on its connect timeout each second."""
    failures, until, error = _FAILURES.get(host, (0, 0.0, ""))
    if time.monotonic() < until:
        raise ProviderError(f"{error} (retrying in {until - time.monotonic():.0f}s)")
    try:
        yield
    except ProviderError as exc:
        message = str(exc).split(" (retrying in")[0]
        delay = min(2.0 ** (failures + 1), BACKOFF_MAX)
        _FAILURES[host] = (failures + 1, time.monotonic() + delay, message)
        raise
    _FAILURES.pop(host, None)


class RemoteLogMirror:
    """A local copy of a remote log, extended by byte offset: a dropped connection resumes
    where it stopped, so no line is lost or repeated. The offset lives in its own file since
    the local copy may also hold trainctl's notes."""

    def __init__(self, transport, remote: str, local: Path, offset_file: Path):
        self.transport, self.remote = transport, remote
        self.local, self.offset_file = Path(local), Path(offset_file)

    @property
    def offset(self) -> int:
        try:
            return int(self.offset_file.read_text())
        except (OSError, ValueError):
            return self.local.stat().st_size if self.local.exists() else 0

    def save(self, offset: int) -> None:
        atomic_write(self.offset_file, str(offset), durable=False)

    async def catch_up(self) -> None:
        """Copy until the local copy reaches the remote log's end (sync copies a chunk a call;
        a copy made earlier only grows by what was appended since)."""
        while await self.sync() >= LOG_CHUNK:
            pass

    async def sync(self, remote_size: int | None = None) -> int:
        """Copy up to LOG_CHUNK new bytes; returns how many arrived. One copier at a time
        (the TUI, a CLI, a node watcher): two reading the same offset would both append. A
        copier waits for the one at work (polling: never blocking the event loop, which may
        run the other), then copies what is left."""
        import fcntl
        import os

        lock = os.open(f"{self.offset_file}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + MIRROR_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(lock)
                    return 0  # still busy: the next sync copies it
                await aio.sleep(0.05)
        try:
            return await self._sync(remote_size)
        finally:
            os.close(lock)

    async def _sync(self, remote_size: int | None) -> int:
        offset = self.offset
        if remote_size is not None and remote_size < offset:
            # A size probed before another copier (a node watcher) went further: ask again
            # before calling the log truncated and copying it all a second time.
            remote_size = None
        if remote_size is None:
            remote_size = await self.transport.size(self.remote)
            if remote_size is None:
                label = getattr(self.transport, "label", None) or f"ssh {self.transport.name}"
                raise ProviderError(f"{label}: no such file "
                                    f"{self.remote}")
        if remote_size < offset:  # truncated there: say so here, then follow it again
            with open(self.local, "ab") as out:
                out.write(b"\n[trainctl] remote log was truncated; following it again\n")
            offset = 0
            self.save(0)
        if remote_size <= offset:
            return 0
        data = await self.transport.read_range(self.remote, offset,
                                               min(LOG_CHUNK, remote_size - offset))
        with open(self.local, "ab") as out:
            out.write(data)
        self.save(offset + len(data))
        return len(data)


