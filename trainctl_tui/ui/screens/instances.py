"""`i`: every machine a run can go to — SSH hosts, EC2 instances, RunPod pods — with
reachability or state, GPUs, $/h, uptime, cost so far and the sessions running there; keys to
create, start, stop and terminate cloud machines and to open a shell on any of them. Under
them the batch clusters: each partition's free nodes and GPUs and the user's queue
(cluster_rows.py), so a run can go where it starts soonest."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Static

from ...app.gpu_usage import gpu_util_by_session
from ...app.machines import host_kind, instance_kind
from ...app.service import Service
from ...core.clusters import ClusterInfo
from ...core.errors import TrainctlError
from ...core.formatting import format_duration
from ...core.machines import Instance
from ...render.usage import short_gpu_name
from ..columns import ColumnLayout
from ..screen_work import screen_work
from ..visibility import in_view
from .cluster_rows import (
    CLUSTER_LAYOUT,
    ClusterRow,
    cluster_cells,
    cluster_rows,
    describe_cluster_row,
    probing,
)

INSTANCE_KEYS = [
    ("s / enter", "open a shell on the selected machine: ssh, or SSM for EC2; on a cluster, "
                  "its login node (the TUI waits until you exit it)"),
    ("tab", "between the machines and the clusters (partitions, your queue)"),
    ("c", "create a cloud machine (EC2 instance or RunPod pod)"),
    ("u", "start the selected stopped instance / resume the pod"),
    ("x", "stop the selected instance or pod (its disk stays)"),
    ("T", "terminate the selected instance or pod (asks first; its disk is deleted)"),
    ("r", "probe every host, cloud and cluster now (also every 10s while this screen shows)"),
    ("esc", "back"),
    ("?", "this help"),
]

# (key, label, width); SESSIONS takes what is left. At 80 columns the address, market and
# uptime move to the detail line under the table.
COLUMNS = [
    ("kind", "KIND", 4), ("name", "NAME", 14), ("address", "ADDRESS", 15),
    ("state", "STATE", 11), ("market", "MARKET", 6), ("load", "LOAD", 5), ("gpus", "GPUS", 14),
    ("util", "GPU%", 4), ("cost", "$/H", 6), ("uptime", "UP", 6), ("spent", "SPENT", 6),
    ("sessions", "SESSIONS", 0),
]
LAYOUT = ColumnLayout(COLUMNS, narrow_drops={"address", "market", "uptime"},
                      narrow_widths={"name": 9, "gpus": 12, "sessions": 4},
                      narrow_labels={"sessions": "SESS"})  # a count; the detail lists the ids

STATE_STYLE = {"up": "green", "unreachable": "bold red", "probing": "dim", "running": "green",
               "pending": "yellow", "starting": "yellow", "stopping": "yellow",
               "stopped": "dim", "exited": "dim", "terminated": "dim", "shutting-down": "dim"}
HOST_KIND = host_kind()  # the KIND of configured hosts' rows
NO_HOSTS_HINT = (
    "No machines yet. Add an SSH host to the config:\n\n"
    "  [b]\\[ssh.hosts.NAME][/b]\n  host = \"gpu-box\"   [dim]# or an alias from ~/.ssh/config"
    "[/dim]\n  user = \"me\"\n\n"
    "Or rent one: AWS credentials (aws configure, AWS_PROFILE) or a RunPod API key "
    "(RUNPOD_API_KEY), then [b]c[/b] creates an instance or pod. Or a Slurm cluster: "
    "[b]\\[slurm.clusters.NAME][/b] with its login and workdir.\n\n"
    "[b]trainctl config init[/b] writes an example; [b]trainctl config path[/b] shows where."
)


@dataclass
class Machine:
    """One row, whatever the machine is: an SSH host, an EC2 instance, a RunPod pod."""

    kind: str  # HOST_KIND, or the cloud's instance kind
    name: str  # the host's name; the instance or pod id for cloud machines
    address: str = ""
    state: str = "probing"  # up, unreachable, probing; the cloud's own states
    rtt_ms: float | None = None
    error: str | None = None
    load: list[float] = field(default_factory=list)
    cpus: int | None = None
    gpus: list[dict] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    cost_per_hour: float | None = None
    instance: Instance | None = None  # cloud machines: everything the cloud said
    gpu_util: float | None = None  # mean GPU % its sessions' runners sampled last

    @property
    def util(self) -> float | None:
        """GPU utilization: what its sessions' runners sampled, else what the probe saw."""
        if self.gpu_util is not None:
            return self.gpu_util
        known = [g["utilization"] for g in self.gpus
                 if isinstance(g.get("utilization"), (int, float))]
        return sum(known) / len(known) if known else None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"


