"""The wheel carries everything trainctl needs at run time: build it, install it into a fresh
venv, and run it from outside the source tree."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT


def dependency_dirs() -> list[str]:
    """Where this environment's packages live: a venv's own site-packages (not the base
    interpreter's), or the system's when the tests run without a venv."""
    dirs = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    if site.ENABLE_USER_SITE:
        dirs.add(site.getusersitepackages())
    return sorted(d for d in dirs if Path(d).is_dir())


def make_venv_borrowing_dependencies(venv: Path) -> None:
    """A fresh venv that holds only what is installed into it, and finds the dependencies
    (textual, rich, ...) in the current environment without a network: a `.pth` appends the
    current site-packages *after* the venv's own. A plain path line in a .pth does not run the
    .pth files of that directory, so an editable install of trainctl there stays invisible."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    (own,) = (venv / "lib").glob("python3*/site-packages")
    (own / "zz_borrowed_dependencies.pth").write_text("\n".join(dependency_dirs()) + "\n")


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
    entry_points_text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "trainctl = trainctl_tui.cli.main:main" in entry_points_text


def test_installed_wheel_runs_from_a_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    make_venv_borrowing_dependencies(venv)
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
