"""Sessions on a RunPod pod (provider string `runpod:POD_ID`): the SSH runner reached at the
pod's public IP and mapped 22/tcp port, and the pod's replacement when it is interrupted
(recovery.py)."""

from __future__ import annotations

from pathlib import Path

from ...core.models import Session, Status
from ..base import ProviderError
from ..remote.runner import HostOverSSH
from ..remote.transport import SSHTarget
from .api import RunPodError, gql_quote
from .cloud import POD_FIELDS, RunPodCloud, ssh_address

# -- sessions on a pod ----------------------------------------------------------------------

# pod id -> its SSH target, shared by the provider objects of one process.
_TARGETS: dict[str, SSHTarget] = {}


def target_for(pod: dict, settings) -> SSHTarget:
    address = ssh_address(pod)
    if address is None:
        raise RunPodError(f"runpod: pod {pod['id']} is {(pod.get('desiredStatus') or '?').lower()}"
                          " with no public 22/tcp port (is it running? does its image run "
                          "sshd?)")
    return SSHTarget(name=pod["id"], host=address[0], port=address[1],
                     user=settings.ssh_user, identity_file=settings.identity_file,
                     python=settings.python, workdir=settings.workdir)


class RunPodProvider(HostOverSSH):
    """A session's runner on a pod, over SSH to the pod's public IP and mapped 22/tcp port.
    The address is looked up from the API once and again whenever SSH fails (a restarted
    pod gets new ports); where SSH stays unreachable the pod's container log is saved into
    the session folder (container.log) and named in the error."""

    def __init__(self, pod_id: str | None = None):
        if not pod_id:
            raise ProviderError("runpod needs a pod: --provider runpod:POD_ID, or --provider "
                                "runpod to create one for the run")
        super().__init__()
        self.host = self.pod_id = pod_id
        self._cloud: RunPodCloud | None = None

    @property
    def name(self) -> str:
        return f"runpod:{self.pod_id}"

    @property
    def label(self) -> str:
        return f"runpod {self.pod_id}"

    async def price_per_hour(self, session: Session, options: dict) -> float | None:
        """The pod's cost per hour, as RunPod bills it."""
        return (await self.cloud.get_instance(self.pod_id)).price_per_hour

    @property
    def cloud(self) -> RunPodCloud:
        if self._cloud is None:
            self._cloud = RunPodCloud()
        return self._cloud

    @property
    def target(self) -> SSHTarget:
        """Cached; resolving it the first time blocks on one API call (launch validation).
        The async paths resolve it with `resolve()` first."""
        if self._target is None:
            cached = _TARGETS.get(self.pod_id)
            if cached is None:
                cloud = self.cloud
                pod = cloud.api.call_blocking(
                    f"reading pod {self.pod_id}",
                    lambda: _run_graphql_blocking(cloud, self.pod_id))
                if not pod:
                    raise RunPodError(f"runpod: no pod '{self.pod_id}' "
                                      "(trainctl instances lists yours)")
                cached = _TARGETS[self.pod_id] = target_for(pod, cloud.settings)
            self._target = cached
        return self._target

    # -- replacing an interrupted pod (backends/replacing.py) ---------------------------------

    replaces_machines = True
    # A pod that went away leaves its session unreachable (ssh fails) or lost (runner gone).
    interrupted_when = (Status.UNREACHABLE, Status.LOST)

    def on_pod(self, pod_id: str) -> RunPodProvider:
        """A provider like this one for another pod (a replacement)."""
        return type(self)(pod_id)

    async def interruption(self, session: Session, entries: list[dict]):
        from . import recovery

        return await recovery.interruption(session, entries)

    async def replace(self, session: Session, entry: dict | None, *, reason: str,
                      by_hand: bool = False, scratch: bool = False,
                      from_checkpoint: str | None = None, progress=None):
        from . import recovery

        return await recovery.replace(self, session, entry, reason=reason, by_hand=by_hand,
                                      scratch=scratch, from_checkpoint=from_checkpoint,
                                      progress=progress)

    async def observe(self, session: Session) -> None:
        from . import recovery

        await recovery.observe(self, session)

    async def resolve(self, *, fresh: bool = False) -> SSHTarget:
        if fresh or (self._target is None and self.pod_id not in _TARGETS):
            pod = await self.cloud.pod(self.pod_id)
            target = target_for(pod, self.cloud.settings)
            if self._target is not None and (target.host, target.port) != \
                    (self._target.host, self._target.port):
                self._transport = None  # the pod restarted: new address, new connection
            _TARGETS[self.pod_id] = self._target = target
        return self.target

    async def _with_target(self, call):
        await self.resolve()
        try:
            return await call()
        except RunPodError:
            raise
        except ProviderError as first:
            try:
                before = (self._target.host, self._target.port) if self._target else None
                target = await self.resolve(fresh=True)
            except RunPodError as exc:
                raise ProviderError(f"{first}; {exc}{await self._log_note()}") from None
            if (target.host, target.port) == before:
                raise ProviderError(f"{first}{await self._log_note()}") from None
            return await call()

    async def _log_note(self) -> str:
        """Save the pod's container log next to the session's and say where it is."""
        try:
            lines = await self.cloud.container_logs(self.pod_id)
        except ProviderError:
            return ""
        if not lines:
            return ""
        self._container_log = lines
        return f" (pod log: {lines[-1]})"

    async def launch(self, session: Session) -> None:
        add_budget_stop(session, self.pod_id)
        await self._with_target(lambda: HostOverSSH.launch(self, session))

    async def probe(self, session: Session) -> dict:
        try:
            return await self._with_target(lambda: HostOverSSH.probe(self, session))
        except ProviderError:
            lines = getattr(self, "_container_log", None)
            if lines:
                path = Path(session.session_dir) / "container.log"
                path.write_text("\n".join(lines) + "\n")
            raise

    async def _stop(self, session: Session, force: bool) -> str:
        return await self._with_target(lambda: HostOverSSH._stop(self, session, force))

    async def list_checkpoints(self, session: Session, directory: str | None = None) -> list:
        return await self._with_target(
            lambda: HostOverSSH.list_checkpoints(self, session, directory))

    async def download(self, remote: str, local: Path, *, kind: str, progress=None) -> int:
        return await self._with_target(
            lambda: HostOverSSH.download(self, remote, local, kind=kind, progress=progress))

    async def inspect_checkpoint(self, path: str, *, deep: bool = False):
        """On the pod (`resume --from` judges the checkpoint there before the runner starts)."""
        return await self._with_target(
            lambda: HostOverSSH.inspect_checkpoint(self, path, deep=deep))


