"""The files copied to remote machines (the runner, the checkpoint inspector and its HDF5
reader) run on the host's own Python, as old as 3.7 (Amazon Linux 2). Without a 3.7 here to
run them on, check that they use no syntax and no call newer than that: on a host, a
TypeError from `zip(strict=True)` would make every checkpoint "unknown" and no restart would
ever resume."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

SHIPPED = ["trainctl_tui/runner/supervisor.py", "trainctl_tui/checkpoints/inspect.py",
           "trainctl_tui/checkpoints/hdf5.py"]
# Names whose use means a newer Python: attribute or function -> the version that added it.
NEWER_NAMES = {
    "removeprefix": "3.9", "removesuffix": "3.9", "cached_property": "3.8", "bit_count": "3.10",
    "isqrt": "3.8", "prod": "3.8", "pairwise": "3.10", "to_thread": "3.9", "is_relative_to": "3.9",
    "readlink": "3.9", "shlex_join": "3.8", "batched": "3.12", "unlink_missing_ok": "3.8",
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
    source = (ROOT / path).read_text()
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
    assert all(Path(ROOT / path).is_file() for path in SHIPPED)
