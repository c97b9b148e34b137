"""trainctl settings: TOML files + TRAINCTL_* env, validated by pydantic-settings.

Precedence, lowest to highest, merged key by key:
  1. user file      $TRAINCTL_CONFIG, else <platformdirs user config dir>/config.toml
  2. project file   ./trainctl.toml
  3. environment    TRAINCTL_<SECTION>__<KEY>=value (e.g. TRAINCTL_DEFAULTS__GRACE_SECONDS=5)

Every mistake a user can make ends in a one-line ConfigError that names the file (or env var),
the dotted key, the bad value and what is allowed. Never imports textual, rich or cloud SDKs.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    create_model,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.exceptions import SettingsError

from trainctl_tui.config.section import Section
from trainctl_tui.core.errors import ConfigError
from trainctl_tui.core.formatting import mask_secret
from trainctl_tui.core.paths import project_config_path, user_config_path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = [
    "EXAMPLE_CONFIG",
    "AlertsConfig",
    "Config",
    "DefaultsConfig",
    "MetricsConfig",
    "UiConfig",
    "config_sources",
    "init_config",
    "load_config",
    "mask_secret",
    "render_config",
]

ENV_PREFIX = "TRAINCTL_"
ENV_DELIMITER = "__"
_VALUE_REPR_MAX = 60


# --------------------------------------------------------------------------- models


class DefaultsConfig(Section):
    grace_seconds: float = Field(30.0, ge=0)
    max_restarts: int = Field(0, ge=0)
    backoff_seconds: float = Field(5.0, gt=0)
    backoff_max_seconds: float = Field(300.0, gt=0)
    resume_template: str | None = None
    checkpoint_dir: str | None = None
    keep_last_n: int | None = Field(None, ge=1)
    heartbeat_seconds: float = Field(2.0, gt=0)
    budget: float | None = Field(None, gt=0)  # USD a run may spend (launch --budget)
    max_hours: float | None = Field(None, gt=0)  # hours a run may take (launch --max-hours)
    usage_sample_seconds: float = Field(5.0, ge=0)


class UiConfig(Section):
    refresh_seconds: float = Field(1.0, ge=0.1, le=60)
    theme: str = "textual-dark"


def _check_pattern(pattern: str) -> str:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regex: {exc}") from None
    if not compiled.groupindex:
        # The group name is the series name, so an unnamed pattern would be useless.
        raise ValueError("regex needs at least one named group, e.g. (?P<loss>[0-9.eE+-]+)")
    return pattern


MetricPattern = Annotated[str, AfterValidator(_check_pattern)]


class MetricsConfig(Section):
    patterns: list[MetricPattern] = Field(default_factory=list)

    def compiled(self) -> list[re.Pattern[str]]:
        return [re.compile(p) for p in self.patterns]


class AlertsConfig(Section):
    stall_seconds: float = Field(600.0, gt=0)
    divergence_factor: float = Field(3.0, gt=1)
    gpu_idle_percent: float = Field(5.0, gt=0, le=100)
    gpu_idle_seconds: float = Field(600.0, gt=0)
    bell: bool = False
    desktop: bool = False
    webhook_url: SecretStr | None = None


class _Settings(BaseSettings):
    """The effective settings. Build it with load_config(), which adds the TOML files."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        case_sensitive=False,
        extra="forbid",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_config passes the merged TOML files as init kwargs; env must beat them.
        # No .env or secrets-dir sources: they would be surprising extra locations.
        return (env_settings, init_settings)


def _backend_sections() -> dict[str, type[Section]]:
    """Each backend's own section, by its name: what its settings module declares (the table
    of backends names them; importing them loads pydantic models, never an SDK)."""
    from ..core.backend_table import BACKENDS, load

    return {name: load(entry.settings) for name, entry in BACKENDS.items() if entry.settings}


def _section(model: type[Section]):
    return (model, Field(default_factory=model))


# trainctl's sections, each backend's in the table's order, then the monitor's.
Config = create_model(
    "Config", __base__=_Settings,
    defaults=_section(DefaultsConfig), ui=_section(UiConfig),
    **{name: _section(model) for name, model in _backend_sections().items()},
    metrics=_section(MetricsConfig), alerts=_section(AlertsConfig),
)


# --------------------------------------------------------------------------- reading files


@dataclass
class _Layer:
    """One TOML file's contents; `data` is {} when the file does not exist."""

    name: str
    path: Path
    data: dict[str, Any]


