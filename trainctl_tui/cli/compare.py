"""`trainctl compare A B [C ...] [--metric NAME] [--json]`."""

from __future__ import annotations

import sys


def add_parser(commands) -> None:
    compare = commands.add_parser(
        "compare", help="runs side by side: last, min (at step), steps, elapsed, cost")
    compare.add_argument("runs", nargs="+", metavar="RUN",
                         help="session ids/names, log files or "
                         "ssh://[user@]host[:port]/path/to/train.log (two or more)")
    compare.add_argument("--metric", help="the series to compare (default: loss, else "
                         "val_loss)")
    compare.add_argument("--json", action="store_true", help="the table and every point, as "
                         "JSON")


def print_comparison(service, args) -> int:
    from ..app.compare import compare
    from ..core import aio

    comparison = aio.run(compare(service, args.runs, args.metric))
    if args.json:
        import json

        print(json.dumps(comparison.to_json()))
    else:
        from ..render.compare import render_comparison

        render_comparison(comparison, sys.stdout)
    return 0
