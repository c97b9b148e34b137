"""Run commands and move bytes over the system `ssh` client, as asyncio subprocesses.

The system client is used (not a Python SSH library) so ~/.ssh/config, agents, jump hosts and
the user's host-key policy all apply. Connections are multiplexed with ControlMaster, so after
the first call a command costs one round trip. Host-key checking is never touched here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from glob import glob
from pathlib import Path

from ..base import ProviderError

CONTROL_PERSIST = 60
DOWNLOAD_CHUNK = 1 << 20
_MISSING = 44  # exit code our remote scripts use for "no such file"
# A unix socket path holds ~104 bytes; ssh adds "/" + 40 hex (%C) + a 17-byte temp suffix.
_MAX_CONTROL_DIR = 45

_NOISE = (
    re.compile(r"^Warning: Permanently added "),
    re.compile(r"^\*\* "),  # OpenSSH 10's post-quantum key exchange warnings
    re.compile(r"^ControlSocket .* already exists, disabling multiplexing"),
    re.compile(r"^Pseudo-terminal will not be allocated"),
    re.compile(r"^Connection to \S+ closed\.$"),
    re.compile(r"^Exit request sent\.$"),
)
# 255 with these (or silence) may just mean the shared master connection died under us.
_MUX_TROUBLE = re.compile(
    r"mux_client|control socket|master|Broken pipe|closed by remote host|Connection reset",
    re.IGNORECASE,
)


class SSHError(ProviderError):
    """An ssh operation failed; the message starts with 'ssh NAME:'."""


class HostNotFound(SSHError):
    def __init__(self, name: str):
        super().__init__(
            f"unknown ssh host '{name}' "
            "(not in [ssh.hosts] of the config nor an alias in ~/.ssh/config)"
        )
        self.name = name


class HostUnreachable(SSHError):
    """ssh could not reach or log in to the host; .line is ssh's own one-line reason."""

    def __init__(self, name: str, line: str):
        super().__init__(f"ssh {name}: {line}")
        self.name = name
        self.line = line


@dataclass
class SSHTarget:
    name: str
    host: str
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    python: str = "python3"
    workdir: str = "~/.trainctl"


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes


# -- resolving a name to a target ----------------------------------------------------------------


def resolve_target(name: str, hosts: dict | None = None) -> SSHTarget:
    """A [ssh.hosts] entry, an ssh config alias, or a hostname/IP/user@host[:port]."""
    if hosts and name in hosts:
        return _from_host_entry(name, hosts[name])
    user, host, port = split_destination(name)
    if not host or host.startswith("-") or not _ssh_accepts(host):
        raise HostNotFound(name)
    if not (user or port or _looks_like_host(host) or _is_config_alias(host)):
        raise HostNotFound(name)
    return SSHTarget(name=name, host=host, user=user, port=port)


def parse_ssh_url(url: str, hosts: dict | None = None) -> tuple[SSHTarget, str]:
    """`ssh://[user@]host[:port]/path` -> (target, remote path). '/~/x' means '~/x'."""
    rest = url.removeprefix("ssh://")
    destination, slash, path = rest.partition("/")
    path = slash + path
    if path.startswith("/~"):
        path = path[1:]
    return resolve_target(destination, hosts), path


def split_destination(text: str) -> tuple[str | None, str, int | None]:
    """'user@host:port' -> (user, host, port); brackets allow IPv6 with a port."""
    text = text.removeprefix("ssh://").rstrip("/")
    user, at, hostport = text.rpartition("@")
    user = user if at else None
    port = None
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port = _port(tail.removeprefix(":")) if tail else None
    elif hostport.count(":") == 1 and _port(hostport.partition(":")[2]):
        host, _, tail = hostport.partition(":")
        port = _port(tail)
    else:
        host = hostport  # a bad port stays in the name, which ssh then refuses
    return user or None, host, port


def _port(text: str) -> int | None:
    if not text.isdigit() or not 0 < int(text) < 65536:
        return None
    return int(text)


def _from_host_entry(name: str, entry) -> SSHTarget:
    """A config.SshHost model or a plain dict. Port 22 left at its default is not forced, so
    a Port in ~/.ssh/config still applies."""
    if isinstance(entry, dict):
        data, explicit = entry, set(entry)
    else:
        data, explicit = entry.model_dump(), set(entry.model_fields_set)
    if not data.get("host"):
        raise SSHError(f"ssh {name}: [ssh.hosts.{name}] has no host")
    port = data.get("port")
    if port == 22 and "port" not in explicit:
        port = None
    return SSHTarget(
        name=name,
        host=data["host"],
        user=data.get("user"),
        port=port,
        identity_file=data.get("identity_file"),
        python=data.get("python") or "python3",
        workdir=data.get("workdir") or "~/.trainctl",
    )


