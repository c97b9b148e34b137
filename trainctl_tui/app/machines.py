"""New machines as the front ends ask for them, backend-neutral: the options every backend
that rents machines declares (merged into one list of CLI flags and form fields), the
CreateRequest built from flags or form values, and which provider strings create a machine.
Reads the backends' declarations only, so nothing here imports an SDK."""

from __future__ import annotations

from ..backends.registry import cloud_names, declaration, declarations
from ..core.errors import TrainctlError
from ..core.machines import CreateRequest
from ..core.options import Option, Place
from ..core.placement import Placement


def either_provider(clouds: list[str] | None = None) -> str:
    """'--provider aws or --provider runpod', for errors that ask for one."""
    return " or ".join(f"--provider {name}" for name in (clouds or cloud_names()))


def machine_options(command: str) -> list[tuple[Option, str]]:
    """(option, help) of every flag of `command` ("create" | "launch"), one per flag: a flag
    several backends declare is one argument whose help joins theirs. Each backend's own
    order is kept; a flag new to the list goes just before the next one it shares."""
    merged: list[Option] = []
    helps: dict[str, list[str]] = {}
    for backend in declarations():
        pending: list[Option] = []
        for option in backend.options:
            if not option.flag or command not in option.commands:
                continue
            if option.flag in helps:
                at = next(n for n, o in enumerate(merged) if o.flag == option.flag)
                merged[at:at] = pending
                pending = []
            else:
                pending.append(option)
                helps[option.flag] = []
            helps[option.flag].append(option.help_for(command))
        merged += pending
    return [(option, "; ".join(helps[option.flag])) for option in merged]


def form_fields(form: str) -> list[tuple[Option, list[str]]]:
    """(option, the backends that have it) of every field of `form`, in backend order."""
    fields: dict[str, tuple[Option, list[str]]] = {}
    for backend in declarations():
        for option in backend.options:
            if option.field and form in option.forms:
                fields.setdefault(option.field, (option, []))[1].append(backend.name)
    return list(fields.values())


def cloud_label(name: str) -> str:
    return declaration(name).cloud_label or name


def host_kind() -> str:
    """The KIND of configured-host rows on the Instances screen: the backend of hosts."""
    return next(d.name for d in declarations() if d.lists_hosts)


def rents_by_gpu(name: str) -> bool:
    return declaration(name).rents_by_gpu


def instance_kind(name: str) -> str:
    """The KIND column of a cloud's machines on the Instances screen."""
    try:
        return declaration(name).instance_kind or name
    except TrainctlError:
        return name


def new_machine_kind(provider: str) -> str | None:
    """The backend that creates a machine first when launching on `provider`, or None."""
    placement = Placement.parse(provider)
    if placement.kind not in cloud_names():
        return None
    return placement.kind if declaration(placement.kind).creates_machine(placement) else None


def new_machine_cloud(provider: str) -> str | None:
    """The cloud of `provider` when it is one that rents machines (its machine flags apply)."""
    kind = Placement.parse(provider).kind
    return kind if kind in cloud_names() else None


def flags_given(values: dict[str, object]) -> bool:
    """Whether any machine flag was given (values by argparse dest; defaults are not)."""
    defaults = {option.dest: option.default for option, _ in machine_options("launch")}
    return any(value is not None and value != defaults.get(dest, None) and value is not False
               for dest, value in values.items())


def request_from_flags(provider: str | None, values: dict[str, object], *, spot: bool = False,
                       on_demand: bool = False, name: str | None = None,
                       dry_run: bool = False) -> CreateRequest:
    """`instance create` / `launch` flags (values by argparse dest) as a CreateRequest,
    refused in one line when they do not fit the cloud."""
    if not provider:
        raise TrainctlError(f"instance create needs {either_provider()}")
    if spot and on_demand:
        raise TrainctlError("--spot and --on-demand exclude each other")
    backend = declaration(provider)
    for dests, message in backend.foreign_options:
        if any(values.get(dest) is not None for dest in dests):
            raise TrainctlError(message)
    request = CreateRequest(provider=provider, name=name, dry_run=dry_run,
                            spot=True if spot else (False if on_demand else None))
    for option in backend.options:
        value = values.get(option.dest)
        if option.flag and option.fills == "machine" and value is not None:
            request.set(option.key, value)
    if request.max_price is not None and request.max_price <= 0:
        raise TrainctlError(f"the price must be > 0, got {request.max_price:g}")
    for option, _ in machine_options("create"):
        value = values.get(option.dest)
        least = option.minimum or 1
        if option.type == "int" and value is not None and value < least:
            raise TrainctlError(f"{option.flag} must be at least {least}, got {value}")
    backend.check(request, form=False)
    return request


def check_form_request(request: CreateRequest) -> None:
    """What the cloud refuses of a request from the launch or create form."""
    declaration(request.provider).check(request, form=True)


def launch_request_machine(provider: str, machine: CreateRequest | None) -> CreateRequest | None:
    """The machine to create before launching on `provider`, or None to launch where the
    provider says."""
    kind = new_machine_kind(provider)
    if kind is None:
        if machine is not None:
            raise TrainctlError(f"machine options (--type, --spot, --gpu ...) only apply when "
                                f"trainctl creates the machine: --provider aws or runpod, not "
                                f"{provider}")
        return None
    return declaration(kind).machine_request(Placement.parse(provider),
                                             machine or CreateRequest(provider=kind))


def launch_places(config, clouds: list[str]) -> list[Place]:
    """The providers the launch form offers, backend by backend; clouds: those set up."""
    return [place for backend in declarations()
            for place in backend.launch_places(config, backend.name in clouds)]


def select_choices(config, provider: str, key: str) -> list[tuple[str, str]]:
    return declaration(provider).choices(config, key)


def run_option_owners(key: str) -> list[str]:
    """The backends that take run setting `key` (e.g. "s3_prefix")."""
    return [backend.name for backend in declarations()
            if any(o.key == key and o.fills == "run" for o in backend.options)]


def spec_option_owners(key: str) -> list[str]:
    """The backends whose job takes option `key` (fills="spec", e.g. slurm's "time")."""
    return [backend.name for backend in declarations()
            if any(o.key == key and o.fills == "spec" for o in backend.options)]
