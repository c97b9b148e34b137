"""Launching a session: the request, the session and its folder, the runner started."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

from ..backends.registry import get_provider
from ..core import aio, paths
from ..core.errors import TrainctlError
from ..core.models import Record, Session, Status, is_secret_name
from ..core.placement import Placement
from ..core.spec import spec_path, write_spec

TYPE_CHECKING = False  # as typing.TYPE_CHECKING; importing typing would slow start-up
if TYPE_CHECKING:
    from ..core.machines import CreateRequest

MASK = "****"
MAX_GRACE_SECONDS = 86400.0  # a day; a stop must end
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Launching:
    """Service's launch: a session built from a request, its folder written, its runner started
    (on a machine created first when the provider asks for a new one)."""

    async def launch(self, request: LaunchRequest, progress=None) -> Session:
        """Start a run. A cloud provider without a machine id ("aws", "aws:TEMPLATE",
        "runpod") first creates the machine; if the run then fails to start, the error says
        the machine is still there and how to terminate it."""
        create = new_machine_request(request)
        if create is None:
            return await self._launch(request)
        build_session(request, self.config.defaults, remote=True)  # refuse bad input first
        create.name = create.name or f"trainctl-{request.name or default_name(request.command)}"
        if several_nodes(request):
            return await self._launch_on_new_nodes(request, create, progress)
        instance = await self.create_instance(create, progress)
        if progress:
            progress(f"{instance.provider} {instance.id} is up; starting the run")
        try:
            return await self._launch(request.replace(provider=f"{create.provider}:"
                                                                f"{instance.id}"))
        except TrainctlError as exc:
            raise TrainctlError(f"{exc} (the {create.provider} machine {instance.id} is still "
                                f"running: trainctl instance terminate {instance.id})") from None

    async def _launch_on_new_nodes(self, request: LaunchRequest, create: CreateRequest,
                                   progress) -> Session:
        """A multi-node run on machines its cloud creates together (`create_nodes`), head
        first; if the run then fails to start, they are discarded and the error says so."""
        from ..backends.registry import get_cloud

        cloud = get_cloud(create.provider)
        nodes = request.backend_options["nodes"]
        instances = await cloud.create_nodes(create, nodes, progress)
        ids = [instance.id for instance in instances]
        if progress:
            progress(f"{create.provider} {', '.join(ids)} are up; starting the run")
        try:
            return await self._launch(request.replace(provider=f"{create.provider}:"
                                                                f"{','.join(ids)}"))
        except TrainctlError as exc:
            raise TrainctlError(f"{exc}; {await cloud.discard_nodes(ids)}") from None

    async def _launch(self, request: LaunchRequest) -> Session:
        defaults = self.config.defaults
        # An unknown provider or host is refused before anything is stored.
        provider = get_provider(request.provider)
        if provider.remote:
            provider.target  # noqa: B018 - resolving the host raises for an unknown one
            validate = getattr(provider, "validate", None)  # aws: the instance runs
            if validate is not None:
                await validate()
        check_options = getattr(provider, "check_options", None)  # ssh groups: --nodes
        if check_options is not None:
            check_options(dict(request.backend_options))
        session = build_session(request, defaults, remote=provider.remote)
        if provider.remote:
            session.host = Placement.parse(request.provider).target
        limits = await self.run_limits(provider, session, request)
        secret_env = {k: v for k, v in request.env.items() if is_secret_name(k)}

        def prepare(s: Session) -> None:
            s.session_dir = str(paths.sessions_dir() / s.id)

        self.store.insert(session, prepare=prepare)
        write_session_files(session, defaults, secret_env, local=not provider.remote,
                            session_options=request.backend_options)
        if request.s3_prefix or limits:
            spec = json.loads(spec_path(session).read_text())
            spec.update(limits)
            write_spec(session, spec)
        if request.s3_prefix:
            spec = json.loads(spec_path(session).read_text())
            spec["s3_checkpoint_uri"] = f"{request.s3_prefix.rstrip('/')}/{session.id}/checkpoints/"
            write_spec(session, spec)
        await self.start_runner(session)
        return session

    async def run_limits(self, provider, session: Session, request: LaunchRequest) -> dict:
        """The spec keys of the run's budget, max hours and price (the machine's, when its
        backend knows or the config declares it); a budget without a price is refused."""
        from .costs import limits_for_spec

        defaults = self.config.defaults
        budget, max_hours = request.budget, request.max_hours
        if request.no_budget:
            budget = max_hours = None
        else:
            budget = budget if budget is not None else defaults.budget
            max_hours = max_hours if max_hours is not None else defaults.max_hours
        price, nodes = await machine_prices(provider, session, request.backend_options)
        limits = limits_for_spec(budget, max_hours, price, getattr(provider, "label", "it"),
                                 getattr(provider, "price_setting", None))
        return {**limits, "node_prices": nodes} if nodes else limits

    async def carry_spending(self, provider, session: Session) -> None:
        """A run starting again (resume, restart on a replacement machine) counts on from
        what its earlier runners spent, at the price of the machine it is on now."""
        from .costs import carried_spending, runner_figures

        if not runner_figures(session):
            return  # a new run: nothing spent yet
        spec = json.loads(spec_path(session).read_text())
        spent, hours = carried_spending(session)
        spec["spent_before"], spec["hours_before"] = spent or 0.0, hours
        price, nodes = await machine_prices(provider, session, spec.get("backend_options") or {})
        if price is not None:
            spec["price_per_hour"] = price
        if nodes:
            spec["node_prices"] = nodes
        write_spec(session, spec)

    async def dry_run(self, request: LaunchRequest) -> str:
        """What a launch would submit (a batch script), without storing or starting anything;
        a provider that cannot say refuses in one line."""
        create = new_machine_request(request)
        if create is not None and build_session(request, self.config.defaults, remote=True) \
                and several_nodes(request):  # the machines its cloud would make
            from ..backends.registry import get_cloud

            create.name = create.name or \
                f"trainctl-{request.name or default_name(request.command)}"
            return await get_cloud(create.provider).plan_nodes(
                create, request.backend_options["nodes"])
        provider = get_provider(request.provider)
        if not hasattr(provider, "dry_run"):
            raise TrainctlError(f"--dry-run is not supported for --provider {request.provider}"
                                " (it starts the run directly; there is nothing to show)")
        if provider.remote:
            provider.target  # noqa: B018 - resolving the target raises for an unknown one
        session = build_session(request, self.config.defaults, remote=provider.remote)
        return await provider.dry_run(session, dict(request.backend_options))

    async def start_runner(self, session: Session) -> None:
        provider = get_provider(session.provider)
        try:
            await self.carry_spending(provider, session)
            await provider.launch(session)
        except TrainctlError as exc:
            self.store.update(session.id, status=Status.FAILED, detail=str(exc), ended=time.time())
            raise
        heals = getattr(provider, "heals_nodes", None)
        if heals is not None and heals(session):
            from . import watching

            watching.start(session)  # healing with every terminal closed
        await self.refresh_session(session)


async def machine_price(provider, session: Session, options: dict) -> float | None:
    """What the machine costs per hour, as its backend knows or the config declares; None
    when nobody says (a price that cannot be read never stops a run from starting)."""
    try:
        return await aio.call_optional(provider, "price_per_hour", session, dict(options))
    except TrainctlError:  # a ProviderError too: the cloud did not answer
        return None


async def machine_prices(provider, session: Session, options: dict) -> tuple:
    """(the run's $/h, each node's $/h or None): a run on several nodes costs the sum of its
    nodes' prices (unknown when one of them is); the runner sums the nodes it got."""
    try:
        nodes = await aio.call_optional(provider, "node_prices", session, dict(options))
    except TrainctlError:
        nodes = None
    if isinstance(nodes, list) and len(nodes) > 1:
        known = [price for price in nodes if price is not None]
        return (sum(known) if len(known) == len(nodes) else None), nodes
    return await machine_price(provider, session, options), None