def _looks_like_host(host: str) -> bool:
    """An IP, 'localhost' or a dotted name; a bare word must be an ssh config alias."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return host == "localhost" or bool(re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+", host))


def _ssh_config_path() -> str | None:
    return os.environ.get("TRAINCTL_SSH_CONFIG") or None


def _ssh_settings(host: str) -> subprocess.CompletedProcess | None:
    """`ssh -G HOST`: the config and the name parsed without connecting (None: ssh failed to
    run)."""
    argv = ["ssh", "-G"]
    if cfg := _ssh_config_path():
        argv += ["-F", os.path.expanduser(cfg)]
    try:
        return subprocess.run(argv + ["--", host], capture_output=True, timeout=10,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _ssh_accepts(host: str) -> bool:
    done = _ssh_settings(host)
    return done is not None and done.returncode == 0


def ssh_hostname(host: str) -> str:
    """The address ssh connects to for `host` (an alias's HostName, by `ssh -G`), or `host`."""
    done = _ssh_settings(host)
    for line in (done.stdout.decode(errors="replace").splitlines() if done else []):
        key, _, value = line.partition(" ")
        if key == "hostname" and value.strip():
            return value.strip()
    return host


def _is_config_alias(host: str) -> bool:
    """Whether a Host line of the ssh config (or a file it Includes) names `host`."""
    cfg = _ssh_config_path()
    path = Path(os.path.expanduser(cfg or "~/.ssh/config"))
    return any(_pattern_matches(p, host) for p in _host_patterns(path, set()))


def _host_patterns(path: Path, seen: set[Path]) -> list[str]:
    if path in seen or not path.is_file():
        return []
    seen.add(path)
    patterns: list[str] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        words = re.split(r"[\s=]+", line.strip(), maxsplit=1)
        if len(words) < 2:
            continue
        keyword, value = words[0].lower(), words[1]
        if keyword == "host":
            patterns += value.split()
        elif keyword == "include":
            for item in value.split():
                pattern = os.path.expanduser(item)
                if not os.path.isabs(pattern):
                    pattern = os.path.join(os.path.expanduser("~/.ssh"), pattern)
                for included in sorted(glob(pattern)):
                    patterns += _host_patterns(Path(included), seen)
    return patterns


def _pattern_matches(pattern: str, host: str) -> bool:
    """ssh's own wildcards (* and ?); a lone '*' matches everything and so proves nothing."""
    if pattern.startswith("!") or pattern == "*":
        return False
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, host) is not None


# -- building ssh command lines ------------------------------------------------------------------


def default_control_dir() -> str:
    """~/.cache/trainctl/ssh, or /tmp/trainctl-ssh-UID when home is too deep for a socket."""
    home_dir = os.path.expanduser("~/.cache/trainctl/ssh")
    if len(home_dir) <= _MAX_CONTROL_DIR and _make_private_dir(home_dir):
        return home_dir
    tmp_dir = f"/tmp/trainctl-ssh-{os.getuid()}"
    if not _make_private_dir(tmp_dir) or os.stat(tmp_dir).st_uid != os.getuid():
        raise SSHError(f"ssh: cannot use {tmp_dir} for control sockets (not ours)")
    return tmp_dir


def _make_private_dir(path: str) -> bool:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        return True
    except OSError:
        return False


def _control_options(control_dir: str) -> list[str]:
    # '%' is ssh's token marker and spaces would split the option: escape and quote.
    path = control_dir.replace("%", "%%") + "/%C"
    if " " in path:
        path = f'"{path}"'
    return [
        "-o", "ControlMaster=auto",
        "-o", f"ControlPath={path}",
        "-o", f"ControlPersist={CONTROL_PERSIST}",
    ]


async def _rsync_progress(stream):
    """Bytes sent so far, from rsync --info=progress2 lines ('  1,234,567  45%  ...\\r')."""
    buffer = b""
    while chunk := await stream.read(4096):
        buffer += chunk
        *lines, buffer = re.split(rb"[\r\n]", buffer)
        for line in lines:
            first = line.split(maxsplit=1)[:1]
            if first and first[0].replace(b",", b"").isdigit():
                yield int(first[0].replace(b",", b""))


