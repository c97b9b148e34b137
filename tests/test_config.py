"""Config loading: files + env precedence, one-line errors, masking, init and the example."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainctl_tui.backends.aws.settings import AwsConfig, AwsTemplate
from trainctl_tui.backends.runpod.settings import RunpodConfig
from trainctl_tui.backends.ssh.settings import SshHost
from trainctl_tui.config.loader import (
    EXAMPLE_CONFIG,
    AlertsConfig,
    Config,
    DefaultsConfig,
    MetricsConfig,
    UiConfig,
    config_sources,
    init_config,
    load_config,
    mask_secret,
    render_config,
)
from trainctl_tui.core.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DEFAULTS_KEYS = (
    "grace_seconds, max_restarts, backoff_seconds, backoff_max_seconds, resume_template, "
    "checkpoint_dir, keep_last_n, heartbeat_seconds, budget, max_hours, usage_sample_seconds"
)
SECRET = "rpa_ABCDEFGHIJKLMNOPQRSTUV7xyz"
HOOK = "https://hooks.example.com/services/T000/B000/abcdefSECRET"


@pytest.fixture
def cfg_env(tmp_path, monkeypatch):
    """A private user config path, an empty project dir as cwd, no TRAINCTL_* from outside."""
    for name in list(os.environ):
        if name.upper().startswith("TRAINCTL_"):
            monkeypatch.delenv(name)
    user = tmp_path / "user" / "config.toml"
    monkeypatch.setenv("TRAINCTL_CONFIG", str(user))
    project_dir = tmp_path / "project"
    project_dir.mkdir()
    monkeypatch.chdir(project_dir)
    return SimpleNamespace(user=user, project=project_dir / "trainctl.toml", tmp=tmp_path)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(**kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- precedence


def test_defaults_without_any_file(cfg_env):
    cfg = load_config()
    assert cfg.defaults.grace_seconds == 30
    assert cfg.defaults.max_restarts == 0
    assert cfg.defaults.backoff_seconds == 5
    assert cfg.defaults.backoff_max_seconds == 300
    assert cfg.defaults.resume_template is None
    assert cfg.defaults.keep_last_n is None
    assert cfg.defaults.heartbeat_seconds == 2
    assert cfg.ui.refresh_seconds == 1.0
    assert cfg.ui.theme == "textual-dark"
    assert cfg.ssh.hosts == {}
    assert cfg.aws.auto_resume is False and cfg.aws.templates == {}
    assert cfg.runpod.api_key is None and cfg.runpod.cloud_type == "SECURE"
    assert cfg.metrics.patterns == []
    assert cfg.alerts.stall_seconds == 600 and cfg.alerts.divergence_factor == 3.0
    assert config_sources() == [("user", cfg_env.user, False), ("project", cfg_env.project, False)]


def test_user_file_is_read(cfg_env):
    write(
        cfg_env.user,
        """
        [defaults]
        grace_seconds = 12.5
        resume_template = "--resume {checkpoint}"
        [ssh.hosts.gpu]
        host = "10.0.0.5"
        user = "me"
        [aws.templates.a10g]
        instance_type = "g5.2xlarge"
        security_group_ids = ["sg-1"]
        tags = { team = "ml" }
        spot = true
        """,
    )
    cfg = load_config()
    assert cfg.defaults.grace_seconds == 12.5
    assert cfg.defaults.resume_template == "--resume {checkpoint}"
    host = cfg.ssh.hosts["gpu"]
    assert (host.host, host.user, host.port, host.python, host.workdir) == (
        "10.0.0.5",
        "me",
        22,
        "python3",
        "~/.trainctl",
    )
    template = cfg.aws.templates["a10g"]
    assert template.tags == {"team": "ml"} and template.spot is True
    assert config_sources()[0] == ("user", cfg_env.user, True)


def test_project_file_overrides_user_key_by_key(cfg_env):
    write(
        cfg_env.user,
        """
        [defaults]
        grace_seconds = 10
        max_restarts = 2
        [ssh.hosts.gpu]
        host = "gpu.example.com"
        user = "me"
        [metrics]
        patterns = ['a=(?P<a>\\d+)']
        """,
    )
    write(
        cfg_env.project,
        """
        [defaults]
        grace_seconds = 1
        [ssh.hosts.gpu]
        port = 2222
        [metrics]
        patterns = ['b=(?P<b>\\d+)']
        """,
    )
    cfg = load_config()
    assert cfg.defaults.grace_seconds == 1  # project wins
    assert cfg.defaults.max_restarts == 2  # user key kept
    host = cfg.ssh.hosts["gpu"]
    assert (host.host, host.user, host.port) == ("gpu.example.com", "me", 2222)
    assert cfg.metrics.patterns == ["b=(?P<b>\\d+)"]  # lists are replaced, not appended
    assert config_sources()[1] == ("project", cfg_env.project, True)


def test_cwd_argument_picks_the_project_file(cfg_env):
    other = cfg_env.tmp / "elsewhere"
    write(other / "trainctl.toml", "[ui]\ntheme = 'nord'\n")
    assert load_config().ui.theme == "textual-dark"
    assert load_config(cwd=other).ui.theme == "nord"
    assert config_sources(other)[1] == ("project", other / "trainctl.toml", True)


def test_env_overrides_files_including_nested(cfg_env, monkeypatch):
    write(cfg_env.user, "[defaults]\ngrace_seconds = 10\n[ssh.hosts.gpu]\nhost = 'h'\n")
    write(cfg_env.project, "[defaults]\ngrace_seconds = 20\nmax_restarts = 3\n")
    monkeypatch.setenv("TRAINCTL_DEFAULTS__GRACE_SECONDS", "5")
    monkeypatch.setenv("TRAINCTL_SSH__HOSTS__GPU__PORT", "2200")
    monkeypatch.setenv("TRAINCTL_RUNPOD__CLOUD_TYPE", "community")
    monkeypatch.setenv("TRAINCTL_METRICS__PATTERNS", '["loss=(?P<loss>\\\\S+)"]')
    cfg = load_config()
    assert cfg.defaults.grace_seconds == 5
    assert cfg.defaults.max_restarts == 3
    assert cfg.ssh.hosts["gpu"].host == "h" and cfg.ssh.hosts["gpu"].port == 2200
    assert cfg.runpod.cloud_type == "COMMUNITY"
    assert cfg.metrics.patterns == ["loss=(?P<loss>\\S+)"]


def test_runner_and_path_env_vars_are_not_settings(cfg_env, monkeypatch):
    monkeypatch.setenv("TRAINCTL_HOME", str(cfg_env.tmp / "home"))
    monkeypatch.setenv("TRAINCTL_SESSION_ID", "s-123")
    monkeypatch.setenv("TRAINCTL_ATTEMPT", "2")
    monkeypatch.setenv("TRAINCTL_SOMETHING_ELSE", "{not json")
    assert load_config().defaults.grace_seconds == 30


def test_config_env_var_naming_the_project_file_reads_it_once(cfg_env, monkeypatch):
    write(cfg_env.project, "[defaults]\nmax_restarts = 4\n")
    monkeypatch.setenv("TRAINCTL_CONFIG", "trainctl.toml")
    assert load_config().defaults.max_restarts == 4


# --------------------------------------------------------------------------- bad files


def test_toml_syntax_error_names_file_line_and_column(cfg_env):
    write(cfg_env.user, "[defaults]\ngrace_seconds = \n")
    assert error_of() == f"config error: {cfg_env.user}:2:17: Invalid value"


def test_toml_syntax_error_at_end_of_document(cfg_env):
    write(cfg_env.project, "[ui]\ntheme = 'dark")
    assert error_of() == f'config error: {cfg_env.project}:2:14: Expected "\'"'


def test_config_path_that_is_a_directory(cfg_env):
    cfg_env.user.mkdir(parents=True)
    assert error_of() == f"config error: {cfg_env.user} is a directory, not a TOML file"


def test_unreadable_config_file(cfg_env, monkeypatch):
    write(cfg_env.user, "[ui]\n")
    real_read_bytes = Path.read_bytes

    def denied(path: Path) -> bytes:
        # chmod 000 does not stop root (CI containers), so deny at the call instead.
        if path == cfg_env.user:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert error_of() == f"config error: cannot read {cfg_env.user}: permission denied"


def test_file_that_is_not_utf8(cfg_env):
    cfg_env.user.parent.mkdir(parents=True)
    cfg_env.user.write_bytes(b"[ui]\ntheme = '\xff'\n")
    assert error_of() == f"config error: {cfg_env.user}: not UTF-8 text (bad byte at offset 14)"


# --------------------------------------------------------------------------- bad values


def test_invalid_value_names_file_field_value_and_rule(cfg_env):
    write(cfg_env.user, "[defaults]\ngrace_seconds = 'abc'\n")
    assert error_of() == (
        f"config error: {cfg_env.user}: defaults.grace_seconds = 'abc': "
        "Input should be a valid number, unable to parse string as a number"
    )


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            "[defaults]\nmax_restarts = -1\n",
            "defaults.max_restarts = -1: Input should be greater than or equal to 0",
        ),
        (
            "[defaults]\nkeep_last_n = 0\n",
            "defaults.keep_last_n = 0: Input should be greater than or equal to 1",
        ),
        (
            "[ui]\nrefresh_seconds = 61\n",
            "ui.refresh_seconds = 61: Input should be less than or equal to 60",
        ),
        (
            "[runpod]\ncloud_type = 'CHEAP'\n",
            "runpod.cloud_type = 'CHEAP': Input should be 'SECURE', 'COMMUNITY' or 'ALL'",
        ),
        (
            "[alerts]\ndivergence_factor = 1\n",
            "alerts.divergence_factor = 1: Input should be greater than 1",
        ),
        (
            "[alerts]\ngpu_idle_percent = 101\n",
            "alerts.gpu_idle_percent = 101: Input should be less than or equal to 100",
        ),
        (
            "[alerts]\ngpu_idle_seconds = 0\n",
            "alerts.gpu_idle_seconds = 0: Input should be greater than 0",
        ),
        (
            "[defaults]\nusage_sample_seconds = -1\n",
            "defaults.usage_sample_seconds = -1: Input should be greater than or equal to 0",
        ),
        (
            "[aws.templates.x]\nvolume_gb = 0\n",
            "aws.templates.x.volume_gb = 0: Input should be greater than 0",
        ),
        ("defaults = 5\n", "defaults = 5: Input should be a valid dictionary or instance of"),
    ],
)
def test_invalid_values(cfg_env, toml, expected):
    write(cfg_env.user, toml)
    message = error_of()
    assert message.startswith(f"config error: {cfg_env.user}: {expected}")


def test_several_errors_report_the_first_and_count_the_rest(cfg_env):
    write(cfg_env.user, "[defaults]\ngrace_seconds = -1\nmax_restarts = -1\nbogus = 1\n")
    assert error_of() == (
        f"config error: {cfg_env.user}: defaults.grace_seconds = -1: "
        "Input should be greater than or equal to 0 (+2 more)"
    )


def test_long_values_are_truncated(cfg_env):
    write(cfg_env.user, f"[ui]\nrefresh_seconds = '{'x' * 200}'\n")
    message = error_of()
    assert f"ui.refresh_seconds = '{'x' * 56}...: Input should be a valid number" in message


def test_invalid_value_from_env_names_the_variable(cfg_env, monkeypatch):
    write(cfg_env.user, "[defaults]\ngrace_seconds = 3\n")
    monkeypatch.setenv("TRAINCTL_DEFAULTS__GRACE_SECONDS", "soon")
    assert error_of() == (
        "config error: TRAINCTL_DEFAULTS__GRACE_SECONDS: defaults.grace_seconds = 'soon': "
        "Input should be a valid number, unable to parse string as a number"
    )


def test_env_section_that_is_not_json(cfg_env, monkeypatch):
    monkeypatch.setenv("TRAINCTL_DEFAULTS", "fast")
    assert error_of() == (
        "config error: TRAINCTL_DEFAULTS = 'fast': expected a JSON object; "
        "set one key with TRAINCTL_DEFAULTS__KEY=value"
    )


def test_env_list_that_is_not_json(cfg_env, monkeypatch):
    monkeypatch.setenv("TRAINCTL_METRICS__PATTERNS", "loss")
    assert error_of() == (
        'config error: TRAINCTL_METRICS__PATTERNS = \'loss\': expected a JSON list, e.g. ["a", "b"]'
    )


def test_unknown_top_level_key(cfg_env):
    write(cfg_env.user, "[defaults]\n[colours]\nfg = 'red'\n")
    assert error_of() == (
        f"config error: {cfg_env.user}: unknown key 'colours' "
        "(allowed: defaults, ui, local, ssh, aws, runpod, slurm, metrics, alerts)"
    )


def test_unknown_nested_key_in_project_file(cfg_env):
    write(cfg_env.user, "[defaults]\ngrace_seconds = 3\n")
    write(cfg_env.project, "[defaults]\ngrace_secnds = 5\n")
    assert error_of() == (
        f"config error: {cfg_env.project}: unknown key 'defaults.grace_secnds' "
        f"(allowed: {DEFAULTS_KEYS})"
    )


def test_unknown_key_inside_a_named_table(cfg_env):
    write(cfg_env.user, "[ssh.hosts.gpu]\nhost = 'h'\nhostname = 'h'\n")
    assert error_of() == (
        f"config error: {cfg_env.user}: unknown key 'ssh.hosts.gpu.hostname' "
        "(allowed: host, user, port, identity_file, python, workdir, price_per_hour)"
    )


def test_unknown_nested_key_from_env_is_an_error(cfg_env, monkeypatch):
    # A var under a real section is clearly meant as a setting, so a typo is reported.
    monkeypatch.setenv("TRAINCTL_ALERTS__BELLS", "1")
    assert error_of() == (
        "config error: TRAINCTL_ALERTS__BELLS: unknown key 'alerts.bells' "
        "(allowed: stall_seconds, divergence_factor, gpu_idle_percent, gpu_idle_seconds, "
        "bell, desktop, webhook_url)"
    )


def test_metrics_pattern_that_does_not_compile(cfg_env):
    write(cfg_env.user, "[metrics]\npatterns = ['loss=(?P<loss>[0-9.]+', 'ok=(?P<ok>1)']\n")
    assert error_of() == (
        f"config error: {cfg_env.user}: metrics.patterns[0] = 'loss=(?P<loss>[0-9.]+': "
        "not a valid regex: missing ), unterminated subpattern at position 5"
    )


def test_metrics_pattern_without_named_group(cfg_env):
    write(cfg_env.user, "[metrics]\npatterns = ['ok=(?P<ok>1)', 'loss=([0-9.]+)']\n")
    assert error_of() == (
        f"config error: {cfg_env.user}: metrics.patterns[1] = 'loss=([0-9.]+)': "
        "regex needs at least one named group, e.g. (?P<loss>[0-9.eE+-]+)"
    )


@pytest.mark.parametrize(
    ("port", "rule"),
    [
        ("0", "Input should be greater than or equal to 1"),
        ("65536", "Input should be less than or equal to 65535"),
        ("'ssh'", "Input should be a valid integer, unable to parse string as an integer"),
    ],
)
def test_bad_ssh_port(cfg_env, port, rule):
    write(cfg_env.user, f"[ssh.hosts.gpu]\nhost = 'h'\nport = {port}\n")
    assert error_of() == f"config error: {cfg_env.user}: ssh.hosts.gpu.port = {port}: {rule}"


def test_ssh_host_without_host(cfg_env):
    write(cfg_env.user, "[ssh.hosts.gpu]\nuser = 'me'\n")
    assert error_of() == f"config error: {cfg_env.user}: missing required key 'ssh.hosts.gpu.host'"


def test_missing_host_is_blamed_on_the_file_that_added_the_table(cfg_env):
    write(cfg_env.user, "[ssh.hosts.gpu]\nhost = 'h'\n")
    write(cfg_env.project, "[ssh.hosts.gpu]\nport = 2\n[ssh.hosts.tpu]\nport = 3\n")
    assert error_of() == (
        f"config error: {cfg_env.project}: missing required key 'ssh.hosts.tpu.host'"
    )


def test_missing_host_from_env(cfg_env, monkeypatch):
    monkeypatch.setenv("TRAINCTL_SSH__HOSTS__BOX__PORT", "2222")
    assert error_of() == (
        "config error: TRAINCTL_SSH__HOSTS__BOX__PORT: missing required key 'ssh.hosts.box.host'"
    )


def test_bad_user_value_is_reported_even_when_project_overrides_it(cfg_env):
    # The user file is broken for every other project too, so say so now.
    write(cfg_env.user, "[defaults]\ngrace_seconds = 'x'\n")
    write(cfg_env.project, "[defaults]\ngrace_seconds = 1\n")
    assert error_of().startswith(f"config error: {cfg_env.user}: defaults.grace_seconds = 'x'")


def test_project_errors_are_reported_before_user_errors(cfg_env):
    write(cfg_env.user, "[ui]\ntheme = 1\n")
    write(cfg_env.project, "[ui]\nrefresh_seconds = 0\n")
    assert error_of().startswith(f"config error: {cfg_env.project}: ui.refresh_seconds = 0")


# --------------------------------------------------------------------------- secrets


def test_mask_secret():
    assert mask_secret(None) == ""
    assert mask_secret("") == ""
    assert mask_secret("short") == "****"
    assert mask_secret("abcdefghijk") == "****"  # 11 chars: too short to show a tail
    assert mask_secret("abcdefghijkl") == "****ijkl"
    assert mask_secret(SECRET) == "****7xyz"


def write_secrets(cfg_env) -> Config:
    write(
        cfg_env.user,
        f"""
        [runpod]
        api_key = "{SECRET}"
        [alerts]
        webhook_url = "{HOOK}"
        """,
    )
    return load_config()


def test_render_masks_secrets(cfg_env):
    cfg = write_secrets(cfg_env)
    text = render_config(cfg)
    assert SECRET not in text and HOOK not in text
    assert 'api_key = "****7xyz"' in text
    assert 'webhook_url = "****CRET"' in text
    assert SECRET not in repr(cfg) and SECRET not in str(cfg)


def test_render_shows_secrets_when_asked(cfg_env):
    text = render_config(write_secrets(cfg_env), mask_secrets=False)
    assert f'api_key = "{SECRET}"' in text
    assert f'webhook_url = "{HOOK}"' in text


def test_secret_in_an_error_message_is_masked(cfg_env):
    write(cfg_env.user, "[runpod]\napi_key = 123456789012345\n")
    message = error_of()
    assert "123456789012345" not in message
    assert message == (
        f"config error: {cfg_env.user}: runpod.api_key = '****2345': Input should be a valid string"
    )


def test_render_round_trips_through_toml(cfg_env):
    write(
        cfg_env.user,
        """
        [defaults]
        resume_template = "--resume \\"{checkpoint}\\""
        [ssh.hosts."gpu.box"]
        host = "gpu.example.com"
        [aws.templates.a10g]
        tags = { "team name" = "ml", env = "dev" }
        security_group_ids = ["sg-1", "sg-2"]
        max_price = 0.75
        [metrics]
        patterns = ['loss[=:]\\s*(?P<loss>[-+0-9.eE]+)', "it's (?P<it>\\\\d+)"]
        """,
    )
    write(cfg_env.project, f'[runpod]\napi_key = "{SECRET}"\n')
    cfg = load_config()
    text = render_config(cfg, mask_secrets=False)
    assert "# keep_last_n is not set" in text
    assert '[ssh.hosts."gpu.box"]' in text
    assert Config.model_validate(tomllib.loads(text)) == cfg


def test_render_of_defaults_is_valid_toml(cfg_env):
    cfg = load_config()
    assert Config.model_validate(tomllib.loads(render_config(cfg))) == cfg


# --------------------------------------------------------------------------- init + example


def test_init_writes_the_example_that_loads(cfg_env):
    path = init_config()
    assert path == cfg_env.user
    assert path.read_text(encoding="utf-8") == EXAMPLE_CONFIG
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600  # it may hold API keys
    cfg = load_config()
    assert cfg.defaults.grace_seconds == 30 and cfg.ui.theme == "textual-dark"


def test_init_refuses_to_overwrite(cfg_env):
    original = b"# mine\n[defaults]\ngrace_seconds = 7\n\xc3\xa9\n"
    cfg_env.user.parent.mkdir(parents=True)
    cfg_env.user.write_bytes(original)
    with pytest.raises(ConfigError) as info:
        init_config()
    assert str(info.value) == (
        f"config error: {cfg_env.user} already exists (edit it, or remove it first)"
    )
    assert cfg_env.user.read_bytes() == original


def test_init_to_an_explicit_path(cfg_env):
    target = cfg_env.tmp / "a" / "b" / "trainctl.toml"
    assert init_config(target) == target
    assert target.read_text(encoding="utf-8") == EXAMPLE_CONFIG
    assert not cfg_env.user.exists()


def test_init_when_parent_is_a_file(cfg_env):
    blocker = write(cfg_env.tmp / "blocker", "")
    with pytest.raises(ConfigError) as info:
        init_config(blocker / "config.toml")
    assert str(info.value).startswith(f"config error: cannot create {blocker}: ")


def uncomment_all(text: str) -> str:
    """Turn every '# key = value' and '# [table]' line of the example into a real one."""
    setting = re.compile(r"^# (\[[\w.-]+\]|[a-z_]+ = .*)$")
    return "\n".join(
        setting.sub(r"\1", line) if setting.match(line) else line for line in text.splitlines()
    )


def test_example_with_every_option_uncommented_loads(cfg_env):
    write(cfg_env.user, uncomment_all(EXAMPLE_CONFIG))
    cfg = load_config()
    assert cfg.defaults.resume_template == "--resume {checkpoint}"
    assert cfg.defaults.keep_last_n == 3
    assert cfg.ssh.hosts["gpu-box"].identity_file == "~/.ssh/id_ed25519"
    template = cfg.aws.templates["a10g"]
    assert template.spot is True and template.tags == {"team": "ml", "project": "demo"}
    assert cfg.runpod.api_key is not None
    assert cfg.alerts.webhook_url is not None
    assert len(cfg.metrics.compiled()) == 2


def test_example_documents_every_section_and_key():
    for table in ("defaults", "ui", "ssh", "aws", "runpod", "metrics", "alerts"):
        assert f"[{table}]" in EXAMPLE_CONFIG
    assert "[ssh.hosts." in EXAMPLE_CONFIG and "[aws.templates." in EXAMPLE_CONFIG
    models = [
        DefaultsConfig,
        UiConfig,
        SshHost,
        AwsConfig,
        AwsTemplate,
        RunpodConfig,
        MetricsConfig,
        AlertsConfig,
    ]
    for model in models:
        for key in model.model_fields:
            if key == "templates":  # a table, documented as [aws.templates.NAME]
                continue
            assert re.search(rf"^(# )?{key} = ", EXAMPLE_CONFIG, re.M), key


# --------------------------------------------------------------------------- imports


def test_config_does_not_import_ui_or_cloud_sdks():
    code = (
        "import sys, trainctl_tui.config.loader\n"
        "bad = [m for m in ('textual', 'rich', 'boto3', 'runpod') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == ""
