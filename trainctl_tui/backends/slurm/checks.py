"""What a launch checks on the login node before it writes anything there (Slurm's commands
on the PATH, the workdir writable), and how a job that could not see its session folder is
told apart afterwards. Each problem is one line with its fix."""

from __future__ import annotations

import shlex

from ..base import ProviderError

SLURM_COMMANDS = ("sbatch", "squeue", "scancel", "scontrol")


def preflight_script(sessions_dir: str) -> str:
    """One round trip: 'missing sbatch squeue' for Slurm commands not on the PATH, else
    'unwritable REASON' when the sessions folder cannot be made and written, else 'ok'."""
    folder = shlex.quote(sessions_dir)
    return (
        "missing=''; for c in " + " ".join(SLURM_COMMANDS) + "; do "
        "command -v \"$c\" >/dev/null 2>&1 || missing=\"$missing $c\"; done; "
        "if [ -n \"$missing\" ]; then echo \"missing$missing\"; exit 0; fi; "
        f"d={folder}; "
        "if ! out=$(mkdir -p -- \"$d\" 2>&1); then echo \"unwritable $out\"; exit 0; fi; "
        "if ! t=$(mktemp \"$d/.trainctl-write.XXXXXX\" 2>&1); then echo \"unwritable $t\"; "
        "exit 0; fi; rm -f -- \"$t\"; echo ok")


def preflight_error(answer: str, *, label: str, login: str, workdir: str) -> str | None:
    """The one line for the preflight's answer, or None when all is well."""
    words = answer.strip().splitlines()[-1].split(" ", 1) if answer.strip() else ["?"]
    where = "this machine" if login == "local" else f"the login node {login}"
    if words[0] == "missing":
        return (f"{label}: {', '.join(words[1].split())} not found on {where}: not on the PATH "
                "of a non-interactive shell; put Slurm's bin directory on that PATH (e.g. in "
                "~/.bashrc) or set login to a node with Slurm's commands")
    if words[0] == "unwritable":
        why = words[1].rsplit(": ", 1)[-1] if len(words) > 1 else "cannot write"
        return (f"{label}: workdir {workdir} is not writable on {where} ({why}); set workdir "
                "to a folder of yours on the shared filesystem")
    if words[0] != "ok":
        return f"{label}: unexpected answer from {where}: {answer.strip()!r}"
    return None


async def preflight(transport, *, label: str, login: str, workdir: str,
                    sessions_dir: str) -> None:
    result = await transport.run(preflight_script(sessions_dir), check=False, timeout=60)
    error = preflight_error(result.stdout.decode(errors="replace"), label=label, login=login,
                            workdir=workdir)
    if error:
        raise ProviderError(error)


def not_visible(label: str, workdir: str, job: str) -> str:
    """A job that ended without writing even its output file in the session folder: the
    compute nodes do not see the workdir the login node wrote."""
    return (f"{label}: workdir {workdir} is not visible on the compute node(s) (job {job} "
            "could not write there); set workdir to a shared filesystem")
