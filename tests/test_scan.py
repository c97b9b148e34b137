"""Checkpoint discovery on real directories: names, stat, a real writer thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from trainctl_tui.checkpoints import scan
from trainctl_tui.checkpoints.scan import (
    CheckpointDirError,
    changed_since_scan,
    newest_finished,
    scan_checkpoints,
)
from trainctl_tui.core.errors import TrainctlError
from trainctl_tui.runner.checkpoint_files import find_newest_checkpoint


def put(path: Path, data: bytes = b"x", age: float = 100.0) -> Path:
    """A file with `data`, last modified `age` seconds ago (old = settled, no second look)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def hf_dir(root: Path, step: int, *, state: bool = True, age: float = 100.0,
           global_step: int | None = None) -> Path:
    folder = root / f"checkpoint-{step}"
    put(folder / "model.safetensors", b"w" * 10, age)
    put(folder / "optimizer.pt", b"o" * 5, age)
    if state:
        body = json.dumps({"global_step": global_step or step, "log_history": []}, sort_keys=True)
        put(folder / "trainer_state.json", body.encode(), age)
    return folder


def names(entries) -> list[str]:
    return [e.name for e in entries]


def by_name(entries) -> dict:
    return {e.name: e for e in entries}


def test_ordered_by_step_then_unnumbered_by_mtime(tmp_path):
    put(tmp_path / "final.pt", age=300)
    put(tmp_path / "best.pt", age=200)
    put(tmp_path / "step_10.pt", age=500)  # a bigger step wins even if its mtime is older
    put(tmp_path / "step_5.pt", age=50)
    put(tmp_path / "model_2.safetensors", age=400)  # the last number counts as the step
    entries = scan_checkpoints(tmp_path)
    # Like the runner: unnumbered ones (by mtime) come before numbered ones (by step).
    assert names(entries) == ["final.pt", "best.pt", "model_2.safetensors", "step_5.pt",
                              "step_10.pt"]
    assert [e.step for e in entries] == [None, None, 2, 5, 10]
    assert all(e.kind == "file" and not e.writing and e.size == 1 for e in entries)
    assert newest_finished(entries).name == "step_10.pt"


def test_only_checkpoint_suffixes_and_names(tmp_path):
    for name in ("a.pt", "b.pth", "c.ckpt", "d.bin", "e.safetensors", "notes.txt",
                 "train.log", "config.json", ".DS_Store", "foo.tmp"):
        put(tmp_path / name)
    (tmp_path / "logs").mkdir()
    assert sorted(names(scan_checkpoints(tmp_path))) == [
        "a.pt", "b.pth", "c.ckpt", "d.bin", "e.safetensors"]


def test_hf_dirs_with_and_without_trainer_state(tmp_path):
    hf_dir(tmp_path, 500)
    hf_dir(tmp_path, 1000, global_step=1001)  # trainer_state.json's global_step is the step
    hf_dir(tmp_path, 1500, state=False)  # the Trainer writes trainer_state.json last
    put(tmp_path / "tmp-checkpoint-2000" / "model.safetensors")  # newer Trainers save here first
    entries = scan_checkpoints(tmp_path)
    got = by_name(entries)
    assert names(entries) == ["checkpoint-500", "checkpoint-1000", "checkpoint-1500",
                              "tmp-checkpoint-2000"]
    assert got["checkpoint-500"].kind == "dir" and got["checkpoint-500"].size > 15
    assert got["checkpoint-1000"].step == 1001 and not got["checkpoint-1000"].writing
    assert got["checkpoint-1500"].writing and "trainer_state.json" in got["checkpoint-1500"].note
    assert got["tmp-checkpoint-2000"].writing and got["tmp-checkpoint-2000"].step == 2000
    assert newest_finished(entries).name == "checkpoint-1000"


def test_hf_global_step_after_a_long_log_history(tmp_path):
    """Keys not sorted and global_step past the first 64 KB: the whole JSON is parsed."""
    folder = tmp_path / "checkpoint-7"
    history = [{"loss": 1.0, "step": i} for i in range(4000)]
    body = json.dumps({"log_history": history, "global_step": 7000})
    assert body.index('"global_step"') > scan.STATE_HEAD_BYTES
    put(folder / "trainer_state.json", body.encode())
    put(tmp_path / "checkpoint-9" / "trainer_state.json", b"{not json")
    got = by_name(scan_checkpoints(tmp_path))
    assert got["checkpoint-7"].step == 7000
    assert got["checkpoint-9"].step == 9  # unparsable state: the name's step


