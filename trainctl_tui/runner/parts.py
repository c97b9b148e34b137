"""Runner parts: features a backend adds to the runner, shipped in the zipapp with it (a
backend folder's ``runner_part.py``) and turned on by keys of spec.json, e.g. syncing
checkpoints to a store and watching for notices that the machine is about to be taken.

The runner knows no backend: it finds the parts by that file name under the backends
package, whatever their folders are called. A part module has ``PART``, a RunnerPart
subclass. Stdlib only, Python 3.7+, like the rest of the runner."""

from __future__ import annotations

PART_MODULE = "runner_part"
BACKENDS_PACKAGE = __name__.rsplit(".", 2)[0] + ".backends"  # trainctl_tui.backends
_parts = None  # the part classes, found once per process


class RunnerPart:
    """One backend's feature in the runner. Class-level: the spec keys it adds (with their
    defaults) and checks; per supervisor: the hooks the supervisor calls when `enabled`."""

    SPEC_DEFAULTS = {}  # its spec.json keys: all off unless set

    @classmethod
    def check_spec(cls, spec: dict, path: str) -> None:
        """Validate (and normalise) its keys in place; raise SpecError."""

    @classmethod
    def enabled(cls, spec: dict) -> bool:
        """Whether this spec turns the part on."""
        return False

    @classmethod
    def owns_checkpoint(cls, checkpoint) -> bool:
        """Whether `checkpoint` (a resume_from) lives in this part's store, not on disk."""
        return False

    def __init__(self, supervisor):
        self.supervisor = supervisor

    def init_status(self, previous: dict) -> None:
        """Add its fields to the new status.json (`previous`: the last runner's)."""

    def start(self) -> None:
        """Start its background work (threads) once the runner runs."""

    def before_status_write(self) -> None:
        """Put what its threads did since into the status about to be written."""

    def fetch_checkpoint(self, checkpoint: str):
        """(local path, None) or (None, why) for a checkpoint it owns."""
        return None, "not handled"

    def interruption_reason(self, info: dict) -> str:
        """The line that says why the machine is being taken (`info`: what it reported)."""
        return "interrupted"

    def interruption_kill_at(self, info: dict) -> float:
        """The latest moment to SIGKILL the training after an interruption notice."""
        return info["deadline"]

    def finish(self, state: str) -> None:
        """The session reached its final `state`: stop watching, save what must be saved."""

    def stop_machine(self):
        """The budget guard stopped the run: stop (or terminate) the machine it runs on so
        the spending ends. A record of how it went (`action`, `machine`, `error` None or one
        line), or None when this part stops no machine."""
        return None


def part_classes() -> list:
    """Every backend's RunnerPart class, by folder name order."""
    global _parts
    if _parts is None:
        import importlib
        import importlib.util
        import pkgutil

        try:
            backends = importlib.import_module(BACKENDS_PACKAGE)
        except ImportError:
            backends = None  # shipped without any part
        found = []
        for info in sorted(pkgutil.iter_modules(backends.__path__) if backends else (),
                           key=lambda info: info.name):
            name = f"{BACKENDS_PACKAGE}.{info.name}.{PART_MODULE}"
            if info.ispkg and importlib.util.find_spec(name) is not None:
                found.append(importlib.import_module(name).PART)
        _parts = found
    return list(_parts)


def spec_defaults() -> dict:
    """The spec keys every part adds, with their defaults."""
    defaults = {}
    for part in part_classes():
        defaults.update(part.SPEC_DEFAULTS)
    return defaults


def owned_checkpoint(checkpoint) -> bool:
    """Whether some part's store holds `checkpoint` (it is no path on this machine)."""
    return any(part.owns_checkpoint(checkpoint) for part in part_classes())
