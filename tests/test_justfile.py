"""The justfile's recipes stay what the docs say they are: `just test` is the README's test
command, every script a recipe runs exists, and `test-fast` leaves out exactly the tests that
start a real component."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def recipes() -> dict[str, list[str]]:
    """name -> its command lines, read the way just reads them (a recipe line starts at the
    margin, its commands are indented)."""
    found: dict[str, list[str]] = {}
    name = None
    for line in (ROOT / "justfile").read_text().splitlines():
        header = re.match(r"^([a-z][\w-]*)(?:\s[^:]*)?:\s*$", line)
        if header:
            name = header.group(1)
            found[name] = []
        elif name and line.startswith("    "):
            found[name].append(line.strip())
    return found


def test_just_test_is_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -e '.[test]' && python -m pytest -q" in readme
    assert recipes()["test"] == ["python -m pytest -q {{args}}"]


def test_every_recipe_the_issue_names_exists_and_the_default_lists_them():
    found = recipes()
    for name in ("test", "test-fast", "lint", "bench", "screenshots", "demo", "slurm-up",
                 "slurm-down", "ci"):
        assert found.get(name), f"justfile lacks '{name}'"
    assert found["default"] == ["@just --list --unsorted"]
    assert found["ci"] == ["bash .ci/run"]


def test_every_script_a_recipe_runs_exists():
    scripts = [word for lines in recipes().values() for line in lines
               for word in line.split() if word.endswith((".py", "/run"))]
    assert "bench/monitor.py" in scripts and "tests/slurm_cluster.py" in scripts
    for script in scripts:
        assert (ROOT / script).is_file(), f"the justfile runs {script}, which does not exist"
    benches = {f"bench/{path.name}" for path in (ROOT / "bench").glob("*.py")}
    runs = set(scripts)
    # monitor_throughput.py is a part of monitor.py (it prints its figures too).
    assert benches - runs == {"bench/monitor_throughput.py"}


def collected(*options: str) -> set[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only",
                          "-p", "no:cacheprovider", *options, "tests/test_slurm_cluster.py",
                          "tests/test_justfile.py"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120).stdout
    return {line for line in out.splitlines() if "::" in line}


def test_test_fast_leaves_out_the_tests_that_start_a_real_component():
    fast = collected("-m", "not real")
    real = collected("-m", "real")
    assert fast and real and not fast & real
    assert all(test.startswith("tests/test_slurm_cluster.py") for test in real)
    assert all(test.startswith("tests/test_justfile.py") for test in fast)
