"""Module attributes patched in the test's process and in the Python processes it starts
(the detached `trainctl _recover` of an auto-resume above all): monkeypatch.setattr here,
child_site/sitecustomize.py there, through TRAINCTL_TEST_PATCHES and PYTHONPATH. Values must
be JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

SITE = Path(__file__).resolve().parent / "child_site"
ENV = "TRAINCTL_TEST_PATCHES"


def patch_everywhere(monkeypatch, module, name: str, value) -> None:
    monkeypatch.setattr(module, name, value)
    patches = json.loads(os.environ.get(ENV) or "{}")
    patches[f"{module.__name__}:{name}"] = value
    monkeypatch.setenv(ENV, json.dumps(patches))
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(SITE) not in path:
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SITE), *path]))