def _run_graphql_blocking(cloud: RunPodCloud, pod_id: str) -> dict | None:
    from runpod.api.graphql import run_graphql_query

    document = f"query Pod {{ pod(input: {{podId: {gql_quote(pod_id)}}}) {{ {POD_FIELDS} }} }}"
    return run_graphql_query(document, api_key=cloud.api.key)["data"].get("pod")


# At a limit the runner stops the pod itself through RunPod's API with the pod's own key
# (runner_part.py); runpodctl, which RunPod's images carry with that key, is the fallback.
# A stopped pod bills only its volume.
BUDGET_STOP = ["sh", "-c", 'runpodctl stop pod "$RUNPOD_POD_ID"']


def add_budget_stop(session: Session, pod_id: str) -> None:
    """In the spec of a session with a budget or max hours: the pod to stop at the limit
    (this one: a replacement pod is written in again), how (`[runpod] shutdown_behavior`)
    and where RunPod's API is; the fallback command."""
    import json

    from ...config.loader import load_config
    from ...core.atomic import atomic_write
    from .api import base_url

    path = Path(session.session_dir) / "spec.json"
    spec = json.loads(path.read_text())
    if spec.get("budget") is None and spec.get("max_hours") is None:
        return
    behavior = load_config().runpod.shutdown_behavior
    spec.update(runpod_pod_id=pod_id, runpod_api_url=base_url(),
                runpod_shutdown_behavior=behavior)
    fallback = BUDGET_STOP if behavior == "stop" else \
        ["sh", "-c", 'runpodctl remove pod "$RUNPOD_POD_ID"']
    spec.setdefault("budget_stop_command", fallback)
    atomic_write(path, json.dumps(spec, indent=2))