def _read_text(path: Path) -> str | None:
    """The file's text, None if it does not exist; unreadable files are a ConfigError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ConfigError(f"config error: {path} is a directory, not a TOML file") from None
    except PermissionError:
        raise ConfigError(f"config error: cannot read {path}: permission denied") from None
    except OSError as exc:
        raise ConfigError(f"config error: cannot read {path}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config error: {path}: not UTF-8 text (bad byte at offset {exc.start})"
        ) from None


_TOML_POSITION = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def _syntax_error(path: Path, text: str, exc: Exception) -> ConfigError:
    """`config error: FILE:LINE:COL: message` from a TOMLDecodeError."""
    line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    msg = getattr(exc, "msg", None)
    if line is None or col is None or msg is None:
        # Python 3.11-3.13 tomllib only has the position inside the message text.
        text_msg = str(exc)
        match = _TOML_POSITION.match(text_msg)
        if match:
            msg, line, col = match["msg"], int(match["line"]), int(match["col"])
        else:  # "... (at end of document)"
            msg = text_msg.removesuffix(" (at end of document)")
            line = text.count("\n") + 1
            col = len(text.rsplit("\n", 1)[-1]) + 1
    return ConfigError(f"config error: {path}:{line}:{col}: {msg}")


def _read_toml(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    if text is None:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(path, text, exc) from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _layers(cwd: Path | None) -> list[_Layer]:
    """The config files, lowest precedence first."""
    user = user_config_path()
    project = project_config_path(cwd)
    layers = [_Layer("user", user, _read_toml(user))]
    if not _same_file(user, project):  # TRAINCTL_CONFIG=./trainctl.toml: read it once
        layers.append(_Layer("project", project, _read_toml(project)))
    return layers


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (lists included) is replaced whole."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# --------------------------------------------------------------------------- validation


def _file_errors(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Validation errors of one file on its own, section by section, without env.

    "missing" errors are skipped: another file may supply the key (e.g. a project file that
    only changes ssh.hosts.gpu.port of a host the user file defines).
    """
    errors: list[dict[str, Any]] = []
    for key, value in data.items():
        field = Config.model_fields.get(key)
        if field is None:
            errors.append({"type": "extra_forbidden", "loc": (key,), "input": value, "msg": ""})
            continue
        try:
            TypeAdapter(field.annotation).validate_python(value)
        except ValidationError as exc:
            errors.extend({**err, "loc": (key, *err["loc"])} for err in exc.errors())
    return [err for err in errors if err["type"] != "missing"]


def _env_data() -> dict[str, Any]:
    """What the env source contributes (only called on the error path, to attribute errors)."""
    try:
        return EnvSettingsSource(Config)()
    except SettingsError:
        return {}


def _has_path(data: Any, loc: tuple[Any, ...]) -> bool:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return True


def _env_var_for(loc: tuple[Any, ...]) -> str | None:
    """The env var (as spelled in os.environ) that set loc, a key below it, or a parent."""
    names = sorted(os.environ)
    target = _env_name(loc)
    for name in names:
        if name.upper() == target or name.upper().startswith(target + ENV_DELIMITER):
            return name
    for depth in range(len(loc) - 1, 0, -1):
        parent = _env_name(loc[:depth])
        for name in names:
            if name.upper() == parent:
                return name
    return None


def _env_name(loc: tuple[Any, ...]) -> str:
    return (ENV_PREFIX + ENV_DELIMITER.join(str(p) for p in loc)).upper()


def _source_of(err: dict[str, Any], layers: list[_Layer], env: dict[str, Any]) -> str:
    """Which env var or file gave the value an error is about: the winning source first."""
    loc = tuple(err["loc"])
    if err["type"] == "missing":
        loc = loc[:-1]  # the key is absent; blame whoever defined its table
    if _has_path(env, loc):
        return _env_var_for(loc) or "environment"
    for layer in reversed(layers):
        if _has_path(layer.data, loc):
            return str(layer.path)
    return str(layers[0].path)  # ambiguous: the user config


def _build(merged: dict[str, Any], layers: list[_Layer]) -> Config:
    try:
        return Config(**merged)
    except SettingsError as exc:
        raise _env_parse_error(exc) from None
    except ValidationError as exc:
        errors = exc.errors()
        source = _source_of(errors[0], layers, _env_data())
        raise ConfigError(_format_errors(source, errors)) from None


def _env_parse_error(exc: SettingsError) -> ConfigError:
    """A table or list set from env (TRAINCTL_DEFAULTS=..., ..._PATTERNS=...) that is not JSON."""
    match = re.search(r'field "([^"]+)"', str(exc))
    culprit = _non_json_env_var(match[1]) if match else None
    if culprit is None:
        return ConfigError(f"config error: environment: {exc}")
    var, target = culprit
    value = _short_repr(os.environ[var])
    if get_origin(target) is list:
        return ConfigError(f'config error: {var} = {value}: expected a JSON list, e.g. ["a", "b"]')
    return ConfigError(
        f"config error: {var} = {value}: expected a JSON object; "
        f"set one key with {var}{ENV_DELIMITER}KEY=value"
    )