def machine_from_host(info) -> Machine:
    """A row from a configured host's HostInfo."""
    return Machine(kind=HOST_KIND, name=info.name, address=info.address,
                   state="up" if info.reachable else "unreachable", rtt_ms=info.rtt_ms,
                   error=info.error, load=list(info.load), cpus=info.cpus,
                   gpus=list(info.gpus), sessions=list(info.sessions))


def machine_from_instance(instance: Instance) -> Machine:
    """A row from a cloud's Instance."""
    return Machine(kind=instance_kind(instance.provider), name=instance.id,
                   address=instance.address or "", state=instance.state,
                   error=instance.detail, sessions=[instance.session] if instance.session
                   else [], cost_per_hour=instance.price_per_hour, instance=instance)


def gpu_summary(gpus: list[dict]) -> str:
    """All GPUs of a machine in one cell: `2x A100 12.1/80G 93%` (memory summed, util mean)."""
    if not gpus:
        return ""
    names = Counter(short_gpu_name(g.get("name", "")) for g in gpus)
    model = next(iter(names)) if len(names) == 1 else "GPUs"
    used = sum(g.get("memory_used_mib", 0) for g in gpus) / 1024
    total = sum(g.get("memory_total_mib", 0) for g in gpus) / 1024
    util = sum(g.get("utilization", 0) for g in gpus) / len(gpus)
    used_text = f"{used:.1f}" if used < 100 else f"{used:.0f}"
    return f"{len(gpus)}x {model} {used_text}/{total:.0f}G {util:.0f}%"


def state_text(machine: Machine) -> Text:
    label = machine.state
    if machine.state == "up" and machine.rtt_ms is not None:
        label = f"up {machine.rtt_ms:.0f}ms"
    elif machine.state == "probing":
        label = "probing…"
    return Text(label, style=STATE_STYLE.get(machine.state, ""))


def cells(machine: Machine, *, narrow: bool = False, now: float | None = None) -> dict:
    up = machine.state == "up"
    sessions = ", ".join(machine.sessions)
    if narrow and machine.sessions:
        sessions = str(len(machine.sessions))
    instance = machine.instance
    if instance is not None:
        gpus = instance.gpus or "-"
        name = instance.name or instance.id
    else:
        gpus = gpu_summary(machine.gpus) or ("none" if up else "-")
        name = machine.name
    uptime = instance.uptime(now) if instance else None
    spent = instance.cost_so_far(now) if instance else None
    return {
        "kind": machine.kind,
        "name": Text(name, style="bold"),
        "address": machine.address or "-",
        "state": state_text(machine),
        "market": instance.lifecycle.replace("on-demand", "on-dem") if instance else "-",
        "load": f"{machine.load[0]:.2f}" if machine.load else "-",
        "gpus": gpus,
        "util": f"{machine.util:.0f}%" if machine.util is not None else "-",
        "cost": f"{machine.cost_per_hour:.3f}" if machine.cost_per_hour is not None else "-",
        "uptime": format_duration(uptime) if uptime is not None else "-",
        "spent": f"{spent:.2f}" if spent is not None else "-",
        "sessions": sessions or "-",
    }


def describe_instance(instance: Instance, now: float | None = None) -> Text:
    text = Text.assemble((instance.id, "bold"), f" {instance.name}  " if instance.name else "  ",
                         (instance.state, STATE_STYLE.get(instance.state, "")),
                         f"  {instance.type} {instance.lifecycle}")
    if instance.zone:
        text.append(f" in {instance.zone}")
    if instance.address:
        text.append(f"  {instance.address}")
    if instance.price_per_hour is not None:
        text.append(f"\n${instance.price_per_hour:.3f}/h")
        uptime, spent = instance.uptime(now), instance.cost_so_far(now)
        if uptime is not None and spent is not None:
            text.append(f" · up {format_duration(uptime)} · ${spent:.2f} so far")
    if instance.session:
        text.append(f"  session {instance.session}")
    if instance.detail:
        text.append(f"\n{instance.detail}", style="yellow")
    return text


