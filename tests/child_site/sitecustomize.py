"""Imported at the start of every Python process started with this folder on PYTHONPATH (see
child_patches.py): the module attributes the test patched in its own process, patched here
too, so a detached `trainctl _recover` behaves as the test's process would."""

import importlib
import json
import os

for _target, _value in json.loads(os.environ.get("TRAINCTL_TEST_PATCHES") or "{}").items():
    _module, _, _name = _target.partition(":")
    try:
        setattr(importlib.import_module(_module), _name, _value)
    except ImportError:  # another Python (the system one on a "pod"): not ours to patch
        pass