def _non_json_env_var(field: str) -> tuple[str, Any] | None:
    """(env var, type it sets) of the first var under TRAINCTL_<FIELD> that needs JSON but
    does not hold it; pydantic-settings' error names only the top-level field."""
    top = _env_name((field,))
    for name in sorted(os.environ):
        upper = name.upper()
        if upper != top and not upper.startswith(top + ENV_DELIMITER):
            continue
        loc = tuple(upper[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER))
        target = _annotation_at(loc)
        if _is_complex(target) and not _is_json(os.environ[name]):
            return name, target
    return None


def _is_complex(tp: Any) -> bool:
    return get_origin(tp) in (list, dict) or (isinstance(tp, type) and issubclass(tp, BaseModel))


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- error messages

_SECRET_FIELDS = {"api_key", "webhook_url"}
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key, prefer_literal=False)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _toml_key(str(part))
    return out


def _short_repr(value: Any) -> str:
    text = repr(value)
    if len(text) > _VALUE_REPR_MAX:
        text = text[: _VALUE_REPR_MAX - 3] + "..."
    return text


def _annotation_at(loc: tuple[Any, ...]) -> Any:
    """The type that validates the value at loc (None if loc leads nowhere)."""
    tp: Any = Config
    for part in loc:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]  # part is a user-chosen name such as an ssh host
        else:
            return None
    return tp


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model that the table at loc is validated by."""
    tp = _annotation_at(loc)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _describe(err: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key '{_dotted(loc)}'{hint}"
    if err["type"] == "missing":
        return f"missing required key '{_dotted(loc)}'"
    names = [p for p in loc if isinstance(p, str)]
    is_secret = bool(names) and names[-1] in _SECRET_FIELDS
    value = repr(mask_secret(str(err["input"]))) if is_secret else _short_repr(err["input"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{_dotted(loc)} = {value}: {msg}"


def _format_errors(source: str, errors: list[dict[str, Any]]) -> str:
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"config error: {source}: {_describe(errors[0])}{more}"


# --------------------------------------------------------------------------- public API


def config_sources(cwd: Path | None = None) -> list[tuple[str, Path, bool]]:
    """[(name, path, exists)] of the config files, lowest precedence first."""
    user, project = user_config_path(), project_config_path(cwd)
    return [("user", user, user.exists()), ("project", project, project.exists())]


def load_config(cwd: Path | None = None) -> Config:
    """Read, merge and validate user file, project file and env. Raises ConfigError."""
    layers = _layers(cwd)
    # Each file on its own first, so an error names the file it is in; project first (it wins).
    for layer in reversed(layers):
        errors = _file_errors(layer.data)
        if errors:
            raise ConfigError(_format_errors(str(layer.path), errors))
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _deep_merge(merged, layer.data)
    return _build(merged, layers)


def render_config(cfg: Config, *, mask_secrets: bool = True) -> str:
    """The effective config as TOML; unset keys appear as comments."""
    lines: list[str] = []
    _emit_table(lines, (), cfg, mask_secrets)
    for name, field in type(cfg).model_fields.items():  # a section's own notes (key sources)
        model = field.annotation
        notes = model.notes(cfg) if isinstance(model, type) and issubclass(model, Section) \
            else []
        if notes and f"[{name}]" in lines:
            at = lines.index(f"[{name}]") + 1
            lines[at:at] = notes
    return "\n".join(lines).rstrip("\n") + "\n"


def init_config(path: Path | None = None) -> Path:
    """Write EXAMPLE_CONFIG to path (default: the user config path); never overwrites."""
    target = path if path is not None else user_config_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"config error: cannot create {target.parent}: {reason}") from None
    try:
        # O_EXCL: refuse atomically if it exists; 0600 because the file may hold API keys.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"config error: {target} already exists (edit it, or remove it first)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config error: cannot write {target}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(EXAMPLE_CONFIG)
    return target


# --------------------------------------------------------------------------- TOML writer
# tomllib cannot write and the few value types we hold do not justify a dependency.


def _emit_table(lines: list[str], path: tuple[str, ...], model: BaseModel, mask: bool) -> None:
    scalars: list[tuple[str, Any]] = []
    tables: list[tuple[tuple[str, ...], BaseModel]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            tables.append(((*path, name), value))
        elif _is_model_dict(value):
            tables.extend(((*path, name, key), sub) for key, sub in value.items())
        else:
            scalars.append((name, value))
    if path and (scalars or not tables):
        lines.append(f"[{_dotted(path)}]")
        lines.extend(_emit_key(name, value, mask) for name, value in scalars)
        lines.append("")
    for sub_path, sub in tables:
        _emit_table(lines, sub_path, sub, mask)


def _is_model_dict(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(v, BaseModel) for v in value.values())
    )


def _emit_key(name: str, value: Any, mask: bool) -> str:
    if value is None:
        return f"# {_toml_key(name)} is not set"  # TOML has no null
    if isinstance(value, SecretStr):
        value = mask_secret(value) if mask else value.get_secret_value()
    return f"{_toml_key(name)} = {_toml_value(value)}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # floats: "30.0", "inf" and "nan" are all valid TOML
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    if isinstance(value, BaseModel):
        return _toml_value(value.model_dump())
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"'}
_ESCAPES["\\"] = "\\\\"


def _is_control(ch: str) -> bool:
    return ch < " " or ch == "\x7f"


def _toml_string(text: str, *, prefer_literal: bool = True) -> str:
    # Regexes read better as 'literal strings' where backslashes are not escapes.
    literal_ok = "'" not in text and not any(_is_control(ch) for ch in text)
    if prefer_literal and "\\" in text and literal_ok:
        return f"'{text}'"
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif _is_control(ch):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# --------------------------------------------------------------------------- example file

EXAMPLE_CONFIG = r"""# trainctl configuration (TOML).
#
# Where trainctl looks, later ones winning key by key:
#   1. this file: $TRAINCTL_CONFIG, else config.toml in your user config directory
#   2. trainctl.toml in the directory you run trainctl from (per-project overrides)
#   3. environment variables TRAINCTL_<SECTION>__<KEY>, e.g. TRAINCTL_DEFAULTS__GRACE_SECONDS=5
#
# Lines of the form "# key = value" are optional settings: delete the "# " to use one.
# An unknown key is an error, so a typo never goes unnoticed. `trainctl config show`
# prints the merged result.