class LaunchRequest(Record):
    """What the launch form / `trainctl launch` asks for; None means "use the config default"."""

    command: list[str]
    cwd: str | None = None
    name: str | None = None
    provider: str = "local"
    checkpoint_dir: str | None = None
    resume_template: str | None = None
    max_restarts: int | None = None
    grace_seconds: float | None = None
    keep_last_n: int | None = None
    env: dict[str, str] = {}
    # A provider with no machine yet (its backend says which): the machine to create.
    machine: CreateRequest | None = None
    s3_prefix: str | None = None  # checkpoints sync to PREFIX/<session>/checkpoints/
    # The backend's own job settings (declared Options with fills="spec"), by key.
    backend_options: dict[str, object] = {}
    budget: float | None = None  # USD the run may cost; None: [defaults] budget
    max_hours: float | None = None  # hours the run may take; None: [defaults] max_hours
    no_budget: bool = False  # neither, whatever [defaults] says


def build_session(request: LaunchRequest, defaults, *, remote: bool = False) -> Session:
    """Validate a launch request and turn it into a (not yet stored) session.

    Paths of a remote session are the host's: they are kept as given (relative ones are
    relative to the login directory there) and checked by the runner on the host.
    """
    command = list(request.command)
    if not command or not command[0].strip():
        raise TrainctlError("nothing to launch: give a command after --, e.g. "
                            "trainctl launch -- python train.py")
    if request.s3_prefix is not None:
        from .machines import run_option_owners

        if Placement.parse(request.provider).kind not in run_option_owners("s3_prefix"):
            raise TrainctlError("--s3-prefix is for runs on AWS (--provider aws...)")
        if not request.s3_prefix.startswith("s3://") or len(request.s3_prefix) <= 5:
            raise TrainctlError(f"the S3 prefix must look like s3://bucket/prefix, not "
                                f"'{request.s3_prefix}'")
    check_backend_options(request)
    nodes = check_nodes(command, request.backend_options.get("nodes"))
    for key in request.env:
        if not ENV_NAME.match(key):
            raise TrainctlError(f"bad environment variable name '{key}' (use letters, digits, _)")
    if remote:
        cwd = _remote_relative(request.cwd or ".")
    else:
        cwd = Path(request.cwd or os.getcwd()).expanduser().resolve()
        if not cwd.is_dir():
            raise TrainctlError(f"working directory {cwd} does not exist")
        path_env = request.env.get("PATH", os.environ.get("PATH", ""))
        if not _command_exists(command[0], cwd, path_env):
            raise TrainctlError(f"command not found: {command[0]} (looked in {cwd} and PATH)")
    template = request.resume_template if request.resume_template is not None \
        else defaults.resume_template
    if template:
        if "{checkpoint}" not in template:
            raise TrainctlError(f"resume template '{template}' must contain {{checkpoint}}")
        try:
            shlex.split(template)
        except ValueError as exc:
            raise TrainctlError(f"resume template '{template}' does not parse: {exc}") from None
    max_restarts = request.max_restarts if request.max_restarts is not None \
        else defaults.max_restarts
    if max_restarts < 0:
        raise TrainctlError(f"max restarts must be 0 or more, not {max_restarts}")
    grace = request.grace_seconds if request.grace_seconds is not None else defaults.grace_seconds
    if not 0 <= grace <= MAX_GRACE_SECONDS:  # nan fails this too; inf would never stop
        raise TrainctlError(f"grace seconds must be from 0 to {MAX_GRACE_SECONDS:g}, not {grace}")
    keep_last_n = request.keep_last_n if request.keep_last_n is not None \
        else defaults.keep_last_n
    if keep_last_n is not None and keep_last_n < 1:
        raise TrainctlError(f"keep last must be 1 or more, not {keep_last_n}")
    checkpoint_dir = request.checkpoint_dir or defaults.checkpoint_dir
    if checkpoint_dir and remote:
        checkpoint_dir = _remote_relative(checkpoint_dir)
    elif checkpoint_dir:
        checkpoint_dir = str((cwd / Path(checkpoint_dir).expanduser()).resolve())
    return Session(
        id="",
        name=(request.name or default_name(command)).strip(),
        provider=request.provider,
        command=command,
        cwd=str(cwd),
        session_dir="",
        env={k: (MASK if is_secret_name(k) else v) for k, v in request.env.items()},
        checkpoint_dir=checkpoint_dir,
        resume_template=template or None,
        max_restarts=max_restarts,
        grace_seconds=grace,
        keep_last_n=keep_last_n,
        nodes=nodes,
        created=time.time(),
    )


