"""The runner and the checkpoint inspector as one file: a zipapp, ``trainctl-runner.pyz``,
copied to remote machines (and run from here for local sessions) as
``python3 trainctl-runner.pyz [--detach] SESSION_DIR | --probe SESSION_DIR | --stop ...``.

Built from this package's own sources at first use and kept under a folder named by their
hash: the same sources give the same bytes (sorted entries, fixed times and modes) and the
same version, which also names the runner's folder on a remote machine."""

from __future__ import annotations

import os

RUNNER_NAME = "trainctl-runner.pyz"
# What is shipped, relative to the trainctl_tui folder: the runner, the checkpoint inspector it
# judges checkpoints with, and the inspector's HDF5 reader (Keras files).
SHIPPED = ("runner", "checkpoints/inspect", "checkpoints/hdf5.py", "checkpoints/hdf5_structs.py")
# And each backend's part of the runner (runner/parts.py): its folder's runner_*.py files.
BACKENDS = "backends"
RUNNER_FILE_PREFIX = "runner_"
# The parent packages of what is shipped: empty in the zipapp (the real ones import more).
PACKAGE_INIT = (b'"""trainctl runner zipapp: the runner and the checkpoint inspector."""\n\n'
                b"from __future__ import annotations\n")
MAIN = (b'"""python3 trainctl-runner.pyz ...: the runner\'s command line."""\n\n'
        b"from __future__ import annotations\n\nimport sys\n\n"
        b"from trainctl_tui.runner.cli import main\n\nsys.exit(main())\n")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: the same for every build
VERSION_LENGTH = 12
_files = None  # the sources, read once per process


def bundle_files() -> dict:
    """{name in the zipapp: bytes} of everything it holds (read once per process)."""
    global _files
    if _files is None:
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        top = os.path.basename(package)
        files = {"__main__.py": MAIN, top + "/__init__.py": PACKAGE_INIT,
                 top + "/checkpoints/__init__.py": PACKAGE_INIT}
        for item in SHIPPED:
            path = os.path.join(package, item)
            names = sorted(os.listdir(path)) if os.path.isdir(path) else [""]
            for name in names:
                if name.endswith(".py") or not name:
                    with open(os.path.join(path, name) if name else path, "rb") as fh:
                        files["/".join(part for part in (top, item, name) if part)] = fh.read()
        files.update(_runner_parts(package, top))
        _files = files
    return dict(_files)


def _runner_parts(package: str, top: str) -> dict:
    """{name in the zipapp: bytes} of the backends' runner files, with empty packages above."""
    files = {}
    backends = os.path.join(package, BACKENDS)
    for folder in sorted(os.listdir(backends)):
        path = os.path.join(backends, folder)
        if not os.path.isdir(path):
            continue
        for name in sorted(os.listdir(path)):
            if name.startswith(RUNNER_FILE_PREFIX) and name.endswith(".py"):
                with open(os.path.join(path, name), "rb") as fh:
                    files[f"{top}/{BACKENDS}/{folder}/{name}"] = fh.read()
                files[f"{top}/{BACKENDS}/{folder}/__init__.py"] = PACKAGE_INIT
                files[f"{top}/{BACKENDS}/__init__.py"] = PACKAGE_INIT
    return files


def bundle_version(files: dict | None = None) -> str:
    """A hash of the zipapp's contents (not of its bytes: zlib versions may differ)."""
    import hashlib

    digest = hashlib.sha256()
    for name, data in sorted((files if files is not None else bundle_files()).items()):
        digest.update(b"%s\0%d\0" % (name.encode(), len(data)))
        digest.update(data)
    return digest.hexdigest()[:VERSION_LENGTH]


def write_bundle(path: str, files: dict) -> None:
    """Write `files` as a zipapp at `path`, byte for byte the same for the same files."""
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, data in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, wherever it is built
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)


def runner_bundle(cache_dir):
    """The zipapp for the current sources, built into `cache_dir`/<version>/ unless it is
    there already; returns its Path. Safe when several processes build it at once."""
    from pathlib import Path

    files = bundle_files()
    path = Path(cache_dir) / bundle_version(files) / RUNNER_NAME
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{RUNNER_NAME}.{os.getpid()}.tmp")
        write_bundle(str(temp), files)
        os.replace(str(temp), str(path))  # readers see no zipapp or a whole one
    return path