def describe(machine: Machine) -> Text:
    """The detail line(s) under the table: the selected machine in full, or why it is down."""
    if machine.instance is not None:
        return describe_instance(machine.instance)
    text = Text.assemble((machine.name, "bold"), f" {machine.address}  ", state_text(machine))
    if machine.state == "unreachable":
        text.append(f"\n{machine.error or 'unreachable'}", style="red")
        return text
    if machine.load:
        text.append("  load " + " ".join(f"{x:.2f}" for x in machine.load))
    if machine.cpus:
        text.append(f"  {machine.cpus} CPUs")
    if machine.sessions:
        text.append(f"  sessions {', '.join(machine.sessions)}")
    for gpu in machine.gpus:
        text.append(f"\nGPU{gpu.get('index', '?')} {gpu.get('name', '')} "
                    f"{gpu.get('memory_used_mib', 0)}/{gpu.get('memory_total_mib', 0)} MiB "
                    f"{gpu.get('utilization', 0)}%")
    return text


def configured_machines(service) -> tuple[list[str], list[str], list[str]]:
    """(configured host names, clouds set up, configured clusters)."""
    return service.host_names(), service.clouds(), service.cluster_names()


async def _nothing():
    return None


class InstancesScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("s", "shell", "Shell"),
        Binding("c", "create", "Create"),
        Binding("u", "start", "Start"),
        Binding("x", "stop", "Stop"),
        Binding("T", "terminate", "Terminate"),
        Binding("r", "refresh_now", "Refresh"),
        Binding("question_mark", "app.help", "Help"),
        Binding("q", "app.quit", "Quit", show=False),
    ]
    HELP_TITLE = "Instances"
    HELP_KEYS = INSTANCE_KEYS
    PROBE_SECONDS = 10.0  # probing is an ssh round trip per host: slow, so not every second

    def __init__(self):
        super().__init__()
        self.machines: dict[str, Machine] = {}
        self.probes = 0  # probes finished; tests wait on it
        self._probing = False
        self._stale = False  # a probe fell due while the screen was hidden
        self._timer: Timer | None = None
        self._shown: dict[tuple[str, str], object] = {}  # (row, column) -> value drawn
        self.cloud_errors: dict[str, str] = {}
        self.clusters: list[ClusterInfo] = []
        self._shown_clusters: dict[tuple[str, str], object] = {}
        self._detail_of = "instances"  # the table whose row the detail shows
        self._answered = False  # a probe came back: no machine rows means there are none

    def compose(self) -> ComposeResult:
        yield Static("trainctl · instances", id="title-bar")
        yield DataTable(id="instances", cursor_type="row", zebra_stripes=True)
        yield DataTable(id="clusters", cursor_type="row", zebra_stripes=True)
        yield Static(NO_HOSTS_HINT, id="empty-hint")
        yield Static("", id="instance-detail")
        yield Static("", id="status-line")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#empty-hint").display = False
        self.query_one("#clusters").display = False
        self.on_resize()
        self.query_one(DataTable).focus()
        self.probe()

    def on_screen_resume(self) -> None:
        if self._stale:
            self._stale = False
            self.probe()

    # -- layout -------------------------------------------------------------------------

    def on_resize(self) -> None:
        if LAYOUT.apply(self.query_one("#instances", DataTable), self.size.width):
            self._shown = {}
            self.show_machines()
        if CLUSTER_LAYOUT.apply(self.query_one("#clusters", DataTable), self.size.width):
            self._shown_clusters = {}
            self.show_clusters()

    # -- probing ------------------------------------------------------------------------

    def probe(self) -> None:
        """Probe now, unless a probe is still out: never two at once (each is slow)."""
        if self._probing:
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._probing = True
        self._probe()

    @screen_work(group="probe")
    async def _probe(self) -> None:
        started = time.monotonic()
        try:
            names, clouds, clusters = await self.app.backend.run(configured_machines)
            self._expect(names, clouds, clusters)
            # The clouds answer in one API call each; ssh hosts and clusters one round trip
            # each (a cluster's that did not answer comes back unreachable, not as an error).
            hosts, fleet, infos = await asyncio.gather(
                self.app.backend.call("hosts") if names else _nothing(),
                self.app.backend.call("instances") if clouds else _nothing(),
                self.app.backend.call("clusters") if clusters else _nothing())
            self._answered = True
            self.cloud_errors = fleet[1] if fleet else {}
            self.machines = {m.key: m for m in map(machine_from_host, hosts or [])} | \
                {m.key: m for m in map(machine_from_instance, fleet[0] if fleet else [])}
            self.clusters = infos or []
            await self._add_gpu_util()
            self.show_machines()
            self.show_clusters()
            self._show_status()
        except NoMatches:
            return  # the screen closed while its hosts were still answering
        except Exception as exc:  # a bad config must not kill the screen; say it and go on
            with suppress(NoMatches):
                self.query_one("#status-line", Static).update(
                    Text(f"probe failed: {exc}", style="red"))
        finally:
            self._probing = False
            self.probes += 1
            # A slow link gets probed less often, so probing never eats the whole link.
            delay = max(self.PROBE_SECONDS, 3 * (time.monotonic() - started))
            if self.is_attached:
                self._timer = self.set_timer(delay, self._probe_due)

    async def _add_gpu_util(self) -> None:
        """Each machine's GPU % as its sessions' runners sampled it (usage.json)."""
        ids = sorted({sid for m in self.machines.values() for sid in m.sessions})
        if not ids:
            return
        utils = await self.app.backend.run(gpu_util_by_session, ids)
        for machine in self.machines.values():
            known = [utils[sid] for sid in machine.sessions if utils.get(sid) is not None]
            machine.gpu_util = sum(known) / len(known) if known else None

    @property
    def in_view(self) -> bool:
        return in_view(self)

    def _probe_due(self) -> None:
        self._timer = None
        if self.in_view:
            self.probe()
        else:
            self._stale = True  # probed when the screen shows again (on_screen_resume)

    def _expect(self, names: list[str], clouds: list[str], clusters: list[str]) -> None:
        """Rows for hosts and clusters not probed yet, and the 'probing' line, before the
        slow part."""
        kept = {key: m for key, m in self.machines.items()
                if m.kind != HOST_KIND or m.name in names}
        for name in names:
            kept.setdefault(f"{HOST_KIND}:{name}", Machine(kind=HOST_KIND, name=name))
        self.machines = kept
        known = {info.name: info for info in self.clusters if info.name in clusters}
        self.clusters = [known.get(name) or probing(name) for name in clusters]
        self.show_machines()
        self.show_clusters()
        places = ([f"{len(names)} host{'s' if len(names) != 1 else ''}"] if names else []) + \
            clouds + ([plural(len(clusters), "cluster")] if clusters else [])
        self.query_one("#status-line", Static).update(
            f"probing {', '.join(places)}…" if places else "no hosts or clouds configured")

    def action_refresh_now(self) -> None:
        if self._probing:
            self.notify("still probing; results come as soon as every host answers")
            return
        self.probe()

    # -- drawing ------------------------------------------------------------------------

    def show_machines(self) -> None:
        table = self.query_one("#instances", DataTable)
        rows = sorted(self.machines.values(), key=lambda m: (m.kind, m.name))
        wanted = [m.key for m in rows]
        keys = [str(column.value) for column in table.columns]
        narrow = self.size.width < LAYOUT.narrow_below
        if wanted != [key.value for key in table.rows]:
            selected = self.selected.key if self.selected else None
            table.clear()
            self._shown = {}
            for machine in rows:
                row = cells(machine, narrow=narrow)
                table.add_row(*(row[key] for key in keys), key=machine.key)
                self._shown.update({(machine.key, key): row[key] for key in keys})
            if selected in wanted:
                table.move_cursor(row=wanted.index(selected), animate=False)
        else:
            # Only changed cells: an unchanged probe sends nothing over a slow SSH link.
            for machine in rows:
                for key, value in cells(machine, narrow=narrow).items():
                    if key in keys and self._shown.get((machine.key, key)) != value:
                        table.update_cell(machine.key, key, value)
                        self._shown[(machine.key, key)] = value
        # Clusters alone (once every place answered): their table takes the screen, and
        # the cursor.
        alone = not rows and bool(self.clusters) and self._answered
        table.display = not alone
        table.set_class(bool(self.clusters), "above-clusters")
        self.query_one("#clusters").set_class(alone, "alone")
        if alone and table.has_focus:
            self.query_one("#clusters", DataTable).focus()
        self.query_one("#empty-hint").display = not rows and not self.clusters
        self.show_detail()

    def show_clusters(self) -> None:
        """One row per partition of each cluster; only changed cells are sent."""
        table = self.query_one("#clusters", DataTable)
        rows = cluster_rows(self.clusters)
        table.display = bool(rows)
        wanted = [row.key for row in rows]
        keys = [str(column.value) for column in table.columns]
        narrow = self.size.width < CLUSTER_LAYOUT.narrow_below
        if wanted != [key.value for key in table.rows]:
            selected = self.selected_cluster.key if self.selected_cluster else None
            table.clear()
            self._shown_clusters = {}
            for row in rows:
                values = cluster_cells(row, narrow=narrow)
                table.add_row(*(values[key] for key in keys), key=row.key)
                self._shown_clusters.update({(row.key, key): values[key] for key in keys})
            if selected in wanted:
                table.move_cursor(row=wanted.index(selected), animate=False)
        else:
            for row in rows:
                for key, value in cluster_cells(row, narrow=narrow).items():
                    if key in keys and self._shown_clusters.get((row.key, key)) != value:
                        table.update_cell(row.key, key, value)
                        self._shown_clusters[(row.key, key)] = value
        self.show_detail()

    def _show_status(self) -> None:
        rows = list(self.machines.values())
        errors = [f"[bold red]{cloud}[/]: {escape(error)}"
                  for cloud, error in self.cloud_errors.items()]
        if not rows and not self.clusters:
            self.query_one("#status-line", Static).update(
                "\n".join(errors) or "no hosts or clouds configured")
            return
        hosts = [m for m in rows if m.kind == HOST_KIND]
        parts = []
        if hosts:
            up = sum(1 for m in hosts if m.state == "up")
            down = sum(1 for m in hosts if m.state == "unreachable")
            parts.append(f"{len(hosts)} host{'s' if len(hosts) != 1 else ''} · " +
                         (f"[green]{up} up[/]" if up else "0 up") +
                         (f" · [bold red]{down} unreachable[/]" if down else ""))
        billing = [m.instance for m in rows if m.instance and m.instance.billing]
        if any(m.instance for m in rows):
            rate = sum(i.price_per_hour or 0 for i in billing)
            spent = sum(i.cost_so_far() or 0 for i in billing)
            parts.append(f"{len(billing)} billing ${rate:.2f}/h, ${spent:.2f} so far")
        if self.clusters:
            states = Counter(info.state for info in self.clusters)
            parts.append(plural(len(self.clusters), "cluster") + "".join(
                f" · [bold red]{states[state]} {state}[/]" for state in ("unreachable", "error")
                if states[state]))
        line = " · ".join(parts) + " · r probes again"
        self.query_one("#status-line", Static).update("\n".join([line, *errors]))

    @property
    def selected(self) -> Machine | None:
        """The machine under the cursor, while the machines' table is the one in use."""
        table = self.query_one("#instances", DataTable)
        if not table.row_count or self._detail_of != "instances":
            return None
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return self.machines.get(key.value)

    @property
    def selected_cluster(self) -> ClusterRow | None:
        table = self.query_one("#clusters", DataTable)
        if not table.row_count:
            return None
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return next((row for row in cluster_rows(self.clusters) if row.key == key.value), None)

    def on_descendant_focus(self, event) -> None:
        if isinstance(event.widget, DataTable) and event.widget.id in ("instances", "clusters"):
            self._detail_of = event.widget.id
            self.show_detail()

    @on(DataTable.RowHighlighted)
    def show_detail(self) -> None:
        detail = self.query_one("#instance-detail", Static)
        if self._detail_of == "clusters":
            row = self.selected_cluster
            detail.update(describe_cluster_row(row) if row else "")
            detail.display = row is not None
            return
        machine = self.selected
        detail.update(describe(machine) if machine else "")
        detail.display = machine is not None

    # -- shell --------------------------------------------------------------------------

    @on(DataTable.RowSelected)
    def action_shell(self, event=None) -> None:
        if self._detail_of == "clusters" and self.selected_cluster is not None:
            self.open_shell(self.selected_cluster.info)
            return
        machine = self.selected
        if machine is None:
            self.notify("no machine selected", severity="warning")
            return
        self.open_shell(machine)

    @screen_work(group="shell", exclusive=True)
    async def open_shell(self, machine: Machine | ClusterInfo) -> None:
        try:
            argv = await self.app.backend.run(shell_command, machine)
        except TrainctlError as exc:
            self.notify(str(exc), severity="error")
            return
        try:
            # Interactive, so the user's own ssh (password prompts, host keys) takes the tty.
            with self.app.suspend():
                code = subprocess.run(argv).returncode
        except SuspendNotSupported:
            self.notify(f"this terminal cannot hand over to a shell; run: {shlex.join(argv)}",
                        severity="warning", timeout=15)
            return
        except OSError as exc:
            self.notify(f"cannot run {argv[0]}: {exc}", severity="error")
            return
        failure = Service.shell_failure(argv, code, machine.name)
        if failure:  # the client's own failure, shown on the screen we left
            self.notify(failure, severity="error")
        self.probe()

    # -- cloud machines -----------------------------------------------------------------

    def _selected_cloud(self, verb: str) -> Instance | None:
        machine = self.selected
        if machine is None or machine.instance is None:
            self.notify(f"select an EC2 instance or a pod to {verb}", severity="warning")
            return None
        return machine.instance

    def action_create(self) -> None:
        from .create_instance import CreateInstanceScreen

        def created(instance: Instance | None) -> None:
            if instance is not None:
                self.notify(f"created {instance.provider} {instance.id}")
                self.probe()

        self.app.push_screen(CreateInstanceScreen(), created)

    def action_start(self) -> None:
        instance = self._selected_cloud("start")
        if instance is not None:
            self.instance_action("start", instance)

    def action_stop(self) -> None:
        instance = self._selected_cloud("stop")
        if instance is not None:
            self.instance_action("stop", instance)

    @screen_work(group="cloud-action")
    async def action_terminate(self) -> None:
        instance = self._selected_cloud("terminate")
        if instance is None:
            return
        from .confirm import ConfirmScreen

        price = f", ${instance.price_per_hour:.3f}/h" if instance.price_per_hour else ""
        question = (f"Terminate {instance.provider} {instance.id}"
                    f"{' (' + instance.name + ')' if instance.name else ''}?")
        detail = (f"{instance.type or '?'} {instance.lifecycle}, {instance.state}{price}. "
                  "Its disk is deleted; sessions on it end.")
        if await self.app.push_screen_wait(ConfirmScreen(question, detail, "Terminate")):
            self.instance_action("terminate", instance)

    @screen_work(group="cloud-action")
    async def instance_action(self, action: str, instance: Instance) -> None:
        self.notify(f"{action} {instance.provider} {instance.id}…")
        try:
            after = await self.app.backend.call("instance_action", action, instance.id,
                                                provider=instance.provider)
        except TrainctlError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        self.notify(f"{instance.id}: {after.state}")
        self.probe()


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def shell_command(service, machine: Machine | ClusterInfo) -> list[str]:
    """The interactive command that opens a shell on `machine` (a cluster: its login node)."""
    if isinstance(machine, ClusterInfo):
        return service.cluster_shell(machine.name)
    if machine.kind == HOST_KIND:
        return service.host_shell(machine.name)
    if machine.instance is None:
        raise TrainctlError(f"no shell for {machine.kind} machines")
    return service.machine_shell(machine.instance)