[defaults]
# Seconds between SIGTERM and SIGKILL when a run is stopped (>= 0).
grace_seconds = 30
# Restart a failed run up to this many times (0 = never restart).
max_restarts = 0
# Wait before the first restart; it doubles on every restart, up to backoff_max_seconds.
backoff_seconds = 5
backoff_max_seconds = 300
# How a restart resumes: {checkpoint} becomes the newest valid checkpoint's path.
# resume_template = "--resume {checkpoint}"
# Where runs write checkpoints, relative to the run's working directory.
# checkpoint_dir = "checkpoints"
# When pruning, keep the newest N checkpoints (>= 1; unset keeps all of them).
# keep_last_n = 3
# How often the runner writes its heartbeat to status.json, in seconds.
heartbeat_seconds = 2
# How often the runner samples the GPUs (nvidia-smi) and the training's CPU and memory, in
# seconds (0 turns sampling off).
usage_sample_seconds = 5
# Stop a run gracefully once it has cost this many dollars, or run this many hours
# (launch --budget / --max-hours); 90 % of either raises an alert first.
# budget = 25
# max_hours = 12

[local]
# What a run on this machine costs per hour (USD), so cost and budgets work here too.
# price_per_hour = 0.5

[ui]
# Screen refresh interval in seconds (0.1 to 60); raise it on slow SSH links.
refresh_seconds = 1.0
# Any Textual theme: "textual-dark", "textual-light", "nord", "gruvbox", ...
theme = "textual-dark"

[ssh]
# Multi-node runs on a group (--provider ssh:GROUP --nodes N): a node lost is replaced on a
# spare host of the group (one --nodes leaves free) at most max_resumes times per session;
# a host that does not answer for node_lost_seconds counts as lost.
max_resumes = 3
node_lost_seconds = 60
# [ssh.groups.trio]
# hosts = ["gpu-box", "gpu-box-2", "gpu-box-3"]  # the first is the head (rank 0)
# One [ssh.hosts.NAME] table per machine; NAME is what you pass to --host.
# trainctl runs your system ssh, so ~/.ssh/config, agents and jump hosts all apply.
# [ssh.hosts.gpu-box]
# host = "gpu-box.example.com"
# user = "me"
# port = 22
# identity_file = "~/.ssh/id_ed25519"
# python = "python3"
# workdir = "~/.trainctl"
# price_per_hour = 1.2                  # USD, for cost columns and --budget