@pytest.mark.parametrize("name", [
    "model.pt.tmp", "model.ckpt.partial", "model.safetensors.incomplete", "model.pt.part",
    ".tmp-model.pt", ".tmpk3j_x9ab", "tmpk3j_x9ab", "tmp_step_9.pt", "step_9.pt.TMP",
])
def test_temp_names_are_writing(tmp_path, name):
    put(tmp_path / "step_1.pt")
    put(tmp_path / name, age=1000)  # old, so only the name says it is unfinished
    entries = scan_checkpoints(tmp_path)
    temp = by_name(entries)[name]
    assert temp.writing and "temporary name" in temp.note
    assert newest_finished(entries).name == "step_1.pt"


def test_growing_file_is_writing(tmp_path):
    """A real writer thread appends while the scan runs: the two looks see different sizes."""
    put(tmp_path / "step_1.pt")
    put(tmp_path / "step_3.pt", age=0)  # just written but finished: not writing
    growing = tmp_path / "step_2.pt"
    stop = threading.Event()
    started = threading.Event()

    def writer():
        with open(growing, "ab") as fh:
            while not stop.is_set():
                fh.write(b"z" * 1024)
                fh.flush()
                started.set()
                time.sleep(0.01)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        started.wait(5)
        entries = scan_checkpoints(tmp_path, settle_seconds=2.0)
    finally:
        stop.set()
        thread.join(5)
    got = by_name(entries)
    assert got["step_2.pt"].writing and "still growing" in got["step_2.pt"].note
    assert not got["step_3.pt"].writing and not got["step_1.pt"].writing
    # With settle_seconds=0 nobody looks twice (e.g. a cheap listing for the UI).
    assert not by_name(scan_checkpoints(tmp_path, settle_seconds=0))["step_2.pt"].writing


def test_growing_directory_is_writing(tmp_path):
    """A writer keeps adding files to step_5/ (optimizer shards...) during the scan."""
    folder = tmp_path / "step_5"
    put(folder / "model.pt", age=0)
    stop = threading.Event()

    def writer():
        n = 0
        while not stop.is_set():
            put(folder / f"shard_{n}.pt", b"o" * 100, age=0)
            n += 1
            time.sleep(0.02)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        entries = scan_checkpoints(tmp_path)
    finally:
        stop.set()
        thread.join(5)
    assert entries[0].writing and "still growing" in entries[0].note


def test_lightning_names(tmp_path):
    put(tmp_path / "epoch=2-step=900.ckpt", age=10)
    put(tmp_path / "epoch=3-step=1200.ckpt", age=20)
    put(tmp_path / "last.ckpt", age=5)
    # Lightning's DeepSpeed strategy saves a directory named like a file.
    put(tmp_path / "epoch=4-step=1500.ckpt" / "checkpoint" / "mp_rank_00_model_states.pt")
    entries = scan_checkpoints(tmp_path)
    assert names(entries) == ["last.ckpt", "epoch=2-step=900.ckpt", "epoch=3-step=1200.ckpt",
                              "epoch=4-step=1500.ckpt"]
    assert [e.step for e in entries] == [None, 900, 1200, 1500]
    assert entries[-1].kind == "dir"


def test_deepspeed_dirs_and_latest(tmp_path):
    put(tmp_path / "global_step100" / "mp_rank_00_model_states.pt", age=300)
    put(tmp_path / "global_step200" / "mp_rank_00_model_states.pt", age=100)
    put(tmp_path / "latest", b"global_step100", age=200)  # not yet pointing at 200
    put(tmp_path / "zero_to_fp32.py", age=300)
    entries = scan_checkpoints(tmp_path)
    assert names(entries) == ["global_step100", "global_step200"]
    assert [e.step for e in entries] == [100, 200]
    assert entries[1].writing and "latest" in entries[1].note
    assert newest_finished(entries).name == "global_step100"
    put(tmp_path / "latest", b"global_step200", age=50)  # DeepSpeed finished step 200
    assert not any(e.writing for e in scan_checkpoints(tmp_path))
    os.unlink(tmp_path / "latest")  # save_latest=False: no `latest` at all
    assert not any(e.writing for e in scan_checkpoints(tmp_path))


def test_empty_checkpoint_dir_is_writing(tmp_path):
    (tmp_path / "step_100").mkdir()
    entries = scan_checkpoints(tmp_path)
    assert entries[0].writing and entries[0].note == "empty directory"


