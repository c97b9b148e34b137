"""Commands and bytes on an EC2 instance through SSM Run Command (`AWS-RunShellScript`), with
the interface the remote runner logic uses from SSHTransport: run, read_range, size, put,
download. No inbound SSH is needed: the SSM agent on the instance pulls the commands.

Each call is one `send_command`, then `get_command_invocation` until a terminal status.
SSM returns at most 24,000 characters of a command's stdout inline (8,000 of stderr), so every
answer here is framed: bytes travel base64-encoded (gzip first when it pays), with their count
and an end marker, and a chunk that arrives cut is an error, never silently short data. A big
output is read back in several commands. Uploads travel base64 in the command text in chunks,
into a temp file that is moved into place at the end; secrets never go this way (see
aws_sessions: SecureString parameters the instance reads itself).

Commands run as root with cwd / on the instance: every command first enters `cwd` (the
template's absolute workdir), so relative paths mean the same as over SSH."""

from __future__ import annotations

import asyncio
import base64
import gzip
import math
import os
import secrets
import shlex
import time
import zlib
from collections.abc import Callable

from ..remote.transport import Result, remote_command
from . import api as aws_api
from .api import AWSError

DOCUMENT = "AWS-RunShellScript"
OUTPUT_LIMIT = 24_000  # characters of StandardOutputContent SSM returns inline
STDERR_LIMIT = 8_000
RAW_CHUNK = 14_000  # raw bytes per answer: base64 makes ~18,700 chars, under the limit
STDERR_TAIL = 2_000  # bytes of a command's stderr sent back (base64 ~2,700 chars)
PUT_CHUNK = 24_000  # raw bytes per upload command (~32,000 chars of command text)
READ_WINDOW = 256 << 10  # raw bytes a read asks for at once; gzip usually makes them fit
DELIVERY_TIMEOUT = 60  # seconds SSM may take to deliver a command (its minimum is 30)
POLL_START, POLL_MAX = 0.05, 1.0
_MISSING = 44  # our scripts' exit code for "no such file" (as over SSH)
_END = "TRAINCTL-END"
PENDING = {"Pending", "InProgress", "Delayed", "Cancelling"}
UNDELIVERED = {"Undeliverable", "DeliveryTimedOut", "Terminated"}


class SSMError(AWSError):
    """An SSM command failed; the message starts with 'aws ssm i-...:'."""


class SSMUnreachable(SSMError):
    """The instance does not take commands: not registered with SSM, stopped, terminated."""

    def __init__(self, instance_id: str, why: str):
        super().__init__(f"aws ssm: {instance_id} is not reachable through SSM ({why})",
                         "InvalidInstanceId")
        self.instance_id = instance_id
        self.why = why


def q(path: str) -> str:
    return shlex.quote(path)


def _readable(path: str) -> str:
    """Script prefix: $p is the file; exit _MISSING if absent, 1 if it can't be read."""
    return (f"p={q(path)}; [ -e \"$p\" ] || exit {_MISSING}; "
            '{ [ -r "$p" ] && [ ! -d "$p" ]; } || { echo "cannot read $p" >&2; exit 1; }; ')


def slice_script(path_var: str, offset: int, limit: int) -> str:
    """Prints bytes [offset, offset+limit) of the file in $path_var, framed:
    'z COUNT GZSIZE' + base64(gzip) when that fits, else 'r COUNT' + base64 of the first
    RAW_CHUNK bytes; then the end marker. COUNT is the raw byte count sent."""
    return (
        't=$(mktemp) || exit 1; '
        f'tail -c +{offset + 1} -- "${path_var}" | head -c {limit} > "$t"; '
        'n=$(wc -c < "$t" | tr -d " "); '
        'if command -v gzip >/dev/null 2>&1 && gzip -c "$t" > "$t.gz" '
        f'&& z=$(wc -c < "$t.gz" | tr -d " ") && [ "$z" -le {RAW_CHUNK} ]; then '
        '  echo "z $n $z"; base64 < "$t.gz" | tr -d "\\n"; '
        'else '
        f'  head -c {RAW_CHUNK} "$t" > "$t.r"; echo "r $(wc -c < "$t.r" | tr -d " ")"; '
        '  base64 < "$t.r" | tr -d "\\n"; '
        'fi; '
        f'echo; echo {_END}; rm -f "$t" "$t.gz" "$t.r"'
    )


