"""SSHTransport against a real OpenSSH server on 127.0.0.1 (tests/sshd.py); no mocks."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile

import pytest
from sshd import free_port, missing, sshd_server  # noqa: F401  (the fixture)

from trainctl_tui.backends.remote.transport import (
    HostNotFound,
    HostUnreachable,
    SSHError,
    SSHTarget,
    SSHTransport,
    parse_ssh_url,
    resolve_target,
    ssh_command,
)
from trainctl_tui.backends.ssh.settings import SshHost

NASTY = "dir with spaces/$(touch {pwned}) `touch {pwned}` 'q' \"dq\"; echo hi\nline2 \\ * ~"


@pytest.fixture
def control_dir():
    # Short on purpose: a unix socket path is limited to ~104 bytes, pytest's tmp_path is long.
    path = tempfile.mkdtemp(prefix="tc", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ssh_env(sshd_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("TRAINCTL_SSH_CONFIG", str(sshd_server.config_path))
    return sshd_server


@pytest.fixture
def transport(ssh_env, control_dir):
    t = SSHTransport(resolve_target(ssh_env.alias), control_dir=control_dir)
    yield t
    asyncio.run(t.close())


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_list_command_is_one_literal_argument(transport, tmp_path):
    pwned = tmp_path / "pwned"
    arg = NASTY.format(pwned=pwned)
    result = run(transport.run(["printf", "%s", arg]))
    assert result.stdout.decode() == arg
    assert result.returncode == 0
    # A remote path made of the same characters is created, sized and read back exactly.
    path = str(tmp_path / arg)
    run(transport.put(b"payload", path))
    assert run(transport.size(path)) == 7
    assert run(transport.read_range(path, 2, 3)) == b"ylo"
    assert not pwned.exists()


def test_script_stdin_and_failures(transport):
    out = run(transport.run('x="a b"; echo "$x" $((1 + 2)); cat | tr a-z A-Z', input=b"hi"))
    assert out.stdout == b"a b 3\nHI"
    with pytest.raises(SSHError, match=r"^ssh trainctl-test: command failed \(exit 3\): boom$"):
        run(transport.run("echo noise >&2; echo boom >&2; exit 3"))
    unchecked = run(transport.run(["sh", "-c", "exit 7"], check=False))
    assert (unchecked.returncode, unchecked.stdout) == (7, b"")
    # A command's own exit 255 over a healthy master is not a connection problem.
    assert run(transport.run("exit 255", check=False)).returncode == 255


def test_put_secret_is_private_exact_and_off_the_command_line(transport, tmp_path, monkeypatch):
    secret = b"sk-live-\x00\xff\n" + os.urandom(32).hex().encode()
    argvs: list[tuple] = []
    spawn = asyncio.create_subprocess_exec

    async def recording_spawn(*argv, **kw):  # records, then runs the real ssh
        argvs.append(argv)
        return await spawn(*argv, **kw)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recording_spawn)
    target = tmp_path / "new dir" / "secret.env"
    run(transport.put(secret, str(target)))
    assert target.read_bytes() == secret
    assert target.stat().st_mode & 0o777 == 0o600
    assert os.listdir(target.parent) == ["secret.env"]  # no temp file left behind
    assert argvs and all(secret.decode(errors="replace") not in " ".join(a) for a in argvs)
    run(transport.put(b"v2", str(target), mode=0o640))
    assert (target.read_bytes(), target.stat().st_mode & 0o777) == (b"v2", 0o640)


def test_put_and_size_expand_the_remote_home(transport):
    name = f".trainctl-test-{os.getpid()}"
    try:
        run(transport.put(b"home", f"~/{name}/f"))
        assert run(transport.size(f"~/{name}/f")) == 4
    finally:
        shutil.rmtree(os.path.expanduser(f"~/{name}"), ignore_errors=True)


def test_read_range_and_size(transport, tmp_path):
    data = bytes(range(256)) * 40  # every byte value, 10240 bytes
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    for offset, limit in [(0, 10), (255, 3), (10000, 1000), (0, 20000)]:
        assert run(transport.read_range(str(path), offset, limit)) == data[offset:offset + limit]
    assert run(transport.read_range(str(path), len(data), 10)) == b""
    assert run(transport.read_range(str(path), len(data) + 5, 10)) == b""
    assert run(transport.size(str(path))) == len(data)
    assert run(transport.size(str(tmp_path / "missing"))) is None
    with pytest.raises(SSHError, match="no such remote file '.*missing'"):
        run(transport.read_range(str(tmp_path / "missing"), 0, 1))


class GaveUp(Exception):
    """The user closed the progress dialog."""


def test_download_resumes_after_an_interruption(transport, tmp_path, monkeypatch):
    # The plain-ssh stream (rsync reports progress too coarsely to stop it halfway).
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)
    data = os.urandom(3 * 1024 * 1024 + 123)
    remote = tmp_path / "remote ckpt.bin"
    remote.write_bytes(data)
    local = tmp_path / "local" / "ckpt.bin"
    part = f"{local}.part"
    first: list[tuple[int, int]] = []

    def stop_halfway(done, total):
        first.append((done, total))
        if done >= total // 2:
            raise GaveUp

    with pytest.raises(GaveUp):
        run(transport.download(str(remote), str(local), progress=stop_halfway))
    partial = os.path.getsize(part)
    assert len(data) // 2 <= partial < len(data)
    assert first[0] == (0, len(data)) and not local.exists()

    second: list[tuple[int, int]] = []
    got = run(transport.download(str(remote), str(local),
                                 progress=lambda d, t: second.append((d, t))))
    assert got == len(data) and local.read_bytes() == data
    assert second[0] == (partial, len(data)) and second[-1] == (len(data), len(data))
    assert not os.path.exists(part)
    # resume=False starts over even with a part lying around.
    open(part, "wb").write(b"junk")
    assert run(transport.download(str(remote), str(local), resume=False)) == len(data)
    assert local.read_bytes() == data


def test_connection_refused(ssh_env, control_dir):
    target = SSHTarget(name="gpu", host="127.0.0.1", port=free_port())  # bound, then closed
    with pytest.raises(HostUnreachable) as err:
        run(SSHTransport(target, control_dir=control_dir).check())
    assert str(err.value).startswith("ssh gpu: connect to host 127.0.0.1 port ")
    assert "Connection refused" in err.value.line


def test_wrong_key_is_permission_denied(ssh_env, control_dir, tmp_path):
    key = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    target = SSHTarget(name="box", host="127.0.0.1", port=ssh_env.port, user=ssh_env.user,
                       identity_file=str(key))
    with pytest.raises(HostUnreachable, match="Permission denied"):
        run(SSHTransport(target, control_dir=control_dir).run(["true"]))


def test_unknown_host_key_is_refused(ssh_env, control_dir, tmp_path, monkeypatch):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = ssh_env.write_client_config(tmp_path / "ssh_config", known_hosts=empty)
    monkeypatch.setenv("TRAINCTL_SSH_CONFIG", str(config))
    transport = SSHTransport(resolve_target(ssh_env.alias), control_dir=control_dir)
    with pytest.raises(HostUnreachable, match="Host key verification failed"):
        run(transport.run(["true"]))
    assert empty.read_text() == ""  # nothing was learned behind the user's back


def test_resolve_targets(ssh_env):
    with pytest.raises(HostNotFound) as err:
        resolve_target("no-such-alias")
    assert str(err.value) == ("unknown ssh host 'no-such-alias' (not in [ssh.hosts] of the "
                              "config nor an alias in ~/.ssh/config)")
    with pytest.raises(HostNotFound):
        resolve_target("bad host name")
    assert resolve_target("trainctl-test") == SSHTarget("trainctl-test", "trainctl-test")
    assert resolve_target("ada@10.0.0.5:2222") == SSHTarget("ada@10.0.0.5:2222", "10.0.0.5",
                                                            "ada", 2222)
    assert resolve_target("gpu.example.com").host == "gpu.example.com"
    assert resolve_target("root@[::1]:22").host == "::1"
    hosts = {"gpu": SshHost(host="10.0.0.5", user="me", workdir="/data/tc"),
             "alt": {"host": "h.example", "port": 2200, "identity_file": "~/.ssh/k"}}
    gpu = resolve_target("gpu", hosts)
    assert (gpu.host, gpu.user, gpu.port, gpu.workdir) == ("10.0.0.5", "me", None, "/data/tc")
    assert resolve_target("alt", hosts).port == 2200
    target, path = parse_ssh_url(f"ssh://{ssh_env.user}@127.0.0.1:{ssh_env.port}/a b/train.log")
    assert (target.host, target.port, path) == ("127.0.0.1", ssh_env.port, "/a b/train.log")


def test_ssh_command_opens_a_shell_without_batch_mode(ssh_env):
    target = SSHTarget("t", "127.0.0.1", ssh_env.user, ssh_env.port, str(ssh_env.user_key))
    argv = ssh_command(target, "echo", "hello")
    assert "BatchMode=yes" not in argv and "StrictHostKeyChecking" not in " ".join(argv)
    assert argv[argv.index("--") + 1:] == ["127.0.0.1", "echo", "hello"]
    done = subprocess.run(argv, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.stdout.strip() == b"hello"
    subprocess.run(argv[:argv.index("--")] + ["-O", "exit", "127.0.0.1"], capture_output=True)


def master_pid(transport) -> int:
    check = subprocess.run(transport.argv(None, "-O", "check"), capture_output=True, text=True)
    return int(check.stderr.split("pid=")[1].split(")")[0])


def test_reconnects_after_sshd_restart(transport, ssh_env):
    assert run(transport.check()) > 0
    assert run(transport.master_alive())
    ssh_env.restart()
    assert run(transport.run(["echo", "back"])).stdout == b"back\n"
    # A master killed outright leaves a stale socket; the next call still gets through.
    os.kill(master_pid(transport), 9)
    assert run(transport.run(["echo", "again"])).stdout == b"again\n"


def test_reconnects_when_the_master_dies_mid_command(transport):
    assert run(transport.check()) > 0
    master = master_pid(transport)

    async def scenario():
        call = asyncio.ensure_future(transport.run("sleep 2; echo done", timeout=30))
        await asyncio.sleep(0.7)
        # The master dies, the host stays up: after an sshd restart the retry could come
        # before the new sshd listens, and the host is rightly unreachable then.
        os.kill(master, signal.SIGKILL)
        return await call

    # The first attempt dies with the master; the one retry runs it on a new connection.
    assert run(scenario()).stdout == b"done\n"
    assert master_pid(transport) != master


def test_timeout_kills_the_call(transport, tmp_path):
    pidfile = tmp_path / "sleep.pid"
    with pytest.raises(HostUnreachable, match=r"^ssh trainctl-test: timed out after 1s$"):
        run(transport.run(f"echo $$ > '{pidfile}'; exec sleep 30", timeout=1))
    assert run(transport.run(["echo", "still fine"])).stdout == b"still fine\n"
    # Without a tty the remote command outlives the dropped channel: don't leave it behind.
    os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_download_uses_rsync_when_both_sides_have_it(transport, tmp_path, monkeypatch):
    import shutil as sh

    real = sh.which("rsync")
    if real is None:
        missing("rsync is not installed (apt-get install rsync)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "rsync-calls"
    wrapper = bin_dir / "rsync"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    data = os.urandom(2 * 1024 * 1024 + 7)
    remote = tmp_path / "ckpt with space $(x).bin"
    remote.write_bytes(data)
    local = tmp_path / "home" / "ckpt.bin"
    local.parent.mkdir()
    (tmp_path / "home" / "ckpt.bin.part").write_bytes(data[:1000])  # an earlier, cut pull
    seen: list[tuple[int, int]] = []
    assert run(transport.download(str(remote), str(local),
                                  progress=lambda d, t: seen.append((d, t)))) == len(data)
    assert local.read_bytes() == data
    assert "--append-verify" in calls.read_text()
    assert seen[0] == (1000, len(data)) and seen[-1][0] == len(data)


def test_download_falls_back_to_ssh_without_rsync(transport, tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)
    data = os.urandom(100_000)
    remote = tmp_path / "plain.bin"
    remote.write_bytes(data)
    local = tmp_path / "plain-copy.bin"
    assert run(transport.download(str(remote), str(local))) == len(data)
    assert local.read_bytes() == data