def test_missing_dir_and_not_a_dir(tmp_path):
    with pytest.raises(CheckpointDirError, match="does not exist") as info:
        scan_checkpoints(tmp_path / "nope")
    assert isinstance(info.value, TrainctlError) and info.value.path == str(tmp_path / "nope")
    put(tmp_path / "file.pt")
    with pytest.raises(CheckpointDirError, match="is not a directory"):
        scan_checkpoints(tmp_path / "file.pt")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores modes")
def test_real_permission_errors(tmp_path):
    put(tmp_path / "step_1.pt")
    locked = tmp_path / "step_2"
    put(locked / "model.pt")
    locked.chmod(0)
    try:
        entries = scan_checkpoints(tmp_path)
        assert names(entries) == ["step_1.pt"]
        assert [path for path, _ in entries.skipped] == [str(locked)]
        tmp_path.chmod(0)
        with pytest.raises(CheckpointDirError, match="cannot read"):
            scan_checkpoints(tmp_path)
    finally:
        tmp_path.chmod(0o755)
        locked.chmod(0o755)


def test_permission_errors_skip_one_entry(tmp_path, monkeypatch):
    """Simulated EACCES (tests may run as root): the entry is skipped and reported."""
    put(tmp_path / "step_1.pt")
    hf_dir(tmp_path, 2)
    put(tmp_path / "run1" / "step_3.pt")
    put(tmp_path / "run2" / "step_4.pt")
    locked = {str(tmp_path / "checkpoint-2" / "trainer_state.json"), str(tmp_path / "run2")}
    real_open, real_scandir = open, os.scandir

    def guarded_open(path, *args, **kwargs):
        if os.fspath(path) in locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    def guarded_scandir(path="."):
        if os.fspath(path) in locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(scan, "open", guarded_open, raising=False)
    monkeypatch.setattr(os, "scandir", guarded_scandir)
    entries = scan_checkpoints(tmp_path, recursive=True)
    assert names(entries) == ["step_1.pt", "step_3.pt"]
    assert sorted(entries.skipped) == sorted(
        (path.replace(f"{os.sep}trainer_state.json", ""), "Permission denied")
        for path in locked)
    locked.add(str(tmp_path))
    with pytest.raises(CheckpointDirError, match="cannot read .*Permission denied"):
        scan_checkpoints(tmp_path)


def test_symlinks_are_listed_not_followed_out(tmp_path):
    ckpts, outside = tmp_path / "ckpts", tmp_path / "elsewhere"
    put(outside / "big.pt", b"b" * 50)
    put(outside / "run9" / "step_9.pt")
    put(ckpts / "step_1.pt")
    os.symlink(outside / "big.pt", ckpts / "step_2.pt")
    os.symlink(ckpts / "step_1.pt", ckpts / "best.pt")
    os.symlink(outside / "run9", ckpts / "run9")  # a symlinked folder is never descended
    os.symlink(outside / "gone.pt", ckpts / "step_3.pt")  # broken
    os.symlink(outside / "gone.txt", ckpts / "notes.txt")  # broken, not a checkpoint: ignored
    entries = scan_checkpoints(ckpts, recursive=True)
    got = by_name(entries)
    assert sorted(got) == ["best.pt", "step_1.pt", "step_2.pt"]
    assert got["step_2.pt"].symlink and got["step_2.pt"].size == 50
    assert got["step_2.pt"].path == str(ckpts / "step_2.pt")  # the link, not its target
    assert "outside the directory" in got["step_2.pt"].note
    assert got["best.pt"].symlink and "outside" not in got["best.pt"].note
    assert not got["step_1.pt"].symlink and got["step_1.pt"].note is None
    assert entries.skipped == [(str(ckpts / "step_3.pt"), f"broken symlink -> {outside}/gone.pt")]


def test_nested_only_with_recursive(tmp_path):
    put(tmp_path / "step_1.pt")
    put(tmp_path / "run1" / "step_2.pt")
    put(tmp_path / "run1" / "deeper" / "step_3.pt")
    put(tmp_path / ".hidden" / "step_4.pt")
    hf_dir(tmp_path / "run2", 5)
    assert names(scan_checkpoints(tmp_path)) == ["step_1.pt"]
    entries = scan_checkpoints(tmp_path, recursive=True)
    assert names(entries) == ["step_1.pt", "step_2.pt", "step_3.pt", "checkpoint-5"]
    assert entries[2].path == str(tmp_path / "run1" / "deeper" / "step_3.pt")
    assert {e.root for e in entries} == {str(tmp_path)}


