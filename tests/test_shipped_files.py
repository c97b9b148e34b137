"""The runner's zipapp, copied to remote machines (the runner, the checkpoint inspector and
its HDF5 reader), runs on the host's own Python, as old as 3.7 (Amazon Linux 2). Without a 3.7
here to run them on, check that they use no syntax and no call newer than that: on a host, a
TypeError from `zip(strict=True)` would make every checkpoint "unknown" and no restart would
ever resume."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT
from runner_names import runner_zipapp

from trainctl_tui.runner.bundle import (
    RUNNER_NAME,
    bundle_files,
    bundle_version,
    runner_bundle,
    write_bundle,
)

# Every file in the zipapp, by its name there.
SHIPPED = sorted(bundle_files())
PY37 = "/root/.pyenv/versions/3.7.16/bin/python3"
# Names whose use means a newer Python: attribute or function -> the version that added it.
NEWER_NAMES = {
    "removeprefix": "3.9", "removesuffix": "3.9", "cached_property": "3.8", "bit_count": "3.10",
    "isqrt": "3.8", "prod": "3.8", "pairwise": "3.10", "to_thread": "3.9", "is_relative_to": "3.9",
    "readlink": "3.9", "shlex_join": "3.8", "batched": "3.12", "unlink_missing_ok": "3.8",
    "BYTEARRAY8": "3.8",
}
# Keyword arguments added later to calls that existed in 3.7.
NEWER_KEYWORDS = {("zip", "strict"): "3.10", ("unlink", "missing_ok"): "3.8",
                  ("dataclass", "slots"): "3.10", ("dataclass", "kw_only"): "3.10"}


def newer_uses(source: str) -> list[str]:
    tree = ast.parse(source, feature_version=(3, 7))  # syntax: a SyntaxError fails the test
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in NEWER_NAMES:
            found.append(f"line {node.lineno}: .{node.attr} (Python {NEWER_NAMES[node.attr]})")
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            for keyword in node.keywords:
                since = NEWER_KEYWORDS.get((name, keyword.arg))
                if since:
                    found.append(f"line {node.lineno}: {name}({keyword.arg}=...) "
                                 f"(Python {since})")
    return sorted(found, key=lambda text: int(text.split()[1].rstrip(':')))


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_files_need_nothing_newer_than_python_3_7(path):
    source = bundle_files()[path].decode()
    assert "from __future__ import annotations" in source  # `list[str]` hints on 3.7
    assert newer_uses(source) == []


def test_the_check_finds_what_it_looks_for():
    source = "x = zip(a, b, strict=True)\ny = s.removeprefix('a')\nPath(p).unlink(missing_ok=1)\n"
    assert newer_uses(source) == ["line 1: zip(strict=...) (Python 3.10)",
                                  "line 2: .removeprefix (Python 3.9)",
                                  "line 3: unlink(missing_ok=...) (Python 3.8)"]
    with pytest.raises(SyntaxError):
        newer_uses("if (n := 3):\n    pass\n")


def test_shipped_files_exist():
    from_package = [name for name in SHIPPED if name.startswith("trainctl_tui/")]
    assert all(Path(ROOT / path).is_file() for path in from_package)


def test_the_zipapp_holds_the_runner_the_inspector_and_the_hdf5_reader():
    names = zipfile.ZipFile(runner_zipapp()).namelist()
    assert names == sorted(names)
    for name in ("__main__.py", "trainctl_tui/runner/cli.py",
                 "trainctl_tui/checkpoints/inspect/__init__.py",
                 "trainctl_tui/checkpoints/hdf5.py"):
        assert name in names
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    assert names == SHIPPED


def test_the_zipapp_is_built_the_same_every_time(tmp_path):
    first, second = tmp_path / "a.pyz", tmp_path / "b.pyz"
    write_bundle(str(first), bundle_files())
    write_bundle(str(second), bundle_files())
    assert first.read_bytes() == second.read_bytes()
    built = runner_bundle(tmp_path / "cache")
    assert built == tmp_path / "cache" / bundle_version() / RUNNER_NAME
    assert built.read_bytes() == first.read_bytes()
    assert runner_bundle(tmp_path / "cache") == built  # cached: not written again
    assert {info.date_time for info in zipfile.ZipFile(built).infolist()} == {
        (1980, 1, 1, 0, 0, 0)}
    changed = {**bundle_files(), "trainctl_tui/runner/status.py": b"# changed\n"}
    assert bundle_version(changed) != bundle_version()


def imports_of(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add((node.module or "").split(".")[0])
    return found


def test_the_zipapp_imports_only_the_standard_library_and_itself():
    outside = set()
    for data in bundle_files().values():
        outside |= {m for m in imports_of(data.decode()) if m not in sys.stdlib_module_names}
    assert outside == {"trainctl_tui"}


def test_every_import_inside_the_zipapp_is_a_file_it_holds():
    """The backends' runner parts (backends/*/runner_*.py) ship with the runner: what they
    import of trainctl, like what the runner imports, must be in the zipapp too."""
    files = bundle_files()
    modules = {name[:-len("/__init__.py")] if name.endswith("/__init__.py") else name[:-3]
               for name in files if name.endswith(".py")}
    modules = {name.replace("/", ".") for name in modules}
    missing = []
    for name, data in files.items():
        package = name.rsplit("/", 1)[0].replace("/", ".")
        for node in ast.walk(ast.parse(data.decode())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if target not in modules and not all(
                        f"{target}.{alias.name}" in modules for alias in node.names):
                    missing.append(f"{name}: {target}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "trainctl_tui") and node.module not in modules:
                missing.append(f"{name}: {node.module}")
    assert missing == []
    assert "trainctl_tui/backends/aws/runner_part.py" in files  # a part is shipped


@pytest.mark.parametrize("python", [sys.executable, PY37], ids=["py", "py3.7"])
def test_the_zipapp_runs_alone(python, tmp_path):
    if not os.path.exists(python):
        pytest.skip("python 3.7 is not installed")
    zipapp = tmp_path / RUNNER_NAME
    zipapp.write_bytes(runner_zipapp().read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    usage = subprocess.run([python, str(zipapp), "--help"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=60)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: trainctl-runner.pyz")
    session = tmp_path / "session"
    session.mkdir()
    (session / "status.json").write_text(json.dumps({"state": "succeeded"}))
    probe = subprocess.run([python, str(zipapp), "--probe", str(session)], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=60)
    assert probe.returncode == 0, probe.stderr
    answer = json.loads(probe.stdout)
    assert (answer["status"]["state"], answer["runner_alive"], answer["log_size"]) == (
        "succeeded", False, 0)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from trainctl_tui.checkpoints.inspect import inspect_checkpoint; "
            "print(inspect_checkpoint(sys.argv[2]).format)")
    fixture = ROOT / "tests" / "fixtures" / "checkpoints" / "model.safetensors"
    inspected = subprocess.run([python, "-c", code, str(zipapp), str(fixture)],
                               capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert inspected.returncode == 0, inspected.stderr
    assert inspected.stdout.strip() == "safetensors"
