"""Validated config sections without importing pydantic, for the commands run many times a day.

`config.load_config()` validates everything with pydantic, whose import alone costs more than a
whole `trainctl --once`. So the sections such a command reads are kept, once validated, in a
cache keyed by everything they were validated from: the bytes of every config file, the
TRAINCTL_ environment, trainctl's version and the schema's source. Any change to one of those
validates again with pydantic, so a bad config still ends in its one clear line. It is a cache,
never the truth: written atomically, a damaged one is ignored, and secrets are never written to
it (a section read from it has no secret fields).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .. import __version__
from ..core import paths
from ..core.atomic import atomic_write_json

PACKAGE = Path(__file__).resolve().parents[1]
ENV_PREFIX = "TRAINCTL_"
CACHE_VERSION = 1


def cache_path() -> Path:
    return paths.state_dir() / "cache" / "config.json"


def schema_sources() -> list[Path]:
    """The files the schema is written in: the loader, the section base, each backend's
    settings (found from the table of backends, without importing them)."""
    from ..core.backend_table import BACKENDS, module_of

    files = [PACKAGE / "config" / "loader.py", PACKAGE / "config" / "section.py"]
    for entry in BACKENDS.values():
        if entry.settings:
            files.append(PACKAGE.joinpath(*module_of(entry.settings).split(".")[1:])
                         .with_suffix(".py"))
    return files


def source_key(cwd: Path | None = None) -> str:
    """A digest of everything the validated config follows from."""
    digest = hashlib.sha256(f"{CACHE_VERSION}\0{__version__}\0".encode())
    for source in schema_sources():
        digest.update(source.read_bytes())
    for path in (paths.user_config_path(), paths.project_config_path(cwd)):
        digest.update(f"\0{path}\0".encode())
        try:
            digest.update(b"file\0" + path.read_bytes())
        except FileNotFoundError:
            digest.update(b"absent")
        except OSError as exc:  # unreadable: never cached, load_config says what is wrong
            digest.update(f"error {exc.errno} {os.urandom(8).hex()}".encode())
    for name in sorted(os.environ):
        if name.upper().startswith(ENV_PREFIX):  # pydantic-settings ignores the case
            digest.update(f"\0{name}={os.environ[name]}".encode())
    return digest.hexdigest()


def validated_sections(names: tuple[str, ...], cwd: Path | None = None) -> Any:
    """An object with the config sections `names` as attributes, validated: from the cache
    when nothing it follows from changed, else from `load_config()` (which raises the one-line
    ConfigError for a bad config), whose sections are then cached."""
    key = source_key(cwd)
    cached = _read(key, names)
    if cached is not None:
        return cached
    from .loader import load_config  # pydantic: only when the sources changed

    config = load_config(cwd)
    _write(key, {name: _public(getattr(config, name).model_dump()) for name in names})
    return config


def _read(key: str, names: tuple[str, ...]) -> SimpleNamespace | None:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
        if data.get("key") != key:
            return None
        sections = data["sections"]
        return SimpleNamespace(**{name: SimpleNamespace(**sections[name]) for name in names})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent, damaged or written for other sections: validate again


def _write(key: str, sections: dict[str, dict]) -> None:
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"key": key, "sections": sections}, mode=0o600)
    except (OSError, TypeError, ValueError):
        pass  # a read-only or full home, a value JSON cannot hold: validate again next time


def _public(value: Any) -> Any:
    """`value` with every secret left out (pydantic's SecretStr and friends)."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not _is_secret(v)}
    if isinstance(value, (list, tuple)):
        return [_public(v) for v in value if not _is_secret(v)]
    return value


def _is_secret(value: Any) -> bool:
    return hasattr(value, "get_secret_value")