def test_agrees_with_the_runners_choice(tmp_path):
    """What the TUI offers as newest is what the runner resumes from."""
    put(tmp_path / "final.pt", age=10)
    put(tmp_path / "step_300.pt", age=400)
    put(tmp_path / "ckpt_250.pt", age=20)
    hf_dir(tmp_path, 200)
    hf_dir(tmp_path, 400, state=False)
    put(tmp_path / "step_500.pt.tmp")
    put(tmp_path / "epoch=1-step=350.ckpt", age=30)
    entries = scan_checkpoints(tmp_path)
    assert newest_finished(entries).path == find_newest_checkpoint(str(tmp_path))
    assert newest_finished(entries).name == "epoch=1-step=350.ckpt"
    assert newest_finished([]) is None


def keras_file(path: Path, age: float = 100.0) -> Path:
    """A finished .keras (a zip with an end record); its contents do not matter here."""
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", "{}")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


@pytest.mark.parametrize("layout", ["keras", "accelerate", "torchtune", "mixed"])
def test_agrees_with_the_runner_on_the_newer_layouts(tmp_path, layout):
    """Keras epochs (the loss in the name is no step), Accelerate's checkpoint_N (finished
    once random_states_N.pkl is there), torchtune's epoch_N (every shard there)."""
    if layout in ("keras", "mixed"):
        keras_file(tmp_path / "model.09-0.91.keras", age=10)
        keras_file(tmp_path / "model.10-0.35.keras", age=500)  # newest epoch, oldest mtime
        put(tmp_path / "model.11-0.30.keras", b"PK\x03\x04 cut short", age=5)
    if layout in ("accelerate", "mixed"):
        for n, age in ((2, 400), (3, 300)):
            put(tmp_path / f"checkpoint_{n}" / "model.safetensors", age=age)
            put(tmp_path / f"checkpoint_{n}" / "random_states_0.pkl", age=age)
        put(tmp_path / "checkpoint_4" / "model.safetensors", age=5)  # no random_states yet
    if layout in ("torchtune", "mixed"):
        for n in (8, 9):
            for k in (1, 2):
                put(tmp_path / f"epoch_{n}" / f"model-0000{k}-of-00002.safetensors", age=300)
        put(tmp_path / "epoch_12" / "model-00001-of-00002.safetensors", age=5)
        put(tmp_path / "recipe_state" / "recipe_state.pt", age=5)
    entries = scan_checkpoints(tmp_path)
    newest = newest_finished(entries)
    assert newest.path == find_newest_checkpoint(str(tmp_path))
    expected = {"keras": "model.10-0.35.keras", "accelerate": "checkpoint_3",
                "torchtune": "epoch_9", "mixed": "model.10-0.35.keras"}[layout]
    assert newest.name == expected
    assert all(e.writing for e in entries if e.name in (
        "model.11-0.30.keras", "checkpoint_4", "epoch_12"))
    assert "recipe_state" not in names(entries)


def test_scan_reads_no_file_contents_but_trainer_state(tmp_path, monkeypatch):
    hf_dir(tmp_path, 3)
    put(tmp_path / "step_1.pt")
    put(tmp_path / "global_step2" / "model.pt")
    put(tmp_path / "latest")
    opened = []
    real_open = open

    def spy(path, *args, **kwargs):
        opened.append(os.path.basename(os.fspath(path)))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(scan, "open", spy, raising=False)
    scan_checkpoints(tmp_path)
    assert opened == ["trainer_state.json"]


def test_changed_since_scan(tmp_path):
    put(tmp_path / "step_1.pt")
    put(tmp_path / "step_2" / "model.pt")
    hf_dir(tmp_path, 3)
    entries = by_name(scan_checkpoints(tmp_path))
    assert all(changed_since_scan(e) is None for e in entries.values())
    put(tmp_path / "step_1.pt", b"longer")
    assert changed_since_scan(entries["step_1.pt"]) == "size changed since the scan"
    put(tmp_path / "step_2" / "model.pt", age=1)
    assert changed_since_scan(entries["step_2"]) == "modified since the scan"
    os.unlink(tmp_path / "checkpoint-3" / "optimizer.pt")
    assert changed_since_scan(entries["checkpoint-3"]) == "size changed since the scan"
    os.unlink(tmp_path / "step_1.pt")
    assert changed_since_scan(entries["step_1.pt"]) == "no longer exists"


def test_headless_modules_import_no_ui(tmp_path):
    code = ("import sys, trainctl_tui.checkpoints.scan, trainctl_tui.checkpoints.retention; "
            "print([m for m in ('textual', 'rich', 'pydantic') if m in sys.modules])")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(root)}, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
