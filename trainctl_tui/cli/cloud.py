"""The machine verbs: `instances`, `instance create|start|stop|terminate`, `prices`, `gpus`,
`clusters`. Every one calls the same Service method as its TUI key or screen."""

from __future__ import annotations

import argparse
import sys

from ..core.errors import TrainctlError


def add_parsers(commands) -> None:
    from .machine_flags import add_machine_flags, cloud_names

    clouds = cloud_names()
    instances = commands.add_parser(
        "instances", help="cloud machines (EC2 instances, RunPod pods): state, $/h, cost")
    instances.add_argument("--json", action="store_true", help="print JSON")
    instances.add_argument("--provider", choices=clouds, help="only this cloud")
    instances.add_argument("--all", action="store_true",
                           help="also machines trainctl did not create")

    instance = commands.add_parser(
        "instance", help="create, start, stop or terminate one cloud machine",
        description=f"trainctl instance create --provider {'|'.join(clouds)} [options]  |  "
        "trainctl instance start|stop|terminate ID [--yes] [--dry-run]")
    instance.add_argument("action", choices=["create", "start", "stop", "terminate"])
    instance.add_argument("id", nargs="?", help="instance or pod id (start/stop/terminate)")
    instance.add_argument("--provider", choices=clouds,
                          help="the cloud (create: required; otherwise told by the id)")
    add_machine_flags(instance, "create")
    instance.add_argument("--spot", action="store_true",
                          help="spot / interruptible (cheaper, may be reclaimed)")
    instance.add_argument("--on-demand", action="store_true",
                          help="on-demand even if the template says spot")
    instance.add_argument("--name", help="a name for the machine")
    instance.add_argument("--yes", "-y", action="store_true",
                          help="terminate without asking (for scripts)")
    instance.add_argument("--dry-run", action="store_true",
                          help="aws: ask EC2 whether it would work (DryRun), change nothing")
    instance.add_argument("--force", action="store_true",
                          help="act on a machine trainctl did not create")
    instance.add_argument("--json", action="store_true", help="print the machine as JSON")

    prices = commands.add_parser("prices", help="what a machine type costs, per zone and market")
    prices.add_argument("--provider", choices=clouds, required=True)
    prices.add_argument("--type", help="aws instance type / runpod GPU type (default: all)")
    prices.add_argument("--json", action="store_true", help="print JSON")

    from ..render.clusters import JSON_SCHEMA

    clusters = commands.add_parser(
        "clusters", help="batch clusters (Slurm): partitions, free nodes and GPUs, your queue",
        description="Each configured cluster's partitions (nodes idle / mixed / allocated /\n"
        "down, GPUs free, time limit) and your jobs in its queue, asked on its login\n"
        "node. A cluster whose login node does not answer shows as unreachable.",
        epilog=JSON_SCHEMA, formatter_class=raw_text_formatter())
    clusters.add_argument("names", nargs="*", metavar="NAME", help="only these clusters")
    clusters.add_argument("--json", action="store_true", help="print JSON (schema below)")

    gpus = commands.add_parser("gpus", help="GPU types with prices and availability")
    gpus.add_argument("--provider", choices=sorted(clouds, key=gpu_cloud_first),
                      default=min(clouds, key=gpu_cloud_first))
    gpus.add_argument("--json", action="store_true", help="print JSON")


def raw_text_formatter():
    """A help formatter that keeps the description's and epilog's lines as written (the
    epilog is a schema)."""
    import argparse
    from functools import partial

    from ..core.formatting import terminal_columns

    return partial(argparse.RawDescriptionHelpFormatter, width=terminal_columns() - 2)


def gpu_cloud_first(name: str) -> tuple[bool, str]:
    """`trainctl gpus` asks the cloud that rents by GPU type by default."""
    from ..app.machines import rents_by_gpu

    return (not rents_by_gpu(name), name)


def _service():
    from ..app.service import Service

    return Service()


def _run(coroutine):
    import asyncio

    return asyncio.run(coroutine)


def cmd_instances(args) -> int:
    service = _service()
    clouds = service.clouds(args.provider)
    instances, errors = _run(service.instances(provider=args.provider,
                                               include_unmanaged=args.all))
    from ..render.instances import instances_json, render_instances

    if args.json:
        print(instances_json(instances, errors))
    else:
        render_instances(instances, errors, sys.stdout, clouds=clouds)
    return 1 if errors and not instances else 0


def create_request(args):
    """The flags of `instance create` as a CreateRequest."""
    from ..app.machines import request_from_flags
    from .machine_flags import machine_values

    return request_from_flags(args.provider, machine_values(args, "create"), spot=args.spot,
                              on_demand=args.on_demand, name=args.name, dry_run=args.dry_run)


def cmd_instance(args) -> int:
    import json

    from ..render.instances import render_instance

    service = _service()
    if args.action == "create":
        if args.id:
            raise TrainctlError("instance create takes no id (did you mean start?)")
        request = create_request(args)

        def progress(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        instance = _run(service.create_instance(request, progress))
        verb = "dry run" if args.dry_run else "created"
    else:
        if not args.id:
            raise TrainctlError(f"instance {args.action} needs an instance or pod id "
                                "(see trainctl instances)")
        if args.action == "terminate" and not args.dry_run and not args.yes:
            current = _run(service.instance(args.id, provider=args.provider))
            confirm_terminate(current)
        instance = _run(service.instance_action(args.action, args.id, provider=args.provider,
                                                dry_run=args.dry_run, force=args.force))
        verb = "dry run" if args.dry_run else {"start": "starting", "stop": "stopping",
                                               "terminate": "terminating"}[args.action]
    if args.json:
        print(json.dumps({"version": 1, **instance.to_json()}, indent=2))
    else:
        render_instance(instance, sys.stdout, verb)
    return 0


def confirm_terminate(instance) -> None:
    """Name the machine and ask; without a terminal to ask on, refuse (scripts pass --yes)."""
    price = f", ${instance.price_per_hour:.3f}/h" if instance.price_per_hour is not None else ""
    what = (f"{instance.provider} {instance.id}" + (f" ({instance.name})" if instance.name else "")
            + f": {instance.type or '?'}, {instance.state}{price}")
    if not sys.stdin.isatty():
        raise TrainctlError(f"not terminating {what} without confirmation: pass --yes")
    answer = input(f"Terminate {what}? Its disk is deleted. [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise TrainctlError(f"not terminated: {instance.id}")


def cmd_prices(args) -> int:
    from ..render.instances import prices_json, render_prices

    prices = _run(_service().prices(args.provider, args.type))
    if args.type and not prices:
        raise TrainctlError(f"{args.provider}: no prices for '{args.type}'")
    if args.json:
        print(prices_json(prices))
    else:
        render_prices(prices, sys.stdout, title=f"{args.provider} {args.type or ''}".strip())
    return 0


def cmd_gpus(args) -> int:
    return cmd_prices(argparse.Namespace(provider=args.provider, type=None, json=args.json))


def cmd_clusters(args) -> int:
    from ..core.clusters import UP
    from ..render.clusters import clusters_json, render_clusters

    clusters = _run(_service().clusters(args.names or None))
    if args.json:
        print(clusters_json(clusters))
    else:
        render_clusters(clusters, sys.stdout)
    return 0 if any(cluster.state == UP for cluster in clusters) else 1


COMMANDS = {
    "instances": cmd_instances,
    "instance": cmd_instance,
    "prices": cmd_prices,
    "gpus": cmd_gpus,
    "clusters": cmd_clusters,
}
