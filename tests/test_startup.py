"""The commands people run many times a day start without the heavy modules (issue 11), and
what makes that possible keeps every promise: a bad config is still refused in one line, the
config cache holds no secret, a local action never needs an event loop."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT, run_cli
from test_cli import launch, session_json, wait_for

from trainctl_tui.app.service import Service
from trainctl_tui.core import aio
from trainctl_tui.core.models import Session, Status
from trainctl_tui.render.plain_table import cell_width, render_table, wrap
from trainctl_tui.store import Store

NEVER = ("pydantic", "pydantic_settings", "asyncio", "ssl", "textual", "boto3", "botocore",
         "runpod", "plotext")
RICH_CONSOLE = ("rich.console", "rich.table")


def imported_by(*argv: str) -> tuple[set[str], subprocess.CompletedProcess]:
    """The modules `trainctl ARGV` imported, run the way the console script runs it."""
    probe = (
        "import sys\n"
        f"sys.argv = ['trainctl', *{list(argv)!r}]\n"
        "from trainctl_tui.cli.main import main\n"
        "try:\n    code = main()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print('MODULES', ' '.join(sorted(sys.modules)), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    line = next(x for x in result.stderr.splitlines() if x.startswith("MODULES "))
    return set(line.split()[1:]), result


def test_version_skips_even_argparse():
    modules, result = imported_by("--version")
    assert result.stdout == "trainctl 0.1.0\n"
    assert "argparse" not in modules
    assert not modules & set(NEVER)


def test_sessions_logs_and_stop_import_nothing_heavy(trainctl_home, tmp_path):
    script = tmp_path / "slow.py"
    script.write_text("import time\nfor i in range(600):\n    print(f'step {i} loss 0.5', "
                      "flush=True)\n    time.sleep(0.1)\n")
    session_id = launch("--name", "slow", "--", sys.executable, str(script))
    wait_for(lambda: "step 2 " in run_cli("logs", session_id).stdout)
    for argv in (["sessions"], ["sessions", "--json"], ["ls", "--all"],
                 ["logs", session_id, "-n", "5"]):
        modules, result = imported_by(*argv)
        assert result.returncode == 0, result.stderr
        assert not modules & {*NEVER, *RICH_CONSOLE}, (argv, modules & {*NEVER, *RICH_CONSOLE})
    assert "slow" in imported_by("sessions")[1].stdout
    modules, result = imported_by("stop", session_id)  # waits for the real end of the run
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"session {session_id}: stopped")
    assert not modules & {*NEVER, *RICH_CONSOLE}, modules & {*NEVER, *RICH_CONSOLE}
    assert session_json(session_id)["status"] == "stopped"


def test_once_validates_the_config_once_then_reads_the_validated_cache(trainctl_home, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[metrics]\npatterns = ["acc=(?P<accuracy>[0-9.]+)"]\n'
                      '[alerts]\nstall_seconds = 90\n')
    session_id = launch("--", sys.executable, "-c", "print('acc=0.25'); print('acc=0.75')")
    wait_for(lambda: session_json(session_id)["status"] == "succeeded")
    first, result = imported_by("--once", "--json")
    assert result.returncode == 0, result.stderr
    assert "pydantic" in first  # nothing validated yet
    again, result = imported_by("--once", "--json")
    assert result.returncode == 0, result.stderr
    assert not again & set(NEVER), again & set(NEVER)
    row = json.loads(result.stdout)["sessions"][0]
    assert row["metrics"]["accuracy"]["last"] == 0.75  # the cached pattern is applied
    cache = json.loads((trainctl_home / "cache" / "config.json").read_text())
    assert cache["sections"]["alerts"]["stall_seconds"] == 90.0


@pytest.mark.parametrize("change", ["file", "env"])
def test_a_config_changed_after_caching_is_validated_again(trainctl_home, tmp_path, change):
    config = tmp_path / "config.toml"
    config.write_text("[alerts]\nstall_seconds = 90\n")
    assert run_cli("--once").returncode == 0
    assert (trainctl_home / "cache" / "config.json").exists()
    env = None
    if change == "file":
        config.write_text("[alerts]\nstall_seconds = -5\n")
        where = str(config)
    else:
        env = {"TRAINCTL_ALERTS__STALL_SECONDS": "-5"}
        where = "TRAINCTL_ALERTS__STALL_SECONDS"
    result = run_cli("--once", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"config error: {where}")
    assert "stall_seconds" in result.stderr and "greater than 0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_a_damaged_cache_is_ignored_and_rewritten(trainctl_home, tmp_path):
    (tmp_path / "config.toml").write_text("[alerts]\nstall_seconds = 90\n")
    cache = trainctl_home / "cache" / "config.json"
    cache.parent.mkdir(parents=True)
    cache.write_text('{"key": "')
    result = run_cli("--once")
    assert result.returncode == 0, result.stderr
    assert json.loads(cache.read_text())["sections"]["alerts"]["stall_seconds"] == 90.0


def test_the_config_cache_holds_no_secret(trainctl_home, tmp_path):
    (tmp_path / "config.toml").write_text(
        '[alerts]\nwebhook_url = "https://hooks.example.com/T000/very-secret-token"\n')
    assert run_cli("--once").returncode == 0
    text = (trainctl_home / "cache" / "config.json").read_text()
    assert "very-secret-token" not in text
    assert "webhook_url" not in json.loads(text)["sections"]["alerts"]


def test_remote_sessions_still_get_an_event_loop(trainctl_home):
    with Store(trainctl_home / "trainctl.db") as store:
        for provider in ("local", "ssh:gpu-box"):
            store.insert(Session(id="", name=provider, provider=provider, command=["x"],
                                 cwd="/", session_dir=str(trainctl_home / provider),
                                 status=Status.RUNNING, created=time.time()))
        service = Service(store=store)
        local, remote = (s.id for s in sorted(store.list(), key=lambda s: s.name))
        assert service.is_local(local) is True
        assert service.is_local(remote) is False
        assert service.is_local() is False  # a refresh of every active one reaches the host


def test_aio_run_drives_local_work_without_asyncio():
    slept = []

    async def work():
        started = time.monotonic()
        await aio.sleep(0.05)
        slept.append(time.monotonic() - started)
        return await aio.gather(double(1), double(2))

    async def double(x):
        return 2 * x

    assert aio.run(work(), local=True) == [2, 4]
    assert slept[0] >= 0.05
    assert aio.run(work()) == [2, 4]  # the same coroutine under asyncio


def test_aio_run_refuses_a_coroutine_that_needs_an_event_loop():
    import asyncio

    async def needs_loop():
        await asyncio.get_running_loop().create_future()

    with pytest.raises(RuntimeError, match="no running event loop"):
        aio.run(needs_loop(), local=True)


def test_plain_table_aligns_wraps_the_last_column_and_shrinks_names():
    out = io.StringIO()
    render_table(("ID", "NAME", "DETAIL"),
                 [("a1", "a rather long session name", "runner pid 4242 is gone after a while"),
                  ("b2", "短い名前", "ok")], out, shrink=(1,), width=40)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["ID", "NAME", "DETAIL"]
    assert all(cell_width(line) <= 40 for line in lines), lines
    assert lines[1:] == ["a1  a rather long ses…  runner pid 4242",
                         "                        is gone after a",
                         "                        while",
                         "b2  短い名前" + " " * 12 + "ok"]
    assert "\x1b" not in out.getvalue()  # not a terminal: no colour


def test_plain_table_piped_keeps_one_line_per_row(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    out = io.StringIO()
    render_table(("ID", "DETAIL"), [("a1", "x " * 100)], out)
    assert len(out.getvalue().splitlines()) == 2


def test_wrap_cuts_words_at_spaces_and_long_words_anywhere():
    assert wrap("stopped by SIGTERM", 10) == ["stopped by", "SIGTERM"]
    assert wrap("abcdefghij", 4) == ["abcd", "efgh", "ij"]