def _ssh_options(target: SSHTarget, *, control_dir: str, connect_timeout: float | None,
                 batch: bool) -> list[str]:
    argv = ["ssh"]
    if cfg := _ssh_config_path():
        argv += ["-F", os.path.expanduser(cfg)]
    if batch:
        argv += ["-o", "BatchMode=yes"]
    if connect_timeout is not None:
        argv += ["-o", f"ConnectTimeout={max(1, round(connect_timeout))}"]
    argv += _control_options(control_dir)
    argv += ["-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3"]
    if target.port:
        argv += ["-p", str(target.port)]
    if target.user:
        argv += ["-l", target.user]
    if target.identity_file:
        argv += ["-i", os.path.expanduser(target.identity_file)]
    return argv


def ssh_command(target: SSHTarget, *extra: str) -> list[str]:
    """argv for an interactive ssh (the TUI suspends and runs it). `extra` is a remote
    command; it gets a tty (-t) since a person is at the keyboard."""
    argv = _ssh_options(target, control_dir=default_control_dir(), connect_timeout=10,
                        batch=False)
    if extra:
        argv.append("-t")
    return [*argv, "--", target.host, *extra]


def remote_command(command: list[str] | str) -> str:
    """The one string ssh hands to the remote login shell. A list becomes literal words; a
    script is one quoted word for `sh -c`: the login shell (bash, zsh...) only unquotes it."""
    if isinstance(command, str):
        return f"sh -c {shlex.quote(command)}"
    return shlex.join(command)