def check_backend_options(request: LaunchRequest) -> None:
    """A backend's job option given for another backend is refused, naming whose it is."""
    given = {k: v for k, v in request.backend_options.items() if v is not None}
    if not given:
        return
    from .machines import spec_option_owners

    kind = Placement.parse(request.provider).kind
    for key in given:
        owners = spec_option_owners(key)
        if key == "nodes" and kind not in owners:
            refuse_nodes(kind, given[key], owners)
        if kind not in owners:
            flag = "--" + key.replace("_", "-")
            raise TrainctlError(f"{flag} is for runs on {' or '.join(owners) or 'no backend'} "
                                f"(--provider {owners[0] if owners else '...'}:NAME)")


def refuse_nodes(kind: str, nodes, owners: list[str]) -> None:
    """Several nodes asked of a backend that says why it cannot run them: that line, with the
    places that can (`runpod: --nodes 2: RunPod pods cannot ...; use ssh:GROUP ...`)."""
    from ..backends.registry import declaration
    from ..runner.nodes import NodeCountError, node_count_text, several

    try:
        why = declaration(kind).no_nodes_because if several(nodes) else ""
    except (NodeCountError, TrainctlError):
        return  # a malformed count or an unknown backend: said elsewhere
    if not why:
        return
    places = [declaration(owner).nodes_place or owner for owner in owners]
    use = ", ".join(places[:-1]) + f" or {places[-1]}" if len(places) > 1 else "".join(places)
    raise TrainctlError(f"{kind}: --nodes {node_count_text(nodes)}: {why}"
                        + (f"; use {use} for several nodes" if use else ""))


