"""A real OpenSSH server on 127.0.0.1 for tests.

Use it with `pytest_plugins = ["sshd"]` or `from sshd import sshd_server`. The session-scoped
`sshd_server` fixture yields an `SshServer`: host and user keys generated in a temp dir, an
ssh client config (`ssh -F server.config_path trainctl-test`) whose known_hosts already holds
the host key, so host-key checking stays on (StrictHostKeyChecking yes).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ALIAS = "trainctl-test"


def find_sshd() -> str | None:
    """Absolute path of sshd (it refuses to re-exec from a relative one)."""
    found = shutil.which("sshd")
    for path in (found, "/usr/sbin/sshd", "/usr/local/sbin/sshd"):
        if path and os.access(path, os.X_OK):
            return os.path.abspath(path)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Direct children of pid: sshd's per-connection processes call setsid(), so killpg
    on the listener's group would miss them."""
    out = subprocess.run(["ps", "-e", "-o", "pid=", "-o", "ppid="],
                         capture_output=True, text=True).stdout
    pairs = (line.split() for line in out.splitlines())
    return [int(child) for child, parent in pairs if int(parent) == pid]


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


class SshServer:
    """One sshd on 127.0.0.1:port; restart() keeps the port and keys but drops connections."""

    alias = ALIAS

    def __init__(self, root: Path, sshd: str):
        self.dir = root
        self.sshd = sshd
        self.user = getpass.getuser()
        self.port = free_port()
        self.host_key = root / "host_key"
        self.user_key = root / "user_key"
        self.authorized_keys = root / "authorized_keys"
        self.known_hosts = root / "known_hosts"
        self.sshd_config = root / "sshd_config"
        self.config_path = root / "ssh_config"
        self.log_path = root / "sshd.log"
        self.process: subprocess.Popen | None = None
        self._make_keys()
        self._write_files()

    # -- setup -------------------------------------------------------------------------------
    def _make_keys(self) -> None:
        for key in (self.host_key, self.user_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key.name,
                            "-f", str(key)], check=True, capture_output=True)
        self.authorized_keys.write_text(Path(f"{self.user_key}.pub").read_text())

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {Path(f'{self.host_key}.pub').read_text().strip()}\n"

    def _write_files(self) -> None:
        self.sshd_config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            "StrictModes no\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "PermitRootLogin prohibit-password\n"
            "Subsystem sftp internal-sftp\n"
            "LogLevel INFO\n"
            # A login shell whose rc file runs `pyenv rehash` (this machine's root) waits up to
            # 60 s on a lock a killed ssh session left behind; don't let a test wait on it.
            "SetEnv PYENV_REHASH_TIMEOUT=1\n"
        )
        self.known_hosts.write_text(self.known_hosts_line())
        self.write_client_config(self.config_path)

    def write_client_config(self, path: Path | str, *, identity_file: Path | str | None = None,
                            known_hosts: Path | str | None = None) -> Path:
        """An ssh -F file: `Host trainctl-test` plus defaults for any host (this known_hosts,
        strict checking, no agent keys). Tests pass other keys/known_hosts to break things."""
        path = Path(path)
        path.write_text(
            f"Host {ALIAS}\n"
            "  HostName 127.0.0.1\n"
            f"  Port {self.port}\n"
            f"  User {self.user}\n"
            f"  IdentityFile {identity_file or self.user_key}\n"
            "Host *\n"
            f"  UserKnownHostsFile {known_hosts or self.known_hosts}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n"
            "  UpdateHostKeys no\n"
            "  CheckHostIP no\n"
            "  IdentitiesOnly yes\n"
        )
        return path

    def host_entry(self) -> dict:
        """A `[ssh.hosts.NAME]` table for this server (use with config_path for known_hosts)."""
        return {"host": "127.0.0.1", "port": self.port, "user": self.user,
                "identity_file": str(self.user_key)}

    # -- lifecycle ---------------------------------------------------------------------------
    def argv(self) -> list[str]:
        """How sshd is started (a subclass may wrap it, e.g. in a mount namespace)."""
        return [self.sshd, "-D", "-e", "-f", str(self.sshd_config)]

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        _privsep_dir()
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 15) -> None:
        """Until the port answers with an SSH banner (so it is our sshd, listening)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited ({self.process.returncode}): {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on port {self.port}: {self.log()}")

    def stop(self) -> None:
        """Stop the listener and every connection it serves (sessions and their commands)."""
        if self.process is None:
            return
        doomed = _descendants(self.process.pid)
        for pid in [self.process.pid, *doomed]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def _privsep_dir() -> None:
    """sshd refuses to start without its privilege separation directory."""
    try:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    except OSError:
        pass  # not root: sshd will say what it misses


def missing(what: str) -> None:
    """Skip a test whose real component is not installed; in CI (which installs them all,
    .ci/run) fail instead, so a green run never hides tests that did not run."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must install it: .ci/run)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory):
    sshd = find_sshd()
    if sshd is None:
        missing("sshd is not installed (apt-get install openssh-server)")
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed (apt-get install openssh-client)")
    server = SshServer(tmp_path_factory.mktemp("sshd"), sshd)
    server.start()
    try:
        yield server
    finally:
        server.stop()
