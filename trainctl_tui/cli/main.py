"""Command line: `trainctl` opens the TUI; every action also exists as a subcommand.

Imports stay lazy so `--version` and `sessions` start fast (no textual, boto3, runpod, pydantic).
"""

from __future__ import annotations

import sys

from .. import __version__
from ..core.errors import TrainctlError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING; importing typing would slow start-up
if TYPE_CHECKING:
    import argparse


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with `argv` naming a command, one with only that command's
    subparser filled in: building all of them costs a third of `trainctl sessions`."""
    wanted = command_word(argv)
    parser, built = _build_parser(wanted)
    if wanted and wanted not in built:  # not a command: the full list says so
        parser, _ = _build_parser(None)
    return parser


def command_word(argv: list[str] | None) -> str | None:
    """The command `argv` runs: its first word; "" when it runs none (the TUI, `--once`);
    None (every command) when help comes first."""
    for word in argv or []:
        if word in ("-h", "--help"):
            return None
        if not word.startswith("-"):
            return word
    return ""


class _SubsetOfCommands:
    """The subparsers action, passing on only the command that runs (all with None); the
    others get a stand-in that accepts their arguments and keeps nothing."""

    def __init__(self, commands, wanted: str | None, built: set[str]):
        self.commands, self.wanted, self.built = commands, wanted, built

    def add_parser(self, name: str, **kwargs):
        names = {name, *kwargs.get("aliases", ())}
        if self.wanted is not None and self.wanted not in names:
            return _NotBuilt()
        self.built.update(names)
        return self.commands.add_parser(name, **{"formatter_class": help_formatter(), **kwargs})


class _NotBuilt:
    def __getattr__(self, _name: str):
        return lambda *args, **kwargs: self


def help_formatter():
    """argparse's help formatter told the width (finding it imports shutil: slow start)."""
    import argparse
    from functools import partial

    from ..core.formatting import terminal_columns

    return partial(argparse.HelpFormatter, width=terminal_columns() - 2)