[aws]
# Credentials come from the usual AWS chain (env, ~/.aws, SSO); these only choose one.
# profile = "default"
# region = "us-east-1"
# After a spot interruption, launch a new instance and resume from the newest checkpoint,
# at most max_resumes times per session.
auto_resume = false
# Also: a multi-node run (--nodes N) replaces a lost node's instance with a new one in the
# same placement group at most max_resumes times per session; an instance SSM has not
# reached for node_lost_seconds counts as lost (terminated or stopped ones at once).
max_resumes = 3
node_lost_seconds = 60
# Seconds a new instance may take to run and register with SSM before it is terminated.
ready_timeout = 600
# On-demand $/h by type, for accounts where the Pricing API is not allowed.
# prices = { "g5.xlarge" = 1.006, "g6.xlarge" = 0.805 }
# One [aws.templates.NAME] table per kind of instance you launch; "default" is used when
# none is named. ami: an id, an SSM parameter (/aws/service/...) or an image name filter.
# [aws.templates.a10g]
# ami = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
# instance_type = "g5.xlarge"
# key_name = "my-key"
# subnet_id = "subnet-0123456789abcdef0"
# security_group_ids = ["sg-0123456789abcdef0"]
# iam_instance_profile = "trainctl-instance"
# volume_gb = 100
# tags = { team = "ml", project = "demo" }
# spot = true
# max_price = 0.5
# interruption_behavior = "terminate"   # or "stop" (a spot instance AWS reclaims)
# shutdown_behavior = "stop"            # what `shutdown` on the instance does
# s3_prefix = "s3://my-bucket/trainctl"  # checkpoints sync to PREFIX/<session>/checkpoints/
# autostop_minutes = 30                 # stop the instance after 30 idle minutes
# fallback_zones = ["us-east-1b", "us-east-1c"]  # where replacements may go
# fallback_types = ["g6.xlarge"]
# python = "python3"
# workdir = "/opt/trainctl"
# ssh_user = "ubuntu"                   # the shell key's fallback when SSM's plugin is absent

[runpod]
# API key: keep it here (this file is created readable by you only) or set
# TRAINCTL_RUNPOD__API_KEY. It is always shown masked.
# api_key = "rpa_XXXXXXXXXXXXXXXXXXXXXXXXXXXX"
# Which RunPod cloud to rent from: "SECURE", "COMMUNITY" or "ALL".
cloud_type = "SECURE"
# Relaunch a pod that disappears and resume from the newest checkpoint.
auto_resume = false
# ... at most this many times per session.
max_resumes = 3
# What a new pod runs, and with how many of which GPU (trainctl gpus --provider runpod).
image = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
# gpu_type = "NVIDIA A40"
gpu_count = 1
# Disk sizes in GB; a network volume keeps checkpoints across pods.
volume_gb = 20
container_disk_gb = 20
# network_volume_id = "abc123xyz"
# Spot pods without a network volume: download each new newest checkpoint in the background
# into the session folder (checkpoints-home/), so a reclaimed pod is recreated and resumed
# from it (the newest two are kept). Checkpoints under /workspace on a network volume never
# need this.
pull_checkpoints = false
# Seconds to wait for a new pod to run with its ports mapped.
ready_timeout = 600
# How trainctl reaches a pod's sshd (the image must run one; PUBLIC_KEY gets your key).
ssh_user = "root"
# identity_file = "~/.ssh/id_ed25519"
python = "python3"
workdir = "/workspace/trainctl"
# At a session's --budget or --max-hours the runner stops its pod through RunPod's API
# ("stop": the volume is kept and still bills) or terminates it ("terminate": the pod and its
# disks are deleted; a network volume stays).
shutdown_behavior = "stop"

[metrics]
# Extra regexes that pull metrics out of train.log, one series per named group:
# (?P<val_loss>...) feeds the "val_loss" series. Every pattern needs a named group.
# Use 'single quotes' so backslashes are taken literally.
# patterns = ['val_loss[=:]\s*(?P<val_loss>[-+0-9.eE]+)', 'tok/s[=:]\s*(?P<tokens_per_s>[0-9.]+)']

[alerts]
# Alert when train.log has been silent this many seconds.
stall_seconds = 600
# Alert when the loss exceeds this multiple of its best value so far (> 1).
divergence_factor = 3.0
# Alert when every GPU of a paid machine (a known $/h) stays under gpu_idle_percent for
# gpu_idle_seconds while its run is running.
gpu_idle_percent = 5
gpu_idle_seconds = 600
# Ring the terminal bell / send a desktop notification on an alert.
bell = false
desktop = false
# POST alerts to this URL (Slack-compatible JSON); shown masked.
# webhook_url = "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXX"
"""
