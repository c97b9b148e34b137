"""Checkpoints end to end through the CLI: listing, info, prune, resume refusing bad ones,
automatic keep_last_n, and --once showing the newest checkpoint of running sessions."""

from __future__ import annotations

import json
import shutil
import struct
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from test_cli import DEMO, launch, session_json, wait_for

FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints"


def listing(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size)
                  for p in folder.rglob("*") if p.is_file())


def test_checkpoints_json_classifies_every_fixture():
    result = run_cli("checkpoints", str(FIXTURES), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    status = {Path(c["path"]).name: c["status"] for c in data["checkpoints"]}
    assert status["nanogpt_ckpt.pt"] == "ok"
    assert status["lightning.ckpt"] == "ok"
    assert status["model.safetensors"] == "ok"
    assert status["truncated_zip.pt"] == "corrupt"
    assert status["empty.pt"] == "corrupt"
    assert status["lfs_pointer.pt"] == "corrupt"
    assert status["evil_raw.pt"] == "suspicious"
    assert status["evil_zip.pt"] == "suspicious"
    nanogpt = next(c for c in data["checkpoints"] if c["name"] == "nanogpt_ckpt.pt")
    assert nanogpt["step"] == 250 and nanogpt["info"]["has_optimizer"] is True


def test_checkpoint_info_never_runs_the_payload(tmp_path):
    marker = Path("/tmp/trainctl_pwned_marker")
    marker.unlink(missing_ok=True)
    result = run_cli("checkpoint", "info", str(FIXTURES / "evil_raw.pt"))
    assert result.returncode == 1
    assert "suspicious" in result.stdout and "posix.system" in result.stdout
    assert not marker.exists()
    assert not list(Path("/tmp").glob("trainctl_pwned*"))


def test_checkpoint_info_errors_are_one_line():
    result = run_cli("checkpoint", "info", "/nope/ckpt.pt")
    assert (result.returncode, result.stderr) == (2, "no such checkpoint: /nope/ckpt.pt\n")
    result = run_cli("checkpoints", "zzzzzz")
    assert result.returncode == 2
    assert result.stderr == "no session or directory 'zzzzzz' (see trainctl sessions)\n"
    result = run_cli("checkpoints", "prune", str(FIXTURES))
    assert result.returncode == 2
    assert "prune needs --keep-last N" in result.stderr


@pytest.fixture
def demo_checkpoints(tmp_path) -> Path:
    """Real checkpoints written by the demo trainer (steps 10..60)."""
    folder = tmp_path / "ckpt"
    session_id = launch("--checkpoint-dir", str(folder), "--", sys.executable, DEMO,
                        "--steps", "60", "--step-time", "0.001", "--ckpt-every", "10",
                        "--keep", "100")
    wait_for(lambda: session_json(session_id)["status"] == "succeeded")
    time.sleep(2.1)  # older than the scanner's settle time
    return folder


def test_prune_dry_run_changes_nothing_then_moves_to_trash(demo_checkpoints, trainctl_home):
    before = listing(demo_checkpoints)
    dry = run_cli("checkpoints", "prune", str(demo_checkpoints), "--keep-last", "2",
                  "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "4 to delete" in dry.stdout and "dry run: nothing was changed" in dry.stdout
    assert listing(demo_checkpoints) == before

    real = run_cli("checkpoints", "prune", str(demo_checkpoints), "--keep-last", "2")
    assert real.returncode == 0, real.stderr
    left = sorted(p.name for p in demo_checkpoints.iterdir())
    assert left == ["step_000050.safetensors", "step_000060.safetensors"]
    trashed = sorted(p.name for p in (trainctl_home / "trash").rglob("*.safetensors"))
    assert trashed == [f"step_0000{n}0.safetensors" for n in range(1, 5)]

    purge = run_cli("checkpoints", "prune", str(demo_checkpoints), "--keep-last", "1",
                    "--purge")
    assert purge.returncode == 0
    assert sorted(p.name for p in demo_checkpoints.iterdir()) == ["step_000060.safetensors"]


def test_newest_valid_survives_even_when_newer_ones_are_corrupt(demo_checkpoints):
    (demo_checkpoints / "step_000070.safetensors").write_bytes(b"\x10\x00garbage")
    time.sleep(2.1)
    result = run_cli("checkpoints", "prune", str(demo_checkpoints), "--keep-last", "1")
    assert result.returncode == 0, result.stderr
    assert (demo_checkpoints / "step_000060.safetensors").exists()  # the newest valid one
    assert "newest valid" in result.stdout


def test_resume_refuses_corrupt_and_skips_them_by_default(tmp_path, trainctl_home):
    folder = tmp_path / "ckpt"
    session_id = launch("--checkpoint-dir", str(folder), "--resume-template",
                        "--resume {checkpoint}", "--", sys.executable, DEMO, "--steps", "40",
                        "--step-time", "0.001", "--ckpt-every", "10")
    wait_for(lambda: session_json(session_id)["status"] == "succeeded")
    shutil.copy(FIXTURES / "truncated.safetensors", folder / "step_009999.safetensors")
    time.sleep(2.1)
    refused = run_cli("resume", session_id, "--from", str(folder / "step_009999.safetensors"))
    assert refused.returncode == 2
    assert "is corrupt" in refused.stderr and "pick another" in refused.stderr
    assert session_json(session_id)["attempt"] == 1
    resumed = run_cli("resume", session_id)
    assert resumed.returncode == 0, resumed.stderr
    assert f"from {folder / 'step_000040.safetensors'}" in resumed.stdout


def test_keep_last_is_applied_as_checkpoints_appear_and_once_shows_the_newest(
        tmp_path, trainctl_home):
    folder = tmp_path / "ckpt"
    session_id = launch("--checkpoint-dir", str(folder), "--keep-last", "2", "--",
                        sys.executable, DEMO, "--steps", "100000", "--step-time", "0.01",
                        "--ckpt-every", "10", "--keep", "1000")
    wait_for(lambda: len(list(folder.glob("*.safetensors"))) >= 6, timeout=60)
    time.sleep(2.1)

    def pruned():
        once = run_cli("--once", "--json")
        finished = [p for p in folder.glob("*.safetensors")
                    if time.time() - p.stat().st_mtime > 2]
        return len(finished) <= 2 and once

    once = wait_for(pruned, timeout=60)
    assert list((trainctl_home / "trash").rglob("*.safetensors"))
    entry = next(s for s in json.loads(once.stdout)["sessions"] if s["id"] == session_id)
    assert entry["newest_checkpoint"]["path"].startswith(str(folder))
    assert "newest checkpoints" in run_cli("--once").stdout
    run_cli("stop", session_id, "--force")


def test_checkpoint_info_shows_a_hostile_files_strings_without_obeying_them(tmp_path):
    # A checkpoint is untrusted: escape sequences in its metadata or tensor names must not
    # reach the terminal, and [markup] in them must print as written.
    header = {"__metadata__": {"note": "\x1b]0;pwned\x07[bold red]fake[/bold red]\nrunner: ok"},
              "w\x1b[2J[blink]": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    raw = json.dumps(header).encode()
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 8)
    result = run_cli("checkpoint", "info", str(path))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert r"note=\x1b]0;pwned\x07[bold red]fake[/bold red]\nrunner: ok" in result.stdout
    assert r"w\x1b[2J[blink]" in result.stdout
    assert "\nrunner: ok" not in result.stdout  # no line of its own
