"""Checkpoints that live on an SSH host: listed and inspected there (the same stdlib-safe
inspector, shipped in the runner's zipapp), never downloaded just to be described."""

from __future__ import annotations

import json

from ...checkpoints.catalog import CheckpointRow
from ...checkpoints.inspect import CheckpointInfo, TensorInfo
from ...checkpoints.scan import CheckpointEntry

# Runs on the host with its python3: lists a directory with the runner's own rules and
# inspects each finished checkpoint, both imported from the runner's zipapp (argv[1]).
LISTING_SCRIPT = r"""
import json, os, sys, time
sys.path.insert(0, os.path.abspath(sys.argv[1]))
from trainctl_tui.runner import checkpoint_files
from trainctl_tui.checkpoints import inspect as ckpt_inspect
folder = sys.argv[2]
if not os.path.isdir(folder):
    print(json.dumps({"error": "no such directory: " + folder})); sys.exit(0)
TEMP = (".tmp", ".partial", ".part", ".incomplete")
top = os.path.realpath(folder)
rows = []
def row_of(name, path):
    is_dir = os.path.isdir(path)
    base = name
    for suffix in TEMP:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    if not (base.lower().endswith(checkpoint_files.CHECKPOINT_SUFFIXES)
            or (is_dir and checkpoint_files.CHECKPOINT_DIR_RE.match(base))):
        return None
    row = {"path": path, "name": name, "kind": "dir" if is_dir else "file",
           "step": checkpoint_files.checkpoint_step(name), "size": 0, "mtime": 0.0,
           "writing": False, "info": None, "note": None}
    real = os.path.realpath(path)
    if os.path.islink(path) and (not os.path.exists(real) or is_dir and (
            real == top or not real.startswith(top.rstrip("/") + "/"))):
        # `x.pt -> /` is never walked; a loop resolves nowhere
        row["note"] = "symlink -> %s: not followed (%s)" % (
            os.readlink(path), "outside the checkpoint dir" if os.path.exists(real) else "broken")
        return row
    st = os.stat(path)
    size, mtime = st.st_size, st.st_mtime
    if is_dir:
        size = 0
        for root, _, files in os.walk(path):
            for f in files:
                try:
                    fst = os.stat(os.path.join(root, f))
                except OSError:
                    continue
                size += fst.st_size
                mtime = max(mtime, fst.st_mtime)
    writing = base != name or name.startswith((".", "tmp"))
    if not writing and (checkpoint_files.unfinished_dir_reason(path, name) if is_dir
                        else checkpoint_files.unfinished_file_reason(path)):
        writing = True
    if not writing and time.time() - mtime < 2 and not is_dir:
        time.sleep(0.2)
        writing = os.stat(path).st_size != size
    row.update(size=size, mtime=mtime, writing=writing)
    if not writing:
        row["info"] = ckpt_inspect.inspect_checkpoint(path).to_json()
    return row
for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    try:
        row = row_of(name, path)
    except FileNotFoundError:
        continue  # removed while we looked
    except OSError as exc:  # listed as what it is: unknown, and why
        row = {"path": path, "name": name, "kind": "file", "step": None, "size": 0,
               "mtime": 0.0, "writing": False, "info": None,
               "note": "cannot read: %s" % (exc.strerror or exc)}
    if row is not None:
        rows.append(row)
print(json.dumps({"rows": rows}))
"""


def rows_from_listing(listing: dict, directory: str) -> list[CheckpointRow]:
    rows = []
    for raw in listing.get("rows", []):
        entry = CheckpointEntry(path=raw["path"], name=raw["name"], kind=raw["kind"],
                                step=raw["step"], mtime=raw["mtime"], size=raw["size"],
                                writing=raw["writing"], root=directory,
                                note=raw.get("note"))
        rows.append(CheckpointRow(entry, info_from_json(raw["info"]) if raw["info"] else None))
    rows.sort(key=lambda r: (r.step is not None, r.step or 0, r.entry.mtime, r.entry.name))
    return rows


def info_from_json(data: dict) -> CheckpointInfo:
    fields = {k: v for k, v in data.items() if k in CheckpointInfo.__dataclass_fields__}
    fields["tensors"] = [TensorInfo(t["name"], t["dtype"], tuple(t["shape"]), t["numel"],
                                    t["nbytes"]) for t in data.get("tensors", [])]
    return CheckpointInfo(**fields)


def listing_command(python: str, runner_path: str, directory: str) -> list[str]:
    return [python, "-c", LISTING_SCRIPT, runner_path, directory]


# The inspector's own command line, run from the runner's zipapp (argv[1]).
INSPECT_SCRIPT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                  "from trainctl_tui.checkpoints.inspect import main; sys.exit(main())")


def inspect_command(python: str, runner_path: str, path: str, deep: bool) -> list[str]:
    return [python, "-c", INSPECT_SCRIPT, runner_path, path, "--json"] + (
        ["--deep"] if deep else [])


def parse_listing(stdout: bytes) -> dict:
    return json.loads(stdout)
