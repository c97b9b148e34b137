"""The transport of a cluster whose login node is this machine (login = "local"): the same
calls as the ssh transport (run, read_range, size, put, download), done here. Commands run
in the home directory, as over ssh, with this process's environment (SLURM_CONF included)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from ..base import ProviderError
from ..remote.transport import Result


class LocalLogin:
    label = "slurm login (this machine)"

    def __init__(self, name: str = "local"):
        self.name = name

    @staticmethod
    def path(path: str) -> Path:
        return Path(path).expanduser() if path.startswith("~") else Path.home() / path

    async def run(self, command: list[str] | str, *, input: bytes | None = None,
                  timeout: float = 60, check: bool = True, retry: bool = True) -> Result:
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=str(Path.home()), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL)
        except OSError as exc:
            raise ProviderError(f"{self.label}: cannot run {argv[0]}: {exc.strerror}") from None
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(input), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise ProviderError(f"{self.label}: {argv[0]} timed out after {timeout:g}s") from None
        result = Result(proc.returncode, stdout, stderr)
        if check and result.returncode != 0:
            lines = stderr.decode(errors="replace").strip().splitlines()
            raise ProviderError(f"{self.label}: {argv[0]} failed (exit {result.returncode})"
                                + (f": {lines[-1]}" if lines else ""))
        return result

    async def read_range(self, path: str, offset: int, limit: int, *,
                         timeout: float = 60) -> bytes:
        try:
            with open(self.path(path), "rb") as handle:
                handle.seek(offset)
                return handle.read(limit)
        except FileNotFoundError:
            raise ProviderError(f"{self.label}: no such file '{path}'") from None

    async def size(self, path: str, *, timeout: float = 60) -> int | None:
        try:
            return self.path(path).stat().st_size
        except FileNotFoundError:
            return None

    async def put(self, data: bytes, remote_path: str, *, mode: int = 0o600,
                  timeout: float = 60) -> None:
        target = self.path(remote_path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f"{target.name}.tmp.{os.getpid()}")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(temporary, mode)
            os.replace(temporary, target)
        except OSError as exc:
            raise ProviderError(f"{self.label}: cannot write {remote_path}: "
                                f"{exc.strerror}") from None

    async def download(self, remote_path: str, local_path: str, *, progress=None,
                       resume: bool = True, stall_timeout: float = 60) -> int:
        source = self.path(remote_path)
        if not source.exists():
            raise ProviderError(f"{self.label}: no such file '{remote_path}'")
        shutil.copyfile(source, local_path)
        size = source.stat().st_size
        if progress:
            progress(size, size)
        return size