def remote_path_word(path: str) -> str:
    """A remote path as one shell word; a leading ~/ still means the remote home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        rest = path[2:]
        return '"$HOME"/' + shlex.quote(rest) if rest else '"$HOME"'
    return shlex.quote(path)


def meaningful_line(stderr: bytes) -> str:
    """The last stderr line that says something: no warnings about known_hosts, no blanks."""
    for raw in reversed(stderr.decode("utf-8", "replace").splitlines()):
        line = raw.strip()
        if line and not any(p.search(line) for p in _NOISE):
            return line.removeprefix("ssh: ")
    return ""


# -- the transport -------------------------------------------------------------------------------


class SSHTransport:
    """Commands, reads and uploads on one target, sharing one multiplexed connection."""

    def __init__(self, target: SSHTarget, *, connect_timeout: float = 10,
                 control_dir: str | None = None):
        self.target = target
        self._rsync_on_host: bool | None = None  # looked up once per transport
        self.connect_timeout = connect_timeout
        self.control_dir = control_dir or default_control_dir()
        os.makedirs(self.control_dir, mode=0o700, exist_ok=True)

    @property
    def name(self) -> str:
        return self.target.name

    def argv(self, remote: str | None = None, *control: str) -> list[str]:
        """ssh argv for one remote command string (or a control request like -O check)."""
        argv = _ssh_options(self.target, control_dir=self.control_dir,
                            connect_timeout=self.connect_timeout, batch=True)
        tail = [remote] if remote is not None else []
        return [*argv, *control, "--", self.target.host, *tail]

    async def run(self, command: list[str] | str, *, input: bytes | None = None,
                  timeout: float = 60, check: bool = True, retry: bool = True) -> Result:
        """Run on the host. rc 255 is ssh's own failure -> HostUnreachable; once, when the
        shared master died under us, the command is retried on a fresh connection (pass
        retry=False for a command that must not run twice)."""
        argv = self.argv(remote_command(command))
        for attempt in range(2):
            result = await self._exec(argv, input, timeout)
            if result.returncode != 255:
                break
            verdict, line = await self._diagnose(result.stderr)
            if verdict == "retry" and retry and attempt == 0:
                continue
            if verdict != "remote-exit":
                raise HostUnreachable(self.name, line or "connection lost")
            break
        if check and result.returncode != 0:
            raise self._failure(result)
        return result

    def _failure(self, result: Result) -> SSHError:
        message = f"ssh {self.name}: command failed (exit {result.returncode})"
        line = meaningful_line(result.stderr)
        return SSHError(f"{message}: {line}" if line else message)

    async def _diagnose(self, stderr: bytes) -> tuple[str, str]:
        """After rc 255: 'unreachable' (ssh said why), 'retry' (the master died, maybe
        mid-call) or 'remote-exit' (the master is fine and silent: the command exited 255)."""
        line = meaningful_line(stderr)
        if line and not _MUX_TROUBLE.search(line):
            return "unreachable", line
        if await self.master_alive():
            return ("unreachable" if line else "remote-exit"), line
        return "retry", line

    async def master_alive(self) -> bool:
        result = await self._exec(self.argv(None, "-O", "check"), None, 5, quiet=True)
        return result.returncode == 0

    async def _exec(self, argv: list[str], input: bytes | None, timeout: float,
                    quiet: bool = False) -> Result:
        proc = await spawn(argv, stdin=subprocess.PIPE if input is not None else None)
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(input), timeout)
        except asyncio.TimeoutError:
            if quiet:
                return Result(255, b"", b"timed out")
            raise HostUnreachable(self.name, f"timed out after {timeout:g}s") from None
        finally:
            await reap(proc)
        return Result(proc.returncode, stdout, stderr)

    # -- files ---------------------------------------------------------------------------------

    async def read_range(self, path: str, offset: int, limit: int, *,
                         timeout: float = 60) -> bytes:
        """Bytes [offset, offset+limit) of a remote file; b'' at or past its end."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must be >= 0")
        script = _readable(path) + f'tail -c +{offset + 1} -- "$p" | head -c {limit}'
        result = await self.run(script, timeout=timeout, check=False)
        self._raise_for_file(result, path)
        return result.stdout

    async def size(self, path: str, *, timeout: float = 60) -> int | None:
        """Size in bytes, or None when the file does not exist."""
        script = _readable(path) + 'wc -c < "$p"'
        result = await self.run(script, timeout=timeout, check=False)
        if result.returncode == _MISSING:
            return None
        self._raise_for_file(result, path)
        try:
            return int(result.stdout.split()[0])
        except (IndexError, ValueError):
            raise SSHError(f"ssh {self.name}: cannot read the size of '{path}'") from None

    def _raise_for_file(self, result: Result, path: str) -> None:
        if result.returncode == _MISSING:
            raise SSHError(f"ssh {self.name}: no such remote file '{path}'")
        if result.returncode != 0:
            raise self._failure(result)

    async def put(self, data: bytes, remote_path: str, *, mode: int = 0o600,
                  timeout: float = 60) -> None:
        """Write a remote file atomically. The bytes travel on stdin, never in an argv, so
        secrets do not show in any process list; the file is private until chmod."""
        script = (
            f"set -e; umask 077; p={remote_path_word(remote_path)}; "
            'mkdir -p -- "$(dirname -- "$p")"; t="$p.tmp.$$"; '
            "trap 'rm -f -- \"$t\"' EXIT; "
            f'cat > "$t"; chmod {mode:o} "$t"; mv -f -- "$t" "$p"'
        )
        await self.run(script, input=data, timeout=timeout)

    async def download(self, remote_path: str, local_path: str, *,
                       progress: Callable[[int, int], object] | None = None,
                       resume: bool = True, stall_timeout: float = 60) -> int:
        """Copy a remote file to local_path through `<local_path>.part`, resuming from the
        part's size. progress(done, total) is called at the start and after each chunk."""
        total = await self.size(remote_path)
        if total is None:
            raise SSHError(f"ssh {self.name}: no such remote file '{remote_path}'")
        part = f"{local_path}.part"
        done = _start_part(part, total, resume)
        if progress:
            progress(done, total)
        if done < total:
            if not await self._rsync_into(remote_path, part, done, total, progress):
                await self._stream_into(remote_path, part, done, total, progress,
                                        stall_timeout)
        got = os.path.getsize(part)
        if got != total:
            raise SSHError(f"ssh {self.name}: download of '{remote_path}' stopped at {got} of "
                           f"{total} bytes; run it again to resume")
        os.replace(part, local_path)
        return total

    async def _rsync_into(self, remote_path: str, part: str, done: int, total: int,
                          progress) -> bool:
        """rsync, when this machine and the host both have it: it appends to the part file
        and verifies the whole file at the end. False means "use plain ssh instead"."""
        if shutil.which("rsync") is None or not await self._remote_has_rsync():
            return False
        ssh = _ssh_options(self.target, control_dir=self.control_dir,
                           connect_timeout=self.connect_timeout, batch=True)
        source = remote_path[2:] if remote_path.startswith("~/") else remote_path
        argv = ["rsync", "--inplace", "--append-verify", "--protect-args", "--info=progress2",
                "--no-motd", "-e", shlex.join(ssh), f"{self.target.host}:{source}", part]
        proc = await spawn(argv, stdin=None)
        stderr_task = asyncio.ensure_future(proc.stderr.read())
        try:
            async for sent in _rsync_progress(proc.stdout):
                if progress:
                    progress(min(total, done + sent), total)
            await proc.wait()
            stderr = await stderr_task
        finally:
            stderr_task.cancel()
            await reap(proc)
        if proc.returncode == 255 or b"connection unexpectedly closed" in stderr:
            raise HostUnreachable(self.name, meaningful_line(stderr) or "connection lost")
        return proc.returncode == 0

    async def _remote_has_rsync(self) -> bool:
        if self._rsync_on_host is None:
            result = await self.run("command -v rsync >/dev/null 2>&1", check=False)
            self._rsync_on_host = result.returncode == 0
        return self._rsync_on_host

    async def _stream_into(self, remote_path: str, part: str, done: int, total: int,
                           progress, stall_timeout: float) -> None:
        """One ssh streaming the remaining bytes (bounded by the size seen at the start, in
        case the file grows) and appending them to the part file as they arrive."""
        script = _readable(remote_path) + f'tail -c +{done + 1} -- "$p" | head -c {total - done}'
        proc = await spawn(self.argv(remote_command(script)), stdin=None)
        stderr_task = asyncio.ensure_future(proc.stderr.read())
        try:
            with open(part, "ab") as out:
                while chunk := await self._read_chunk(proc, stall_timeout):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                out.flush()
                os.fsync(out.fileno())
            await asyncio.wait_for(proc.wait(), stall_timeout)
            stderr = await stderr_task
        finally:
            stderr_task.cancel()
            await reap(proc)
        result = Result(proc.returncode, b"", stderr)
        if result.returncode == 255:
            raise HostUnreachable(self.name, meaningful_line(stderr) or "connection lost")
        self._raise_for_file(result, remote_path)

    async def _read_chunk(self, proc, stall_timeout: float) -> bytes:
        try:
            return await asyncio.wait_for(proc.stdout.read(DOWNLOAD_CHUNK), stall_timeout)
        except asyncio.TimeoutError:
            raise HostUnreachable(
                self.name, f"timed out after {stall_timeout:g}s (download stalled)"
            ) from None

    # -- connection ------------------------------------------------------------------------------

    async def check(self) -> float:
        """Round trip of `true` in seconds (connecting first if needed)."""
        started = time.monotonic()
        await self.run(["true"], timeout=self.connect_timeout + 10)
        return time.monotonic() - started

    async def close(self) -> None:
        """Stop the shared master connection; the next call opens a new one."""
        try:
            await self._exec(self.argv(None, "-O", "exit"), None, 5, quiet=True)
        except (OSError, SSHError):
            pass

    async def __aenter__(self) -> SSHTransport:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def _readable(path: str) -> str:
    """Script prefix: $p is the file; exit _MISSING if absent, 1 if it can't be read."""
    return (
        f"p={remote_path_word(path)}; "
        f'[ -e "$p" ] || exit {_MISSING}; '
        '{ [ -r "$p" ] && [ ! -d "$p" ]; } || { echo "cannot read $p" >&2; exit 1; }; '
    )


