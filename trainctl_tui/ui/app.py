"""The Textual app: screens, the actions every screen shares, and the command palette.

Every action calls the same Service function as its CLI twin, through the Backend (threads).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from ..app.costs import figures_of
from ..app.service import Service, SessionOverview
from ..core.errors import TrainctlError
from .backend import Backend
from .screens.checkpoints import CheckpointsScreen
from .screens.confirm import ConfirmScreen
from .screens.help import HelpScreen
from .screens.instances import InstancesScreen
from .screens.launch import LaunchScreen
from .screens.resume import SCRATCH, ResumeScreen
from .screens.session import SessionScreen
from .screens.sessions import SessionsScreen


def styles_path() -> Path:
    """styles/ ships inside the wheel as trainctl_tui/styles; in a checkout it is ../styles."""
    packaged = Path(__file__).resolve().parent.parent / "styles"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "styles"


class TrainctlApp(App):
    CSS_PATH = str(styles_path() / "app.tcss")
    TITLE = "trainctl"
    BINDINGS = [
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]
    # Adds -narrow / -wide classes to screens; the stylesheet uses them for 80 columns.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]

    def __init__(self, *, service_factory=Service, open_session: str | None = None,
                 watch_path: Path | None = None, remote_log=None, watch_label: str | None = None,
                 checkpoints: str | None = None,
                 refresh_seconds: float = 1.0,
                 theme: str | None = None, notifier=None):
        super().__init__()
        self.backend = Backend(service_factory)
        self.open_session_id = open_session
        self.watch_path = watch_path
        self.remote_log = remote_log  # providers.ssh.RemoteLogMirror feeding watch_path
        self.watch_label = watch_label  # what the user asked to watch, e.g. an ssh:// URL
        self.checkpoints_target = checkpoints
        self.refresh_seconds = refresh_seconds
        self.notifier = notifier
        self.started_at = time.time()
        if theme and theme in self.available_themes:
            self.theme = theme

    def on_mount(self) -> None:
        if self.checkpoints_target is not None:
            self.push_screen(SessionsScreen())
            self.push_screen(CheckpointsScreen(self.checkpoints_target))
            return
        if self.watch_path is not None:
            self.push_screen(SessionScreen(log_path=self.watch_path, label=self.watch_label))
            if self.remote_log is not None:
                self.mirror_remote_log()
            return
        self.push_screen(SessionsScreen())
        if self.open_session_id:
            self.open_session(self.open_session_id)

    @work(exclusive=True, group="remote-log")
    async def mirror_remote_log(self) -> None:
        """`trainctl watch ssh://...`: extend the local copy; back off while unreachable."""
        import asyncio

        from ..core.errors import TrainctlError

        delay, last_error = 1.0, None
        while True:
            try:
                added = await self.remote_log.sync()
                delay, last_error = (0.05 if added else 1.0), None
            except TrainctlError as exc:  # the host or the file: one line, retried
                if str(exc) != last_error:
                    self.notify(f"{exc} (retrying)", severity="warning")
                last_error, delay = str(exc), min(delay * 2, 30.0)
            await asyncio.sleep(delay)

    # -- navigation ---------------------------------------------------------------------

    def open_session(self, session_id: str) -> None:
        self.push_screen(SessionScreen(session_id=session_id))

    def open_compare(self, session_ids: list[str]) -> None:
        from .screens.compare_screen import CompareScreen

        self.push_screen(CompareScreen(session_ids))

    def switch_to_sessions(self) -> None:
        """Back from a session opened directly (e.g. by `trainctl watch`)."""
        if self.watch_path is not None:
            self.exit()
            return
        self.pop_screen()

    def selected_session_id(self) -> str | None:
        return getattr(self.screen, "selected_id", None)

    # -- actions shared by the screens --------------------------------------------------

    def action_help(self) -> None:
        screen = self.screen
        keys = list(getattr(screen, "HELP_KEYS", []))
        listed = {key for key, _ in keys}
        if "ctrl+p" not in listed:
            keys.append(("ctrl+p", "command palette: every action by name"))
        if "q" not in listed and "q" in screen.active_bindings:  # not every screen quits
            keys.append(("q", "quit (runs keep going)"))
        self.push_screen(HelpScreen(f"{getattr(screen, 'HELP_TITLE', 'trainctl')} keys", keys))

    def action_launch(self) -> None:
        if self.watch_path is not None:
            self.notify("launching needs the sessions view (run trainctl)", severity="warning")
            return

        def launched(session_id: str | None) -> None:
            if session_id:
                self.notify(f"launched session {session_id}")
                self.open_session(session_id)

        self.launch_form(launched)

    @work(group="actions")
    async def launch_form(self, launched) -> None:
        # This machine, every configured SSH host, and a new machine on each cloud set up.
        providers, details, spot = await self.backend.run(launch_places)
        self.push_screen(LaunchScreen(providers, os.getcwd(), details, spot), launched)

    def action_instances(self) -> None:
        if not isinstance(self.screen, InstancesScreen):
            self.push_screen(InstancesScreen())

    def action_watch(self) -> None:
        """Follow any log, local or ssh://, in a session screen (like `trainctl watch`)."""
        from .screens.watch_prompt import WatchPrompt

        def chosen(result) -> None:
            if result is None:
                return
            path, mirror, label = result
            self.push_screen(SessionScreen(log_path=path, label=label))
            if mirror is not None:
                self.remote_log = mirror
                self.mirror_remote_log()

        self.push_screen(WatchPrompt(), chosen)

    def action_checkpoints(self) -> None:
        session_id = self.selected_session_id()
        if session_id is None:
            self.notify("no session selected", severity="warning")
            return
        self.push_screen(CheckpointsScreen(session_id, session_id=session_id))

    @work(group="actions")
    async def action_stop(self) -> None:
        await self._stop(force=False)

    @work(group="actions")
    async def action_kill(self) -> None:
        await self._stop(force=True)

    async def _stop(self, *, force: bool) -> None:
        session = await self._selected_session()
        if session is None:
            return
        if not session.status.active and session.status.value != "lost":
            self.notify(f"{session.name} ({session.id}) is not running ({session.status})",
                        severity="warning")
            return
        if force:
            question = f"Kill {session.name} ({session.id}) now?"
            detail = "SIGKILL to the training process group: no checkpoint is saved."
        else:
            question = f"Stop {session.name} ({session.id})?"
            detail = (f"SIGTERM to the training, then SIGKILL after {session.grace_seconds:g}s "
                      "if it is still running.")
        if not await self.push_screen_wait(ConfirmScreen(question, detail,
                                                         "Kill" if force else "Stop")):
            return
        if await self.call_or_notify("stop", session.id, force=force, wait=False) is None:
            return
        self.notify(f"{'killing' if force else 'stopping'} {session.name} ({session.id})")

    @work(group="actions")
    async def action_resume(self) -> None:
        session = await self._selected_session()
        if session is None:
            return
        if session.status.active:
            self.notify(f"{session.name} ({session.id}) is still {session.status}; stop it first",
                        severity="warning")
            return
        rows = []
        if session.checkpoint_dir:
            try:
                _, _, _, rows = await self.backend.call("checkpoints", session.id)
            except TrainctlError as exc:  # e.g. the directory is gone: offer a fresh start
                self.notify(str(exc), severity="warning")
        limits = {}
        reached = await self.backend.run(lambda service: figures_of(session).reached)
        if reached:  # stopped by its budget guard: a new limit (or none) first
            from .screens.limit_prompt import LimitPrompt

            limits = await self.push_screen_wait(LimitPrompt(session.name, reached))
            if limits is None:
                return
        picked = await self.push_screen_wait(ResumeScreen(session.name, rows))
        if picked is None:
            return
        resumed = await self.call_or_notify(
            "resume", session.id, from_checkpoint=None if picked == SCRATCH else picked,
            scratch=picked == SCRATCH, **limits)
        if resumed is None:
            return
        self.notify(f"resumed {resumed.name} ({resumed.id}) as attempt {resumed.attempt}")

    @work(group="actions")
    async def action_delete(self) -> None:
        session = await self._selected_session()
        if session is None:
            return
        if session.status.active:
            self.notify(f"{session.name} ({session.id}) is {session.status}; "
                        "stop it before deleting it", severity="error")
            return
        kept = f" Checkpoints in {session.checkpoint_dir} are kept." \
            if session.checkpoint_dir else ""
        if not await self.push_screen_wait(ConfirmScreen(
                f"Delete {session.name} ({session.id})?",
                f"Its folder and log are removed.{kept}", "Delete")):
            return
        if await self.call_or_notify("remove", session.id) is None:
            return
        self.notify(f"deleted {session.name} ({session.id})")
        if isinstance(self.screen, SessionScreen):
            self.pop_screen()

    async def _selected_session(self):
        session_id = self.selected_session_id()
        if session_id is None:
            what = "a log being watched has no session" if self.watch_path else "no session"
            self.notify(f"{what} selected", severity="warning")
            return None
        return await self.call_or_notify("get", session_id)

    async def call_or_notify(self, name: str, *args, **kwargs):
        """A service call whose user errors become an error notification (and None)."""
        try:
            return await self.backend.call(name, *args, **kwargs)
        except TrainctlError as exc:
            self.notify(str(exc), severity="error")
            return None

    # -- alerts -------------------------------------------------------------------------

    async def announce_alerts(self, rows: list[SessionOverview]) -> None:
        """Notify each alert once (remembered in the store across restarts)."""
        fresh = await self.backend.call("new_alerts", rows)
        for alert in fresh:
            if alert.at < self.started_at - 60:
                continue  # ended long before this app started: the row's mark says enough
            severity = "error" if alert.severity == "error" else "warning"
            self.notify(f"{alert.session_name} ({alert.session_id}): {alert.message}",
                        title="alert", severity=severity, timeout=8)
        if fresh and self.notifier is not None:
            self.send_notifications(fresh)

    @work(thread=True, group="notify")
    def send_notifications(self, alerts) -> None:
        for alert in alerts:
            for error in self.notifier.send(alert):
                self.call_from_thread(self.notify, f"alert delivery failed: {error}",
                                      severity="warning")

    # -- command palette ----------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Launch a run", "Open the launch form (n)", self.action_launch)
        yield SystemCommand("Watch a log", "Any log file, or ssh://host/path (w)",
                            self.action_watch)
        yield SystemCommand("Instances", "SSH hosts and cloud machines (i)",
                            self.action_instances)
        if getattr(screen, "selected_id", None):
            yield SystemCommand("Stop session", "Graceful stop of the selected session (s)",
                                self.action_stop)
            yield SystemCommand("Kill session", "SIGKILL the selected session now (K)",
                                self.action_kill)
            yield SystemCommand("Resume session", "New attempt from a checkpoint (r)",
                                self.action_resume)
            yield SystemCommand("Delete session", "Forget an ended session (d)",
                                self.action_delete)
            yield SystemCommand("Checkpoints", "List, inspect, validate, prune (c)",
                                self.action_checkpoints)
        if isinstance(screen, SessionsScreen):
            yield SystemCommand("Open session", "Live log and loss curve (enter)",
                                screen.action_open)
            yield SystemCommand("Filter sessions", "Filter the table (/)", screen.action_filter)
            yield SystemCommand("Mark session", "Mark / unmark it for comparing (space)",
                                screen.action_toggle_mark)
            yield SystemCommand("Compare marked sessions", "One chart, one table (C)",
                                screen.action_compare)
        if isinstance(screen, CheckpointsScreen):
            yield SystemCommand("Validate checkpoint", "Check every byte (v)",
                                screen.action_validate)
            yield SystemCommand("Prune checkpoints", "Keep the last N, with a preview (p)",
                                screen.action_prune)
            yield SystemCommand("Resume from checkpoint", "New attempt from it (r)",
                                screen.action_resume_from)
        if isinstance(screen, SessionScreen):
            yield SystemCommand("Next chart", "Cycle the plotted metric (m)",
                                screen.action_next_chart)
            yield SystemCommand("Search log", "Find text in the log (/)", screen.action_search)
            yield SystemCommand("Follow log", "Follow the end of the log on/off (f)",
                                screen.action_toggle_follow)
        if hasattr(screen, "action_cycle_smoothing"):
            yield SystemCommand("Smoothing", "Off, 0.6, 0.9, 0.99 (S)",
                                screen.action_cycle_smoothing)
        if hasattr(screen, "action_toggle_x"):
            yield SystemCommand("Next series", "Compare another series (m)",
                                screen.action_next_metric)
            yield SystemCommand("X axis", "Step or elapsed time (x)", screen.action_toggle_x)
            yield SystemCommand("Add a log", "A path or ssh:// URL (a)", screen.action_add_log)
        yield SystemCommand("Help", "Keys of this screen (?)", self.action_help)


def launch_places(service) -> tuple[list[str], dict[str, str], dict[str, bool]]:
    """(providers offered by the launch form, what each one means, which create spot
    machines by default): what each backend offers, in the registry's order."""
    places = service.launch_places()
    return ([p.provider for p in places], {p.provider: p.detail for p in places if p.detail},
            {p.provider: p.spot for p in places if p.spot is not None})


def make_app(**kwargs) -> TrainctlApp:
    """The app as the CLI runs it, with settings from config (shared by the CLI and tests)."""
    from ..config.loader import load_config
    from ..monitor.alerts import Notifier

    config = load_config()
    notifier = Notifier.from_config(config.alerts)
    kwargs.setdefault("refresh_seconds", config.ui.refresh_seconds)
    kwargs.setdefault("theme", config.ui.theme)
    kwargs.setdefault("notifier", notifier if notifier.enabled else None)
    return TrainctlApp(**kwargs)