def parse_slice(text: str, who: str) -> tuple[bytes, int | None]:
    """(data, compressed size or None) from slice_script's answer; raises if it arrived cut."""
    lines = text.split("\n")
    if len(lines) < 3 or lines[2].strip() != _END:
        raise SSMError(f"{who}: answer cut short (SSM output limit); nothing was lost, "
                       "retry", "Truncated")
    head = lines[0].split()
    try:
        raw = base64.b64decode(lines[1], validate=True)
        data = gzip.decompress(raw) if head[0] == "z" else raw
        count = int(head[1])
    except (ValueError, IndexError, OSError, EOFError, zlib.error):
        raise SSMError(f"{who}: unreadable answer", "Truncated") from None
    if len(data) != count:
        raise SSMError(f"{who}: answer cut short ({len(data)} of {count} bytes)", "Truncated")
    return data, (int(head[2]) if head[0] == "z" and len(head) > 2 else None)


class SSMTransport:
    """Commands, reads and uploads on one EC2 instance through SSM."""

    def __init__(self, instance_id: str, *, cwd: str = "/opt/trainctl",
                 poll_max: float = POLL_MAX):
        self.instance_id = instance_id
        self.cwd = cwd
        self.poll_max = poll_max
        self._window = READ_WINDOW
        self.commands_sent = 0  # how many SSM commands this transport sent (tests, stats)

    @property
    def name(self) -> str:
        return self.instance_id

    @property
    def label(self) -> str:
        return f"aws ssm {self.instance_id}"

    # -- one SSM command ---------------------------------------------------------------------

    async def invoke(self, script: str, *, timeout: float = 60) -> Result:
        """Send one shell script; wait for its end. Result(ResponseCode, stdout, stderr) as
        SSM returned them (stdout cut at 24,000 chars, stderr at 8,000)."""
        ssm = aws_api.client("ssm")
        execution = max(1, math.ceil(timeout))
        where = q(self.cwd)
        text = f"cd {where} 2>/dev/null || {{ mkdir -p {where} && cd {where}; }}" \
               f" || exit 125\n{script}"
        try:
            sent = await aws_api.call(
                f"ssm send-command to {self.instance_id}", ssm.send_command,
                DocumentName=DOCUMENT, InstanceIds=[self.instance_id],
                Parameters={"commands": [text], "executionTimeout": [str(execution)]},
                TimeoutSeconds=max(30, DELIVERY_TIMEOUT), Comment="trainctl")
        except AWSError as exc:
            if exc.code in ("InvalidInstanceId", "InvalidInstanceID.NotFound"):
                raise SSMUnreachable(self.instance_id, "not registered with SSM, or not "
                                     "running") from None
            raise
        self.commands_sent += 1
        command_id = sent["Command"]["CommandId"]
        deadline = time.monotonic() + execution + DELIVERY_TIMEOUT
        delay = POLL_START
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.poll_max)
            try:
                answer = await aws_api.call(
                    f"ssm get-command-invocation on {self.instance_id}",
                    ssm.get_command_invocation, CommandId=command_id,
                    InstanceId=self.instance_id)
            except AWSError as exc:
                if exc.code != "InvocationDoesNotExist":
                    raise
                answer = {"Status": "Pending"}
            status = answer.get("Status", "Pending")
            if status not in PENDING:
                break
            if time.monotonic() > deadline:
                await self._cancel(command_id)
                raise SSMError(f"{self.label}: no answer within {execution + DELIVERY_TIMEOUT}s",
                               "Timeout")
        if status in UNDELIVERED:
            raise SSMUnreachable(self.instance_id, f"command {status.lower()}: "
                                 f"{answer.get('StatusDetails') or status}")
        if status in ("TimedOut", "ExecutionTimedOut"):
            raise SSMError(f"{self.label}: timed out after {execution}s", "Timeout")
        if status == "Cancelled":
            raise SSMError(f"{self.label}: the command was cancelled", "Cancelled")
        code = answer.get("ResponseCode")
        return Result(int(code) if code is not None else -1,
                      (answer.get("StandardOutputContent") or "").encode(),
                      (answer.get("StandardErrorContent") or "").encode())

    async def _cancel(self, command_id: str) -> None:
        try:
            await aws_api.call("ssm cancel-command", aws_api.client("ssm").cancel_command,
                               CommandId=command_id, InstanceIds=[self.instance_id])
        except AWSError:
            pass

    # -- run ---------------------------------------------------------------------------------

    async def run(self, command: list[str] | str, *, input: bytes | None = None,
                  timeout: float = 60, check: bool = True, retry: bool = True) -> Result:
        """Run a command (argv or sh script) in `cwd` on the instance. Its output is captured
        there and sent back framed, in several commands when it is big: never cut."""
        stage = ""
        if input is not None:
            if len(input) > RAW_CHUNK:
                raise ValueError("input too large for an SSM command; use put()")
            stage = f"printf %s {base64.b64encode(input).decode()} | base64 -d > \"$d/i\"; "
        stdin = '"$d/i"' if input is not None else "/dev/null"
        script = (
            'd=$(mktemp -d /tmp/trainctl-run.XXXXXX) || exit 125; '
            f'{stage}( {remote_command(command)} ) >"$d/o" 2>"$d/e" <{stdin}; rc=$?; '
            'so=$(wc -c < "$d/o" | tr -d " "); '
            'echo "TRAINCTL-RUN $rc $so $d"; '
            f'if [ "$so" -le {RAW_CHUNK} ]; then base64 < "$d/o" | tr -d "\\n"; fi; echo; '
            f'tail -c {STDERR_TAIL} "$d/e" | base64 | tr -d "\\n"; echo; echo {_END}; '
            f'if [ "$so" -le {RAW_CHUNK} ]; then rm -rf "$d"; fi'
        )
        result = await self.invoke(script, timeout=timeout)
        text = result.stdout.decode(errors="replace")
        lines = text.split("\n")
        if not lines[0].startswith("TRAINCTL-RUN ") or len(lines) < 4 or lines[3] != _END:
            detail = result.stderr.decode(errors="replace").strip().splitlines()
            raise SSMError(f"{self.label}: the command did not run"
                           + (f": {detail[-1]}" if detail else f" (exit {result.returncode})"))
        _, rc, size, folder = lines[0].split(" ", 3)
        stderr = base64.b64decode(lines[2])
        if int(size) <= RAW_CHUNK:
            stdout = base64.b64decode(lines[1])
        else:
            try:
                stdout = await self.read_range(f"{folder}/o", 0, int(size), timeout=timeout)
            finally:
                await self.invoke(f"rm -rf {q(folder)}", timeout=30)
        out = Result(int(rc), stdout, stderr)
        if check and out.returncode != 0:
            raise self._failure(out)
        return out

    def _failure(self, result: Result) -> SSMError:
        message = f"{self.label}: command failed (exit {result.returncode})"
        lines = [line for line in result.stderr.decode(errors="replace").splitlines()
                 if line.strip()]
        return SSMError(f"{message}: {lines[-1].strip()}" if lines else message)

    # -- files -------------------------------------------------------------------------------

    async def read_range(self, path: str, offset: int, limit: int, *,
                         timeout: float = 60) -> bytes:
        """Bytes [offset, offset+limit) of a file on the instance; b'' at or past its end.
        Read in as many commands as the inline output limit needs."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must be >= 0")
        parts: list[bytes] = []
        done = 0
        while done < limit:
            want = min(limit - done, self._window)
            data, eof = await self._read_slice(path, offset + done, want, timeout)
            parts.append(data)
            done += len(data)
            if eof:
                break
        return b"".join(parts)

    async def _read_slice(self, path: str, offset: int, want: int,
                          timeout: float) -> tuple[bytes, bool]:
        """(bytes, whether the end of the file was reached) of one command."""
        result = await self.invoke(_readable(path) + slice_script("p", offset, want),
                                   timeout=timeout)
        self._raise_for_file(result, path)
        data, zipped = parse_slice(result.stdout.decode(errors="replace"), self.label)
        # Aim the next window so its gzip fills about 3/4 of an answer.
        if zipped is None:
            self._window = max(RAW_CHUNK, self._window // 2)
            return data, len(data) < min(want, RAW_CHUNK)
        if len(data) == want and zipped:
            self._window = max(RAW_CHUNK, min(8 << 20, int(want * RAW_CHUNK * 0.75 / zipped)))
        return data, len(data) < want

    async def size(self, path: str, *, timeout: float = 60) -> int | None:
        """Size in bytes, or None when the file does not exist."""
        result = await self.invoke(_readable(path) + 'wc -c < "$p"', timeout=timeout)
        if result.returncode == _MISSING:
            return None
        self._raise_for_file(result, path)
        try:
            return int(result.stdout.split()[0])
        except (IndexError, ValueError):
            raise SSMError(f"{self.label}: cannot read the size of '{path}'") from None

    def _raise_for_file(self, result: Result, path: str) -> None:
        if result.returncode == _MISSING:
            raise SSMError(f"{self.label}: no such file '{path}' on the instance")
        if result.returncode != 0:
            raise self._failure(result)

    async def put(self, data: bytes, remote_path: str, *, mode: int = 0o600,
                  timeout: float = 60) -> None:
        """Write a file atomically: base64 chunks appended to a private temp file, checked for
        size, then chmod and mv. Not for secrets: the bytes are in the command text."""
        tmp = f"{remote_path}.tmp.{secrets.token_hex(4)}"
        chunks = [data[i:i + PUT_CHUNK] for i in range(0, len(data), PUT_CHUNK)] or [b""]
        for index, chunk in enumerate(chunks):
            first, last = index == 0, index == len(chunks) - 1
            script = "set -e; umask 077; " + (
                f"mkdir -p -- \"$(dirname -- {q(remote_path)})\"; : > {q(tmp)}; " if first
                else f"[ -f {q(tmp)} ]; ")
            if chunk:
                script += f"printf %s {base64.b64encode(chunk).decode()} | base64 -d >> {q(tmp)}; "
            if last:
                script += (f"[ \"$(wc -c < {q(tmp)} | tr -d ' ')\" -eq {len(data)} ] || "
                           f"{{ rm -f {q(tmp)}; echo 'upload arrived incomplete' >&2; exit 3; }}; "
                           f"chmod {mode:o} {q(tmp)}; mv -f -- {q(tmp)} {q(remote_path)}")
            result = await self.invoke(script, timeout=timeout)
            if result.returncode != 0:
                await self.invoke(f"rm -f {q(tmp)}", timeout=30)
                raise self._failure(result)

    async def download(self, remote_path: str, local_path: str, *,
                       progress: Callable[[int, int], object] | None = None,
                       resume: bool = True, **_) -> int:
        """Copy a file home through `<local_path>.part`, resuming from the part's size."""
        total = await self.size(remote_path)
        if total is None:
            raise SSMError(f"{self.label}: no such file '{remote_path}' on the instance")
        part = f"{local_path}.part"
        done = os.path.getsize(part) if resume and os.path.exists(part) else 0
        if done > total:
            done = 0
        os.makedirs(os.path.dirname(os.path.abspath(part)), exist_ok=True)
        with open(part, "ab" if done else "wb") as out:
            if progress:
                progress(done, total)
            while done < total:
                data, _ = await self._read_slice(remote_path, done,
                                                 min(self._window, total - done), 120)
                if not data:
                    break
                out.write(data)
                done += len(data)
                if progress:
                    progress(done, total)
        if os.path.getsize(part) != total:
            raise SSMError(f"{self.label}: download of '{remote_path}' stopped at "
                           f"{os.path.getsize(part)} of {total} bytes; run it again to resume")
        os.replace(part, local_path)
        return total

    async def check(self) -> float:
        started = time.monotonic()
        await self.run(["true"], timeout=30)
        return time.monotonic() - started

    async def close(self) -> None:
        return None