def _start_part(part: str, total: int, resume: bool) -> int:
    """Bytes already in the part file to keep; a part larger than the file is stale."""
    try:
        have = os.path.getsize(part)
    except OSError:
        have = -1
    if resume and 0 <= have <= total:
        return have
    os.makedirs(os.path.dirname(os.path.abspath(part)), exist_ok=True)
    open(part, "wb").close()
    return 0


async def spawn(argv: list[str], *, stdin) -> asyncio.subprocess.Process:
    # Own session: a Ctrl-C meant for the TUI doesn't hit ssh, and killpg takes a
    # ProxyCommand with it. The ControlPersist master daemonizes out of this group.
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise SSHError("ssh: the ssh client is not installed (install openssh-client)") from None


async def reap(proc: asyncio.subprocess.Process) -> None:
    """Kill ssh if it is still running (timeout, cancellation, a raising callback)."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    # A mux client hands its stdio to the master, which keeps writing after the client is
    # killed: close our pipe ends, or wait() would hang until the remote command ends.
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()
    await proc.wait()


def shell_failure(argv: list[str], code: int, name: str) -> str | None:
    """Why an interactive shell ended, when it was the ssh client's own failure (255)."""
    if code == 255 and argv[0] == "ssh":
        return f"ssh {name}: could not connect (exit 255)"
    return None