def check_nodes(command: list[str], nodes) -> int:
    """--nodes N or MIN:MAX, and a torchrun command whose own --nnodes says the same; the
    nodes the run has at least (refreshes say how many it got)."""
    if nodes is None:
        return 1
    from ..runner.nodes import NodeCountError, nnodes_conflict, parse_node_count

    try:
        low, _ = parse_node_count(nodes)
    except NodeCountError as exc:
        raise TrainctlError(str(exc)) from None
    conflict = nnodes_conflict(command, nodes)
    if conflict:
        raise TrainctlError(conflict)
    return low


def several_nodes(request: LaunchRequest) -> bool:
    """Whether the launch asks for more than one node (--nodes 2, --nodes 1:3)."""
    from ..runner.nodes import several

    return several(request.backend_options.get("nodes"))


def _remote_relative(path: str) -> str:
    """'~/runs/x' -> 'runs/x': the runner resolves relative paths against the login dir."""
    if path in ("~", "~/"):
        return "."
    return path[2:] if path.startswith("~/") else path


def _command_exists(program: str, cwd: Path, path_env: str) -> bool:
    if os.sep in program:
        candidate = cwd / Path(program).expanduser()
        return candidate.is_file() and os.access(candidate, os.X_OK)
    import shutil  # here only, like every import the listing commands do not need

    return shutil.which(program, path=path_env) is not None


def new_machine_request(request: LaunchRequest) -> CreateRequest | None:
    """The machine to create before launching, or None to launch where the provider says."""
    from .machines import launch_request_machine

    return launch_request_machine(request.provider, request.machine)


def default_name(command: list[str]) -> str:
    """A short name for a run from its command: its script wherever it sits ('python -u
    train.py', 'torchrun --nproc_per_node 8 train.py', 'bash run.sh' -> 'train'/'run'), a
    python module ('python -m pkg.finetune' -> 'finetune'), else the program ('python -c
    CODE' -> 'python')."""
    words = [arg for arg in command if arg and not any(c.isspace() for c in arg)]
    for arg in words[1:]:
        name = Path(arg).name
        if name.endswith((".py", ".sh")) and not arg.startswith("-"):
            return name.rsplit(".", 1)[0]
    program = Path(command[0]).name
    if program.startswith("python"):
        if "-m" in command[1:-1]:
            return command[command.index("-m") + 1].rsplit(".", 1)[-1]
        if "-c" not in command:
            script = next((arg for arg in words[1:] if not arg.startswith("-")), None)
            if script:
                return Path(script).name
    return program


def write_session_files(session: Session, defaults, secret_env: dict[str, str], *,
                        local: bool = True, session_options: dict | None = None) -> None:
    """The session folder: spec.json for the runner, secret_env.json (0600) for secrets.
    A remote session's provider copies them to its host."""
    session_options = session_options or {}
    folder = Path(session.session_dir)
    folder.mkdir(parents=True, mode=0o700)
    if session.checkpoint_dir and local:
        Path(session.checkpoint_dir).mkdir(parents=True, exist_ok=True)
    if secret_env:
        path = folder / "secret_env.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(secret_env, handle)
    spec = {
        "id": session.id,
        "name": session.name,
        "command": session.command,
        "cwd": session.cwd,
        "env": session.env,
        "checkpoint_dir": session.checkpoint_dir,
        "resume_template": session.resume_template,
        "max_restarts": session.max_restarts,
        "backoff_seconds": defaults.backoff_seconds,
        "backoff_max_seconds": defaults.backoff_max_seconds,
        "grace_seconds": session.grace_seconds,
        "heartbeat_seconds": defaults.heartbeat_seconds,
        "usage_sample_seconds": defaults.usage_sample_seconds,
        "resume_from": None,
        "backend_options": {k: v for k, v in session_options.items() if v is not None},
        # Not for the runner: what rebuilding the store from this folder needs.
        "provider": session.provider,
        "host": session.host,
        "keep_last_n": session.keep_last_n,
        "created": session.created,
    }
    write_spec(session, spec)
    (folder / "train.log").touch()


def demo_script_path() -> Path:
    return Path(__file__).parents[1] / "demo" / "train.py"


def demo_request(*, steps: int | None = None, step_time: float | None = None) -> LaunchRequest:
    """The bundled toy trainer as a normal session, restartable from its own checkpoints."""
    command = [sys.executable, "-u", str(demo_script_path())]
    if steps is not None:
        command += ["--steps", str(steps)]
    if step_time is not None:
        command += ["--step-time", str(step_time)]
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    checkpoint_dir = paths.state_dir() / "demo-checkpoints" / stamp
    paths.state_dir().mkdir(parents=True, exist_ok=True)
    return LaunchRequest(
        command=command,
        cwd=str(paths.state_dir()),
        name="demo",
        checkpoint_dir=str(checkpoint_dir),
        resume_template="--resume {checkpoint}",
        max_restarts=3,
        grace_seconds=20,
    )
