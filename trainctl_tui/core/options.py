"""What a backend declares about the settings of a new machine, as plain data: the CLI turns
an Option into an argparse argument, the launch and create forms into a field. Stdlib only,
so listing every backend's options imports no SDK."""

from __future__ import annotations

from dataclasses import dataclass

CREATE, LAUNCH = "create", "launch"  # `instance create` / the create form; `launch` / its form


@dataclass(frozen=True)
class Option:
    """One backend setting. `key` is what it fills: a CreateRequest field ("type",
    "max_price") or a key of CreateRequest.options; with fills="run", a LaunchRequest field
    instead (a setting of the run, not of the machine: "s3_prefix")."""

    key: str
    flag: str = ""  # "--gpu"; "" = no CLI flag
    help: str = ""
    launch_help: str = ""  # the help under `launch` when it says less than `help`
    type: str = "str"  # "str" | "int" | "float"
    metavar: str | None = None
    default: object = None
    choices: tuple[str, ...] = ()
    commands: tuple[str, ...] = (CREATE, LAUNCH)  # where the flag exists
    minimum: int | None = None  # ints: the least allowed ("--gpu-count must be at least 1")
    # The form field: its id ("c-"/"m-" + field), label and what fills a select.
    field: str = ""  # "" = no form field
    label: str = ""
    placeholder: str = ""
    value: str = ""  # an input's initial text
    forms: tuple[str, ...] = (CREATE, LAUNCH)
    select: str = ""  # "" = an input; "config" = choices the backend lists; "prices" = types
    after: str = ""  # the common field it follows: "" (before Spot), "image" or "disk"
    required: str = ""  # a select left blank: this message
    noun: str = ""  # how a form error names it ("container disk")
    # "machine" (the CreateRequest), "run" (a LaunchRequest field) or "spec" (a setting of
    # the backend's job, kept in LaunchRequest.backend_options and the spec's
    # "backend_options" for its provider: slurm's --time)
    fills: str = "machine"

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def help_for(self, command: str) -> str:
        return (self.launch_help or self.help) if command == LAUNCH else self.help


@dataclass(frozen=True)
class Place:
    """A provider string the launch form offers, what it means, and whether a machine it
    creates is spot by default (None: it creates none, or the form's default)."""

    provider: str
    detail: str = ""
    spot: bool | None = None
