"""The flags of a new machine (`instance create`, `launch`), made from what each backend
declares (app.machines.machine_options): this file names no cloud."""

from __future__ import annotations

TYPES = {"str": str, "int": int, "float": float}


def add_machine_flags(parser, command: str) -> None:
    """Every backend's machine flags of `command`, then the ones every cloud has."""
    from ..app.machines import machine_options

    for option, help_text in machine_options(command):
        kwargs = {"help": help_text, "type": TYPES[option.type]}
        if option.metavar:
            kwargs["metavar"] = option.metavar
        if option.default is not None:
            kwargs["default"] = option.default
        if option.choices:
            kwargs["choices"] = list(option.choices)
        parser.add_argument(option.flag, **kwargs)


def machine_values(args, command: str, fills: str = "machine") -> dict[str, object]:
    """{argparse dest: value} of the flags of `command` that set the new machine (or, with
    fills="run", the run: --s3-prefix)."""
    from ..app.machines import machine_options

    return {option.dest: getattr(args, option.dest)
            for option, _ in machine_options(command) if option.fills == fills}


def cloud_names() -> list[str]:
    from ..app.machines import cloud_names

    return cloud_names()
