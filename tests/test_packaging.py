"""The wheel carries everything trainctl needs at run time: build it, install it into a fresh
venv, and run it from outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )
    (built,) = out.glob("trainctl_tui-*.whl")
    return built


def test_wheel_contains_styles_demo_and_runner(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "trainctl_tui/demo/train.py" in names
    assert "trainctl_tui/runner/supervisor.py" in names
    styles = sorted(p.name for p in (ROOT / "styles").glob("*.tcss"))
    assert styles, "styles/*.tcss missing from the source tree"
    for name in styles:
        assert f"trainctl_tui/styles/{name}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "trainctl = trainctl_tui.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_runs_from_a_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    # System site-packages supply the dependencies (no network needed); the venv's own
    # site-packages, holding only our wheel, come first on sys.path.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
           "--no-index", str(wheel)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    version = subprocess.run([str(venv / "bin" / "trainctl"), "--version"], cwd=outside,
                             env=env, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("trainctl ")
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import trainctl_tui, pathlib; p = pathlib.Path(trainctl_tui.__file__).parent;"
         "print(p); print(sorted(x.name for x in (p / 'styles').glob('*.tcss')))"],
        cwd=outside, env=env, capture_output=True, text=True, timeout=60)
    package_dir, styles = where.stdout.splitlines()
    assert package_dir.startswith(str(venv))
    assert styles != "[]"
    demo = subprocess.run(
        [str(venv / "bin" / "trainctl"), "demo", "--once", "--steps", "20", "--step-time", "0.01"],
        cwd=outside, env={**env, "TRAINCTL_HOME": str(tmp_path / "home")},
        capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    assert "launched demo as session" in demo.stdout
    assert "succeeded" in demo.stdout or "running" in demo.stdout