def _build_parser(wanted: str | None) -> tuple[argparse.ArgumentParser, set[str]]:
    """The parser with the subparser of `wanted` (of every command with None), and the names
    of the commands it has."""
    import argparse  # not at the top: `trainctl --version` answers without it

    parser = argparse.ArgumentParser(
        formatter_class=help_formatter(),
        prog="trainctl",
        description="Launch, watch, checkpoint and stop training runs. "
        "Without a command, opens the terminal UI.",
    )
    parser.add_argument("--version", action="version", version=f"trainctl {__version__}")
    parser.add_argument("--once", action="store_true",
                        help="print a snapshot of all sessions and exit")
    parser.add_argument("--json", action="store_true", help="with --once: print JSON")
    built: set[str] = set()
    commands = _SubsetOfCommands(parser.add_subparsers(dest="cmd", metavar="COMMAND"), wanted,
                                 built)

    demo = commands.add_parser("demo", help="launch the bundled toy trainer as a session")
    demo.add_argument("--once", action="store_true",
                      help="launch, print a snapshot and exit instead of following the log")
    demo.add_argument("--steps", type=int, help="training steps (default: a few minutes' worth)")
    demo.add_argument("--step-time", type=float, help="seconds per step")

    launch = commands.add_parser("launch", help="start a training command as a new session")
    launch.add_argument("--name", help="a name for the session (default: the script's name)")
    launch.add_argument("--cwd", help="working directory (default: the current one)")
    launch.add_argument("--provider", default="local", help="where to run (default: local)")
    launch.add_argument("--checkpoint-dir", help="where the training writes checkpoints")
    launch.add_argument("--resume-template",
                        help="arguments appended on restart, e.g. '--resume {checkpoint}'")
    launch.add_argument("--max-restarts", type=int, help="retries on a non-zero exit")
    launch.add_argument("--grace-seconds", type=float,
                        help="how long a stop waits after SIGTERM before SIGKILL")
    launch.add_argument("--keep-last", type=int, metavar="N",
                        help="keep only the newest N checkpoints (older ones go to the trash)")
    launch.add_argument("--budget", metavar="USD",
                        help="stop the run gracefully once it has cost this much (needs the "
                             "machine's price); 90%% raises an alert first")
    launch.add_argument("--max-hours", metavar="H",
                        help="stop the run gracefully after this many hours")
    launch.add_argument("--no-budget", action="store_true",
                        help="no budget or max hours, whatever [defaults] says")
    launch.add_argument("--dry-run", action="store_true",
                        help="print what would be submitted (a batch script) and start nothing")
    launch.add_argument("--env", action="append", default=[], metavar="K=V",
                        help="environment variable for the training (repeatable)")
    machine = launch.add_argument_group(
        "a new cloud machine (--provider aws, aws:TEMPLATE or runpod)")
    if not isinstance(launch, _NotBuilt):  # the backends' declarations: only for `launch`
        from .machine_flags import add_machine_flags

        add_machine_flags(machine, "launch")
    machine.add_argument("--spot", action="store_true", help="spot / interruptible")
    machine.add_argument("--on-demand", action="store_true",
                         help="on-demand even if the template says spot")
    launch.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")

    sessions = commands.add_parser("sessions", aliases=["ls"], help="list sessions")
    sessions.add_argument("--json", action="store_true", help="print JSON")
    sessions.add_argument("--all", action="store_true",
                          help=f"include every ended session, not only the {20} newest")

    stop = commands.add_parser("stop", help="stop a session gracefully (SIGTERM, grace, SIGKILL)")
    stop.add_argument("id")
    stop.add_argument("--force", action="store_true", help="SIGKILL now, without the grace")
    stop.add_argument("--no-wait", action="store_true", help="return once the stop is sent")

    resume = commands.add_parser("resume", help="start a new attempt from a checkpoint")
    resume.add_argument("id")
    origin = resume.add_mutually_exclusive_group()
    origin.add_argument("--from", dest="checkpoint",
                        help="checkpoint to resume from (default: the newest sound one)")
    origin.add_argument("--scratch", action="store_true",
                        help="start over without a checkpoint")
    resume.add_argument("--trust", action="store_true",
                        help="with --from: accept that checkpoint's unknown pickle globals "
                             "for this session (they may run code when loaded)")
    resume.add_argument("--budget", metavar="USD",
                        help="a new budget for the run (needed when its budget stopped it)")
    resume.add_argument("--max-hours", metavar="H", help="a new limit of hours for the run")
    resume.add_argument("--no-budget", action="store_true",
                        help="resume without a budget or max hours")

    logs = commands.add_parser("logs", help="print a session's training log")
    logs.add_argument("id")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=int, default=50, help="lines to show (default 50)")
    logs.add_argument("--node", type=int, metavar="R", help="node R's log of a multi-node run "
                      "(default: rank 0's, the session's)")

    rm = commands.add_parser("rm", help="forget an ended session and delete its folder")
    rm.add_argument("id")

    pull = commands.add_parser("pull", help="download a remote session's checkpoint")
    pull.add_argument("id", help="a session, or an s3://BUCKET/KEY checkpoint (or prefix: its "
                      "newest sound checkpoint)")
    pull.add_argument("--checkpoint", help="its path or name on the host (default: the newest)")
    pull.add_argument("--to", help="local directory (default: ./NAME-ID)")

    hosts = commands.add_parser("hosts", help="SSH hosts: reachable?, load, GPUs, sessions")
    hosts.add_argument("--json", action="store_true", help="print JSON")

    watch = commands.add_parser("watch", help="open the session view on any log file")
    watch.add_argument("path", help="a training log (need not be from trainctl)")

    metrics = commands.add_parser("metrics", help="the metric series found in a session's log")
    metrics.add_argument("target", help="session id/name, a log file, or "
                         "ssh://[user@]host[:port]/path/to/train.log")
    metrics.add_argument("--json", action="store_true", help="every point, as JSON")

    if wanted is None or wanted == "compare":  # its module only when it may run
        from .compare import add_parser as add_compare

        add_compare(commands)

    checkpoints = commands.add_parser(
        "checkpoints", help="list a session's (or a directory's) checkpoints; prune them",
        description="trainctl checkpoints DIR|ID [--json]  |  "
        "trainctl checkpoints prune DIR|ID --keep-last N [--keep-best METRIC] [--dry-run]  "
        "(DIR may be s3://BUCKET/PREFIX/)")
    checkpoints.add_argument("words", nargs="+", metavar="[prune] DIR|ID")
    checkpoints.add_argument("--json", action="store_true", help="print JSON")
    checkpoints.add_argument("--ui", action="store_true",
                             help="open the checkpoints screen of the terminal UI")
    checkpoints.add_argument("--keep-last", type=int, metavar="N", help="prune: keep the newest N")
    checkpoints.add_argument("--keep-best", metavar="METRIC",
                             help="prune: also keep the best by this metric (e.g. val_loss)")
    checkpoints.add_argument("--mode", choices=["min", "max"],
                             help="prune: whether the best METRIC is the lowest or highest")
    checkpoints.add_argument("--dry-run", action="store_true",
                             help="prune: show what would go, change nothing")
    checkpoints.add_argument("--purge", action="store_true",
                             help="prune: delete instead of moving to the trash "
                             "(required for s3://: S3 has no trash)")

    checkpoint = commands.add_parser("checkpoint", help="what is inside one checkpoint")
    checkpoint.add_argument("action", choices=["info"])
    checkpoint.add_argument("path", help="a checkpoint file or directory")
    checkpoint.add_argument("--json", action="store_true", help="print JSON")
    checkpoint.add_argument("--deep", action="store_true",
                            help="also check every byte (zip CRCs, safetensors ranges)")

    config = commands.add_parser("config", help="where the config is, what it says, an example")
    config.add_argument("action", choices=["path", "show", "init"])

    # Hidden (no help): the detached half of an auto-resume, started by a refresh.
    recover = commands.add_parser("_recover")
    recover.add_argument("id")
    recover.add_argument("--lock-fd", type=int, required=True)
    commands.add_parser("_watch").add_argument("id")  # hidden: app/watching.py

    if wanted is None or (wanted and wanted not in built):  # the cloud verbs; all for help
        from . import cloud as cli_cloud

        cli_cloud.add_parsers(commands)
    return parser, built


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv) == ["--version"]:
        print(f"trainctl {__version__}")  # before argparse: asked for many times a day
        return 0
    args = build_parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    error = None
    try:
        return run(args)
    except TrainctlError as exc:
        error = str(exc)
        print(error, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `trainctl logs x | head`
        return 0
    finally:
        note_unsaved(said=error)


def run(args: argparse.Namespace) -> int:
    if args.cmd is None:
        return cmd_snapshot(args) if args.once or args.json else run_tui()
    handler = COMMANDS.get(args.cmd)
    if handler is None:
        from . import cloud as cli_cloud

        handler = cli_cloud.COMMANDS[args.cmd]
    return handler(args)


_services: list = []  # the ones this command made, for note_unsaved


def _service():
    from ..app.service import Service

    service = Service()
    _services.append(service)
    return service


def note_unsaved(said: str | None = None) -> None:
    """One line when changes could not be saved (disk full, read-only home); what was shown
    came from the session folders. Not again when the error just printed (`said`) says it."""
    reasons = {service.unsaved for service in _services if service.unsaved} - {said}
    for reason in reasons:
        print(f"note: not saved: {reason}", file=sys.stderr)


def _run(coroutine, *, local: bool = False):
    """Run a service coroutine; `local` (it never waits on a network) skips asyncio."""
    from ..core import aio

    return aio.run(coroutine, local=local)


def run_tui(**kwargs) -> int:
    if not sys.stdout.isatty():
        raise TrainctlError("the terminal UI needs a terminal; use trainctl --once for a "
                            "snapshot")
    from ..ui.app import make_app

    make_app(**kwargs).run()
    return 0


def cmd_snapshot(args) -> int:
    from ..render.snapshot import overview_json, render_overview

    service = _service()
    local = service.is_local()
    rows = _run(service.overview(), local=local)
    if args.json:
        print(overview_json(rows))
    else:
        render_overview(rows, sys.stdout)
    return 0


def cmd_sessions(args) -> int:
    from ..render.snapshot import render_sessions, sessions_json

    service = _service()
    local = service.is_local()
    sessions = _run(service.list_sessions(show_all=args.all), local=local)
    if args.json:
        from ..app.costs import figures_of
        from ..app.gpu_usage import session_usage

        print(sessions_json(sessions, {s.id: figures_of(s) for s in sessions},
                            {s.id: session_usage(s) for s in sessions}))
    else:
        render_sessions(sessions, sys.stdout)
    return 0


def cmd_launch(args) -> int:
    from ..app.costs import parse_dollars, parse_hours
    from ..app.service import LaunchRequest
    from .machine_flags import machine_values

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    limits = limit_values(args, parse_dollars, parse_hours)
    request = LaunchRequest(
        command=command, cwd=args.cwd, name=args.name, provider=args.provider,
        checkpoint_dir=args.checkpoint_dir, resume_template=args.resume_template,
        max_restarts=args.max_restarts, grace_seconds=args.grace_seconds,
        keep_last_n=args.keep_last, env=parse_env(args.env), machine=machine_request(args),
        backend_options=machine_values(args, "launch", fills="spec"), **run_values(args),
        **limits,
    )
    if args.dry_run:
        print(_run(_service().dry_run(request)), end="")
        return 0

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    session = _run(_service().launch(request, progress))
    print_launched(session)
    return 0


def machine_request(args):
    """--type/--spot/--gpu... as the CreateRequest of the machine to create, or None."""
    from ..app.machines import either_provider, flags_given, new_machine_cloud, request_from_flags
    from .machine_flags import machine_values

    given = machine_values(args, "launch")
    if not flags_given(given) and not args.spot and not args.on_demand:
        return None
    cloud = new_machine_cloud(args.provider)
    if cloud is None:
        raise TrainctlError("--template, --type, --gpu, --spot ... are for a new cloud machine:"
                            f" use them with {either_provider()}")
    return request_from_flags(cloud, given, spot=args.spot, on_demand=args.on_demand)


def run_values(args) -> dict[str, object]:
    """{LaunchRequest field: value} of the backends' flags that set the run, not the machine
    (e.g. --s3-prefix)."""
    from .machine_flags import machine_values

    return machine_values(args, "launch", fills="run")


def print_launched(session) -> None:
    from ..core.formatting import visible

    print(f"launched {visible(session.name)} as session {session.id} ({session.status}, "
          f"runner pid {session.runner_pid})")
    print(f"  follow:  trainctl logs {session.id} -f")
    print(f"  stop:    trainctl stop {session.id}")
    print(session.id)


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise TrainctlError(f"--env expects K=V, got {env_pair_shown(pair)}")
        env[key] = value
    return env


def env_pair_shown(pair: str) -> str:
    """A malformed --env in an error, without what may be its value (NAME:secret, =secret)."""
    import re

    name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", pair)
    if name and name.group() == pair:
        return f"'{pair}'"
    if name:
        return f"'{name.group()}' followed by '{pair[name.end()]}' (the rest is not shown)"
    return "no name before '=' (the value is not shown)" if pair.startswith("=") else \
        "something that is not a name (not shown)"


def cmd_demo(args) -> int:
    from ..app.service import demo_request

    service = _service()
    session = _run(service.launch(demo_request(steps=args.steps,
                                                      step_time=args.step_time)))
    print_launched(session)
    if args.once:
        import time
        from types import SimpleNamespace

        time.sleep(2)  # let the first losses appear in the snapshot
        return cmd_snapshot(SimpleNamespace(json=False))
    if not sys.stdout.isatty():
        print("no terminal: following the log instead of opening the UI (Ctrl-C detaches)",
              file=sys.stderr)
        return follow_log(service, session.id, 20)
    return run_tui(open_session=session.id)


def cmd_stop(args) -> int:
    service = _service()
    local = service.is_local(args.id)  # an unknown id fails here, before any coroutine
    session = _run(service.stop(args.id, force=args.force, wait=not args.no_wait,
                                note=print_note), local=local)
    from ..render.snapshot import outcome
    how = outcome(session)
    print(f"session {session.id}: {session.status}" + (f" ({how})" if how else ""))
    return 0


def limit_values(args, parse_dollars, parse_hours) -> dict:
    """--budget, --max-hours, --no-budget as checked values (one line when malformed)."""
    if args.no_budget and (args.budget is not None or args.max_hours is not None):
        raise TrainctlError("--no-budget cannot go with --budget or --max-hours")
    return {"budget": parse_dollars(args.budget), "max_hours": parse_hours(args.max_hours),
            "no_budget": args.no_budget}


def cmd_resume(args) -> int:
    from ..app.costs import parse_dollars, parse_hours

    limits = limit_values(args, parse_dollars, parse_hours)
    session = _run(_service().resume(args.id, from_checkpoint=args.checkpoint,
                                     scratch=args.scratch, trust=args.trust, note=print,
                                     **limits))
    if session.status.value == "pending":  # its new runner has not started yet (a queue)
        print(f"resumed session {session.id}: {session.detail or 'waiting for its runner'}")
        print(session.id)
        return 0
    last = session.attempts[-1] if session.attempts else None
    source = last.resumed_from if last and last.resumed_from else "scratch (no checkpoint)"
    print(f"resumed session {session.id} as attempt {session.attempt} from {source}")
    print(session.id)
    return 0


MAX_LOG_LINES = 10_000_000


def cmd_logs(args) -> int:
    if not 0 <= args.lines <= MAX_LOG_LINES:
        raise TrainctlError(f"-n takes a number of lines from 0 to {MAX_LOG_LINES:,}, "
                            f"not {args.lines}")
    service = _service()
    local = service.is_local(args.id)
    session = _run(service.get(args.id), local=local)
    require_session_folder(session)
    if not args.follow:
        from ..monitor.tail import last_lines

        for line in last_lines(service.log_path(session, args.node), args.lines):
            print(line)
        print_container_log(session, args.lines)
        return 0
    return follow_log(service, session.id, args.lines, args.node)


def require_session_folder(session) -> None:
    from ..app.log_sources import require_session_folder as check

    check(session)


def print_container_log(session, lines: int) -> None:
    """A pod that ssh cannot reach: what RunPod's logs endpoint last showed of it."""
    from pathlib import Path

    from ..core.models import Status
    from ..monitor.tail import last_lines

    path = Path(session.session_dir) / "container.log"
    if session.status is not Status.UNREACHABLE or not path.exists():
        return
    print(f"[trainctl] {session.host or 'the pod'} is not reachable over ssh; its container "
          f"log ({path}):", file=sys.stderr)
    for line in last_lines(path, lines):
        print(line)


def follow_log(service, session_id: str, lines: int, node: int | None = None) -> int:
    """Print the last lines, then new ones until the session ends (Ctrl-C detaches)."""
    import time

    from ..monitor.tail import follow, last_lines

    local = service.is_local(session_id)
    session = _run(service.get(session_id), local=local)
    path = service.log_path(session, node)
    size = path.stat().st_size if path.exists() else 0
    for line in last_lines(path, lines, end=size):
        print(line)
    checked = [0.0]

    def ended() -> bool:
        if time.monotonic() - checked[0] < 1.0:
            return False
        checked[0] = time.monotonic()
        return not _run(service.get(session_id), local=local).status.active

    def note(text: str) -> None:
        print(f"[trainctl] {text}", file=sys.stderr)

    for line in follow(path, offset=size, until=ended, on_note=note):
        print(line, flush=True)
    final = _run(service.get(session_id), local=local)
    print(f"[trainctl] session {final.id} {final.status}", file=sys.stderr)
    return 0


def cmd_rm(args) -> int:
    session = _run(_service().remove(args.id))
    kept = f"; checkpoints kept in {session.checkpoint_dir}" if session.checkpoint_dir else ""
    from ..core.formatting import visible

    print(f"removed session {session.id} ({visible(session.name)}){visible(kept)}")
    return 0


def cmd_pull(args) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    # The bar appears with the first byte, so an error before that stays one clean line.
    bar = Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    task = None

    def progress(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("pulling", total=total)
        bar.update(task, completed=done, total=total)

    try:
        remote, local, size = _run(_service().pull(args.id, checkpoint=args.checkpoint,
                                                   to=args.to, progress=progress,
                                                   note=print_note))
    finally:
        if task is not None:
            bar.stop()
    print(f"pulled {remote} ({size:,} bytes) to {local}")
    return 0


def print_note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr, flush=True)


def cmd_hosts(args) -> int:
    infos = _run(_service().hosts())
    if args.json:
        import json

        print(json.dumps({"version": 1, "hosts": [info.to_json() for info in infos]}, indent=2))
    else:
        from ..render.snapshot import render_hosts

        render_hosts(infos, sys.stdout)
    return 0


def cmd_watch(args) -> int:
    from pathlib import Path

    service = _service()
    if service.is_log_url(args.path):
        return watch_remote(service, args.path)
    path = Path(args.path).expanduser()
    if path.is_dir():
        raise TrainctlError(f"{path} is a directory; give the log file inside it")
    if not path.exists():
        raise TrainctlError(f"no such log file: {path}")
    return run_tui(watch_path=path.resolve())


def watch_remote(service, url: str) -> int:
    """ssh://[user@]host[:port]/path/to/train.log: a local copy followed by offset."""
    mirror = service.log_mirror(url)
    _run(mirror.sync())  # unreachable host or missing file: one line, before any UI
    return run_tui(watch_path=mirror.local, remote_log=mirror, watch_label=url)


def cmd_metrics(args) -> int:
    from ..monitor.index import load_metrics
    from ..render.snapshot import render_metrics

    service = _service()
    path, label = metrics_source(service, args.target)
    progress = ParseProgress(show=not sys.stdout.isatty())
    try:
        metrics = load_metrics(path, service.config.metrics.patterns, progress=progress)
    finally:
        progress.stop()
    if args.json:
        import json

        print(json.dumps({"version": 1, "log": label, **metrics.to_json(all_points=True)}))
    else:
        render_metrics(metrics, label, sys.stdout)
    return 0


class ParseProgress:
    """A bar on stderr for a parse that takes more than a second (a big log's first open),
    when stdout goes to a file or a pipe; nothing for a quick one."""

    DELAY = 1.0

    def __init__(self, show: bool) -> None:
        import time

        self.show, self.started, self.bar, self.task = show, time.monotonic(), None, None

    def __call__(self, done: int, total: int) -> None:
        import time

        if not self.show or time.monotonic() - self.started < self.DELAY:
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

            self.bar = Progress("parsing the log", BarColumn(), DownloadColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True),
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task("parse", total=total)
        self.bar.update(self.task, completed=done, total=total)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def metrics_source(service, target: str):
    """(local file, name to show) of what `trainctl metrics` reads: every source
    `trainctl watch` takes, with its errors (a log file, ssh://[user@]host[:port]/path), or
    a session id/name."""
    from ..app.log_sources import log_source

    source = _run(log_source(service, target))
    return source.path, source.label


def cmd_compare(args) -> int:
    from .compare import print_comparison

    return print_comparison(_service(), args)


def cmd_checkpoints(args) -> int:
    service = _service()
    words = args.words
    if words[0] == "prune" and len(words) == 2:
        return prune_checkpoints(service, words[1], args)
    if len(words) != 1:
        raise TrainctlError("usage: trainctl checkpoints DIR|ID  or  "
                            "trainctl checkpoints prune DIR|ID --keep-last N")
    if args.ui:
        _run(service.checkpoint_dir(words[0]))  # a bad target fails here, in one line
        return run_tui(checkpoints=words[0])
    directory, session, entries, rows = _run(service.checkpoints(words[0]))
    if args.json:
        import json

        print(json.dumps({"version": 1, "directory": directory,
                          "session": session.id if session else None,
                          "checkpoints": [row.to_json() for row in rows],
                          "skipped": [{"path": p, "reason": r} for p, r in entries.skipped]},
                         indent=2))
        return 0
    from ..render.snapshot import render_checkpoints

    render_checkpoints(directory, rows, entries.skipped, sys.stdout)
    return 0


def prune_checkpoints(service, target: str, args) -> int:
    if args.keep_last is None:
        raise TrainctlError("prune needs --keep-last N (how many of the newest to keep)")
    plan = _run(service.plan_prune(target, keep_last=args.keep_last,
                                   keep_best=args.keep_best, mode=args.mode))
    print(plan.summary())
    if args.dry_run or not plan.delete:
        print("dry run: nothing was changed" if args.dry_run else "nothing to prune")
        return 0
    result = service.apply_prune(plan, purge=args.purge)
    where = "deleted" if args.purge else "moved to the trash"
    for path in result:
        target_path = result.moved_to.get(path)
        print(f"{where}: {path}" + (f" -> {target_path}" if target_path else ""))
    for path, reason in result.skipped:
        print(f"skipped: {path} ({reason})")
    return 0


def cmd_checkpoint(args) -> int:
    if args.deep and args.path[:5].lower() == "s3://":
        print("note: --deep reads every byte of the checkpoint from S3 (a download)",
              file=sys.stderr, flush=True)
    info = _service().checkpoint_info(args.path, deep=args.deep)
    if args.json:
        import json

        print(json.dumps({"version": 1, **info.to_json()}, indent=2))
    else:
        from ..render.snapshot import render_checkpoint_info

        render_checkpoint_info(info, sys.stdout)
    return 0 if info.status == "ok" else 1


def cmd_recover(args) -> int:
    """Resume an interrupted session with the lock a refresh handed over (recovery.py)."""
    from ..app import recovery

    recovery.wait_for_go()
    recovery.log_to_stderr()
    _run(_service().recover(args.id, args.lock_fd))
    return 0


def cmd_watch_nodes(args) -> int:  # refreshes a session whose nodes heal until it ends
    from ..app.watching import watch
    return _run(watch(_service(), args.id)) or 0


def cmd_config(args) -> int:
    from ..config import loader as config

    if args.action == "path":
        for label, path, exists in config.config_sources():
            print(f"{label}: {path}" + ("" if exists else " (not present)"))
        from ..core.paths import state_dir

        print(f"state: {state_dir()}")
    elif args.action == "show":
        print(config.render_config(config.load_config()), end="")
    else:
        path = config.init_config()
        print(f"wrote an example config to {path}")
    return 0


COMMANDS = {
    "demo": cmd_demo,
    "launch": cmd_launch,
    "sessions": cmd_sessions,
    "ls": cmd_sessions,
    "stop": cmd_stop,
    "resume": cmd_resume,
    "logs": cmd_logs,
    "rm": cmd_rm,
    "config": cmd_config,
    "watch": cmd_watch,
    "hosts": cmd_hosts,
    "pull": cmd_pull,
    "checkpoints": cmd_checkpoints,
    "checkpoint": cmd_checkpoint,
    "metrics": cmd_metrics,
    "compare": cmd_compare,
    "_recover": cmd_recover,
    "_watch": cmd_watch_nodes,
}
