"""Stdlib modules imported when first used. trainctl's CLI imports the runner's modules to
read status files and check pids, and must not pay for what only the runner uses."""

from __future__ import annotations

import importlib


class OnFirstUse:
    """Stands in for module `name` in `namespace` (a module's globals()) until first used;
    then the module itself takes its place there."""

    def __init__(self, name: str, namespace: dict):
        self._name = name
        self._namespace = namespace

    def __getattr__(self, attribute: str):
        module = importlib.import_module(self._name)
        self._namespace[self._name] = module  # later uses go straight to the module
        return getattr(module, attribute)
