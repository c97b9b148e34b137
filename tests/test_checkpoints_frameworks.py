"""Keras, Accelerate and torchtune checkpoints: found, ordered, picked for resume (by the runner
and the scanner alike), inspected without their libraries, and pruned like the others.

The fixtures were written by the real libraries (tests/fixtures/make_framework_checkpoints.py),
which also recorded in expected.json what those libraries say is inside them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import runner_names as sv
from conftest import ROOT, run_cli
from runner_names import runner_zipapp

from trainctl_tui.backends.remote.checkpoints import LISTING_SCRIPT
from trainctl_tui.checkpoints import hdf5
from trainctl_tui.checkpoints import inspect as ci
from trainctl_tui.checkpoints.catalog import list_checkpoints, newest_usable
from trainctl_tui.checkpoints.scan import newest_finished, scan_checkpoints
from trainctl_tui.runner.bundle import bundle_files, write_bundle

FIX = ROOT / "tests" / "fixtures" / "checkpoints" / "frameworks"
EXPECTED = json.loads((FIX / "expected.json").read_text())
PY37 = "/root/.pyenv/versions/3.7.16/bin/python3"
KERAS = sorted(p.name for p in (FIX / "keras_models").iterdir())  # model.01-1.41.keras ...
WEIGHTS = sorted(p.name for p in (FIX / "keras_weights").iterdir())


@pytest.fixture(autouse=True)
def fresh_cache():
    ci.cache_clear()


def place(src: Path, dest: Path, age: float) -> Path:
    """Copy a fixture file or folder to `dest`, every file last modified `age` seconds ago
    (git keeps no timestamps, so the tests set the ones they need)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest)
    else:
        shutil.copy(src, dest)
    stamp = time.time() - age
    for path in [dest, *dest.rglob("*")]:
        os.utime(path, (stamp, stamp))
    return dest


def fingerprint(folder: Path) -> dict:
    """Every file's bytes and mtime: proof that looking at checkpoints changed nothing."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def names(entries) -> list[str]:
    return [e.name for e in entries]


def runner_newest(folder: Path, python: str = sys.executable) -> str | None:
    """find_newest_checkpoint run from the runner's zipapp, as on a remote host."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from trainctl_tui.runner import checkpoint_files; "
            "print(checkpoint_files.find_newest_checkpoint(sys.argv[2]))")
    out = subprocess.run([python, "-c", code, str(runner_zipapp()), str(folder)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return None if out.stdout.strip() == "None" else out.stdout.strip()


# -- names and order -----------------------------------------------------------------------


@pytest.mark.parametrize("name, step", [
    ("model.03-0.41.keras", 3),  # the val_loss is not the step
    ("model.10-1.2e-03.keras", 10),
    ("weights.07-12.50.hdf5", 7),
    ("ckpt_epoch_05.weights.h5", 5),
    ("model.weights.h5", None),  # ".h5" is not step 5
    ("checkpoint.weights.h5", None),
    ("checkpoint_12", 12),
    ("epoch_3", 3),
    ("llama-3.1-8b-1000.pt", 1000),
])
def test_step_from_new_names(name, step):
    assert sv.checkpoint_step(name) == step


def test_new_suffixes_and_dirs_are_checkpoints():
    for name in ("a.keras", "a.weights.h5", "a.h5", "a.hdf5"):
        assert name.endswith(sv.CHECKPOINT_SUFFIXES)
    for name in ("checkpoint_0", "epoch_12"):
        assert sv.CHECKPOINT_DIR_RE.match(name)
    assert not sv.CHECKPOINT_DIR_RE.match("recipe_state")


def test_keras_models_ordered_by_epoch_not_loss_or_mtime(tmp_path):
    # the newest epoch gets the oldest mtime: only the epoch number can put it last
    for age, name in zip((100, 200, 300), KERAS, strict=True):
        place(FIX / "keras_models" / name, tmp_path / name, age)
    entries = scan_checkpoints(tmp_path)
    assert names(entries) == KERAS
    assert [e.step for e in entries] == [EXPECTED[f"keras_models/{n}"]["epoch"] for n in KERAS]
    assert newest_finished(entries).name == KERAS[-1]
    assert runner_newest(tmp_path) == str(tmp_path / KERAS[-1])


def test_keras_weights_ordered_by_epoch(tmp_path):
    for age, name in zip((300, 100, 200), WEIGHTS, strict=True):
        place(FIX / "keras_weights" / name, tmp_path / name, age)
    entries = scan_checkpoints(tmp_path)
    assert names(entries) == WEIGHTS
    assert [e.step for e in entries] == [1, 2, 3]
    assert newest_finished(entries).name == WEIGHTS[-1] == "ckpt_epoch_03.weights.h5"
    assert runner_newest(tmp_path) == str(tmp_path / WEIGHTS[-1])


def test_unfinished_keras_and_hdf5_files_are_never_offered(tmp_path):
    place(FIX / "keras_models" / KERAS[-1], tmp_path / "model.03-0.61.keras", 500)
    # a save cut short (no zip end record), an HDF5 file its writer still has open, one
    # shorter than its superblock says, and a temp name
    place(FIX / "corrupt" / "truncated.keras", tmp_path / "model.04-0.50.keras", 400)
    place(FIX / "corrupt" / "open_for_writing.weights.h5", tmp_path / "ckpt_epoch_05.weights.h5",
          300)
    place(FIX / "corrupt" / "truncated.weights.h5", tmp_path / "ckpt_epoch_06.weights.h5", 200)
    place(FIX / "keras_models" / KERAS[0], tmp_path / "model.07-0.30.keras.tmp", 100)
    before = fingerprint(tmp_path)
    entries = {e.name: e for e in scan_checkpoints(tmp_path)}
    assert {n: (e.writing, e.note) for n, e in entries.items()} == {
        "model.03-0.61.keras": (False, None),
        "model.04-0.50.keras": (True, "zip not finished: no end-of-central-directory record"),
        "ckpt_epoch_05.weights.h5": (True, "HDF5 file still open for writing (or its writer "
                                           "died before closing it)"),
        "ckpt_epoch_06.weights.h5": (True, "HDF5 file shorter than its superblock says "
                                           "(9,948 of 19,896 bytes)"),
        "model.07-0.30.keras.tmp": (True, "temporary name"),
    }
    assert newest_finished(entries.values()).name == "model.03-0.61.keras"
    assert runner_newest(tmp_path) == str(tmp_path / "model.03-0.61.keras")
    _, rows = list_checkpoints(str(tmp_path), settle_seconds=0)
    assert newest_usable(rows).entry.name == "model.03-0.61.keras"
    assert fingerprint(tmp_path) == before


def test_accelerate_checkpoints_newest_has_random_states(tmp_path):
    src = FIX / "accelerate" / "checkpoints"
    place(src / "checkpoint_0", tmp_path / "checkpoint_0", 400)
    place(src / "checkpoint_1", tmp_path / "checkpoint_1", 500)  # older mtime, newer save
    in_progress = place(src / "checkpoint_1", tmp_path / "checkpoint_2", 300)
    (in_progress / "random_states_0.pkl").unlink()  # Accelerate writes it last
    entries = scan_checkpoints(tmp_path)
    assert names(entries) == ["checkpoint_0", "checkpoint_1", "checkpoint_2"]
    assert entries[2].writing
    assert entries[2].note == "no random_states_*.pkl yet (Accelerate writes it last)"
    assert newest_finished(entries).name == "checkpoint_1"
    assert runner_newest(tmp_path) == str(tmp_path / "checkpoint_1")

    shutil.copy(src / "checkpoint_1" / "random_states_0.pkl", in_progress)
    os.utime(in_progress / "random_states_0.pkl", (time.time() - 300,) * 2)
    place(src / "checkpoint_0", tmp_path / "checkpoint_10", 600)  # 10 > 2, not "10" < "2"
    entries = scan_checkpoints(tmp_path)
    assert names(entries) == ["checkpoint_0", "checkpoint_1", "checkpoint_2", "checkpoint_10"]
    assert newest_finished(entries).name == "checkpoint_10"
    assert runner_newest(tmp_path) == str(tmp_path / "checkpoint_10")


def test_torchtune_epochs_and_a_missing_shard(tmp_path):
    src = FIX / "torchtune"
    place(src / "epoch_0", tmp_path / "epoch_0", 500)
    place(src / "epoch_1", tmp_path / "epoch_1", 600)
    place(src / "recipe_state", tmp_path / "recipe_state", 500)
    partial = place(src / "epoch_1", tmp_path / "epoch_2", 100)
    (partial / "model-00002-of-00002.safetensors").unlink()
    (partial / "model.safetensors.index.json").unlink()
    entries = scan_checkpoints(tmp_path)
    assert names(entries) == ["epoch_0", "epoch_1", "epoch_2"]  # recipe_state/ is no checkpoint
    assert [e.step for e in entries] == [0, 1, 2]
    assert (entries[2].writing, entries[2].note) == (
        True, "shard model-00002-of-00002.safetensors missing")
    assert newest_finished(entries).name == "epoch_1"
    assert runner_newest(tmp_path) == str(tmp_path / "epoch_1")


@pytest.mark.skipif(not os.path.exists(PY37), reason="python 3.7 is not installed")
def test_runner_file_agrees_on_python37(tmp_path):
    """The runner is one stdlib zipapp that must run on Python 3.7 hosts."""
    for name in KERAS:
        place(FIX / "keras_models" / name, tmp_path / "keras" / name, 100)
    place(FIX / "corrupt" / "truncated.keras", tmp_path / "keras" / "model.09-0.10.keras", 50)
    for name in ("checkpoint_0", "checkpoint_1"):
        place(FIX / "accelerate" / "checkpoints" / name, tmp_path / "acc" / name, 100)
    for name in ("epoch_0", "epoch_1"):
        place(FIX / "torchtune" / name, tmp_path / "tt" / name, 100)
    for folder in ("keras", "acc", "tt"):
        scanned = newest_finished(scan_checkpoints(tmp_path / folder)).path
        assert runner_newest(tmp_path / folder, PY37) == scanned


# -- inspection ----------------------------------------------------------------------------


def tensor_map(info) -> dict:
    return {t.name: [t.dtype, list(t.shape)] for t in info.tensors}


@pytest.mark.parametrize("name", KERAS)
def test_keras_file_inspection(name):
    exp = EXPECTED[f"keras_models/{name}"]
    info = ci.inspect_checkpoint(FIX / "keras_models" / name)
    assert (info.format, info.status, info.reason) == ("keras", "ok", None)
    assert info.model_args == {"class": exp["class"], "name": "tiny", "layers": exp["layers"],
                               "layer_classes": "InputLayer, Dense x2"}
    assert info.metadata["keras_version"] == exp["keras_version"]
    assert info.metadata["date_saved"] == exp["date_saved"]
    assert info.metadata["optimizer"] == f"{exp['optimizer']} (learning_rate=0.01)"
    assert info.step == exp["iterations"]  # the optimizer's iteration counter
    assert tensor_map(info) == exp["datasets"]
    assert info.param_count == exp["param_count"] and info.has_optimizer
    assert info.unverified == []  # CRCs, structure and bounds were all checked


@pytest.mark.parametrize("name", WEIGHTS)
def test_keras_weights_inspection(name):
    exp = EXPECTED[f"keras_weights/{name}"]
    info = ci.inspect_checkpoint(FIX / "keras_weights" / name)
    assert (info.format, info.status) == ("keras-weights", "ok")
    assert tensor_map(info) == exp["datasets"]
    assert (info.step, info.param_count, info.has_optimizer) == (
        exp["iterations"], exp["param_count"], True)
    assert info.model_args == {"weight_layers": 2, "layer_names": ["hidden", "out"]}
    assert info.unverified == ["dataset bytes not checked (HDF5 keeps no checksum of them)"]


def test_keras_legacy_h5_inspection():
    exp = EXPECTED["keras_legacy.h5"]
    info = ci.inspect_checkpoint(FIX / "keras_legacy.h5")
    assert (info.format, info.status) == ("keras-h5", "ok")
    assert info.model_args["class"] == exp["class"]
    assert info.model_args["layers"] == exp["layers"]
    assert info.metadata["keras_version"] == exp["keras_version"]
    assert info.metadata["backend"] == "torch"
    assert info.metadata["optimizer"].startswith(exp["optimizer"])
    assert info.step == exp["iterations"]
    assert tensor_map(info) == exp["datasets"]
    assert info.param_count == 19 and info.has_optimizer


def test_keras_functional_bfloat16():
    exp = EXPECTED["keras_functional_bf16.keras"]
    info = ci.inspect_checkpoint(FIX / "keras_functional_bf16.keras")
    assert (info.format, info.status) == ("keras", "ok")
    assert info.model_args["class"] == exp["class"] == "Functional"
    assert info.model_args["layers"] == exp["layers"]
    assert tensor_map(info) == exp["datasets"]
    assert info.dtypes == {"bfloat16": len(exp["datasets"])}
    assert info.step is None and not info.has_optimizer and "optimizer" not in info.metadata


@pytest.mark.parametrize("name", ["superblock_v2.weights.h5", "superblock_v3.weights.h5"])
def test_newer_hdf5_layouts(name):
    exp = EXPECTED[f"hdf5/{name}"]
    info = ci.inspect_checkpoint(FIX / "hdf5" / name)
    assert (info.format, info.status) == ("keras-weights", "ok")
    assert info.metadata["hdf5_superblock"] == exp["superblock"]
    assert tensor_map(info) == exp["datasets"]


def test_what_the_hdf5_reader_cannot_read_is_said():
    info = ci.inspect_checkpoint(FIX / "hdf5" / "dense_group_v3.h5")
    assert info.status == "ok"
    assert tensor_map(info) == {"chunked": ["float32", [8, 8]]}  # the 10 in many/ are not
    assert info.unverified == [
        "chunk index of chunked (layout version 4) not checked",
        "members of many kept in dense storage (a fractal heap) were not listed",
        "dataset bytes not checked (HDF5 keeps no checksum of them)",
    ]


def test_chunked_dataset_chunks_are_bounds_checked():
    data = (FIX / "hdf5" / "chunked_v0.h5").read_bytes()
    summary = hdf5.read_hdf5(lambda at, n: data[at:at + n], len(data))
    assert summary.chunks_checked == EXPECTED["hdf5/chunked_v0.h5"]["chunks"]
    (dataset,) = summary.datasets
    assert (dataset.path, dataset.shape, dataset.dtype, dataset.filters) == (
        "w", (16, 16), "float32", ["shuffle", "deflate"])
    assert summary.groups[0].attrs == {"note": "chunked, gzip + shuffle"}


def test_hard_link_cycles_end():
    info = ci.inspect_checkpoint(FIX / "hdf5" / "cycle_v0.h5")
    assert info.status == "ok"
    assert [t.name for t in info.tensors] == EXPECTED["hdf5/cycle_v0.h5"]["datasets"]


@pytest.mark.parametrize("name", ["accelerate/checkpoints/checkpoint_0",
                                  "accelerate/checkpoints/checkpoint_1",
                                  "accelerate_bin/checkpoints/checkpoint_0"])
def test_accelerate_dir_inspection(name):
    exp = EXPECTED[name]
    info = ci.inspect_checkpoint(FIX / name)
    assert (info.format, info.status) == ("accelerate-dir", "ok")
    assert sorted(f["name"] for f in info.files) == exp["files"]
    roles = {f["name"]: f["role"] for f in info.files}
    assert roles["optimizer.bin"] == "optimizer" and roles["random_states_0.pkl"] == "rng_state"
    assert all(f["status"] == "ok" for f in info.files)
    assert info.param_count == exp["param_count"] and info.has_optimizer
    assert info.step == exp["step"]  # the Accelerator's step counter, from random_states
    assert info.metadata["save_iteration"] == int(name[-1])
    assert info.unknown_globals == [] and info.dangerous_globals == []


def test_torchtune_dir_inspection():
    first, last = (ci.inspect_checkpoint(FIX / "torchtune" / f"epoch_{n}") for n in (0, 1))
    for n, info in enumerate((first, last)):
        exp = EXPECTED[f"torchtune/epoch_{n}"]
        assert (info.format, info.status, info.epoch) == ("torchtune-dir", "ok", n)
        assert sorted(f["name"] for f in info.files) == exp["files"]
        assert info.param_count == exp["param_count"]
        assert info.model_args["model_type"] == "llama"
    assert EXPECTED["torchtune/recipe_state/recipe_state.pt"]["epochs_run"] == 1
    assert first.has_optimizer  # the recipe state beside it is this epoch's
    assert first.metadata["recipe_state"] == ("../recipe_state/recipe_state.pt "
                                              "(epochs_run 1: this epoch)")
    assert not last.has_optimizer  # the final epoch: torchtune saves no recipe state
    assert last.metadata["recipe_state"] == ("../recipe_state/recipe_state.pt "
                                             "(epochs_run 1: another epoch)")


# -- damaged files -------------------------------------------------------------------------

BAD = {
    "truncated.keras": "truncated or unfinished zip: no end-of-central-directory record "
                       f"({EXPECTED['corrupt/truncated.keras']['size']:,} bytes)",
    "bad_crc.keras": "CRC mismatch in model.weights.h5",
    "wrong_signature.keras": "not a zip archive, as a .keras file is "
                             "(starts with b'XX\\x03\\x04\\x14\\x00\\x00\\x00')",
    "truncated.weights.h5": "truncated: the HDF5 superblock says the file is 19,896 bytes, it "
                            "has 9,948 (9,948 missing)",
    "wrong_signature.weights.h5": "not an HDF5 file: no HDF5 signature "
                                  "(starts with b'\\x89HDX\\r\\n\\x1a\\n')",
    "bad_superblock_checksum.h5": "superblock checksum mismatch (version 3 superblock)",
    "open_for_writing.weights.h5": "HDF5 file still open for writing, or its writer died "
                                   "before closing it",
    "data_past_end.weights.h5": "data of layers/dense/vars/0 (bytes 23,992-24,040) runs past "
                                "the end of the file (19,896 bytes)",
}


def test_truncation_byte_counts_come_from_the_files():
    exp = EXPECTED["corrupt/truncated.weights.h5"]
    assert f"{exp['expected']:,} bytes, it has {exp['actual']:,}" in BAD["truncated.weights.h5"]
    past = EXPECTED["corrupt/data_past_end.weights.h5"]
    assert f"{past['start']:,}-{past['end']:,}" in BAD["data_past_end.weights.h5"]


@pytest.mark.parametrize("name", sorted(BAD))
def test_damaged_files_are_corrupt_with_a_clear_reason(name, tmp_path):
    path = place(FIX / "corrupt" / name, tmp_path / name, 100)
    before = fingerprint(tmp_path)
    for deep in (False, True):
        ci.cache_clear()
        info = ci.inspect_checkpoint(path, deep=deep)
        assert (info.status, info.reason) == ("corrupt", BAD[name])
    assert fingerprint(tmp_path) == before


def test_bad_crc_keeps_what_the_file_says():
    """The CRC fails on a weight's bytes; the structure around them is still reported."""
    info = ci.inspect_checkpoint(FIX / "corrupt" / "bad_crc.keras")
    assert info.status == "corrupt"
    assert info.model_args["class"] == "Sequential" and info.tensor_count == 14


def test_cli_checkpoint_info_on_new_formats(tmp_path):
    ok = run_cli("checkpoint", "info", str(FIX / "keras_models" / KERAS[-1]))
    assert ok.returncode == 0, ok.stderr
    assert "class=Sequential" in ok.stdout and "layers=3" in ok.stdout
    assert "layers/dense/vars/0" in ok.stdout and "4x3" in ok.stdout
    bad = place(FIX / "corrupt" / "truncated.weights.h5", tmp_path / "x.weights.h5", 100)
    result = run_cli("checkpoint", "info", str(bad), "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert (data["status"], data["reason"]) == ("corrupt", BAD["truncated.weights.h5"])
    dense = run_cli("checkpoint", "info", str(FIX / "hdf5" / "dense_group_v3.h5"))
    assert "not checked" in dense.stdout and "dense storage" in dense.stdout


def test_flipped_bytes_never_crash_the_reader():
    """Damage anywhere in the metadata ends in ok or corrupt, quickly, never an exception."""
    rng = random.Random(7)
    for name in ("keras_weights/ckpt_epoch_01.weights.h5", "keras_legacy.h5",
                 "hdf5/superblock_v3.weights.h5", "hdf5/chunked_v0.h5",
                 f"keras_models/{KERAS[0]}"):
        data = (FIX / name).read_bytes()
        for _ in range(300):
            damaged = bytearray(data)
            for _ in range(rng.choice((1, 2, 8))):
                damaged[rng.randrange(min(len(data), 12288))] = rng.randrange(256)
            started = time.monotonic()
            info = ci.inspect_fileobj(io.BytesIO(bytes(damaged)), name, len(damaged))
            assert info.status in ("ok", "corrupt"), info.reason
            assert time.monotonic() - started < 2


# -- pruning, remote hosts, imports ------------------------------------------------------


def test_prune_keras_and_accelerate_to_the_trash(tmp_path, trainctl_home):
    keras_dir = tmp_path / "keras"
    for age, name in zip((300, 200, 100), KERAS, strict=True):
        place(FIX / "keras_models" / name, keras_dir / name, age)
    place(FIX / "corrupt" / "truncated.keras", keras_dir / "model.04-0.50.keras", 50)
    result = run_cli("checkpoints", "prune", str(keras_dir), "--keep-last", "1")
    assert result.returncode == 0, result.stderr
    # the newest valid epoch stays, the unfinished save is never touched
    assert sorted(p.name for p in keras_dir.iterdir()) == [KERAS[-1], "model.04-0.50.keras"]
    trashed = sorted(p.name for p in (trainctl_home / "trash").rglob("*.keras"))
    assert trashed == KERAS[:-1]

    acc = tmp_path / "acc"
    for n in (0, 1):
        place(FIX / "accelerate" / "checkpoints" / f"checkpoint_{n}", acc / f"checkpoint_{n}",
              200 - n)
    dry = run_cli("checkpoints", "prune", str(acc), "--keep-last", "1", "--dry-run")
    assert dry.returncode == 0 and "1 to delete" in dry.stdout
    assert sorted(p.name for p in acc.iterdir()) == ["checkpoint_0", "checkpoint_1"]
    real = run_cli("checkpoints", "prune", str(acc), "--keep-last", "1")
    assert real.returncode == 0, real.stderr
    assert sorted(p.name for p in acc.iterdir()) == ["checkpoint_1"]
    assert (next((trainctl_home / "trash").rglob("checkpoint_0")) / "random_states_0.pkl"
            ).is_file()


def test_listing_on_a_remote_host_uses_the_same_rules(tmp_path):
    """What an SSH host runs: the runner's zipapp (runner, inspector, HDF5 reader) alone."""
    runner = tmp_path / "runner"
    runner.mkdir()
    shutil.copy(runner_zipapp(), runner / "trainctl-runner.pyz")
    folder = tmp_path / "ckpt"
    place(FIX / "keras_models" / KERAS[-1], folder / KERAS[-1], 100)
    place(FIX / "corrupt" / "truncated.keras", folder / "model.04-0.50.keras", 100)
    place(FIX / "torchtune" / "epoch_0", folder / "epoch_0", 100)
    out = subprocess.run([sys.executable, "-c", LISTING_SCRIPT, str(runner / "trainctl-runner.pyz"),
                          str(folder)], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)["rows"]}
    assert rows["model.04-0.50.keras"]["writing"] and rows["model.04-0.50.keras"]["info"] is None
    keras_info = rows[KERAS[-1]]["info"]
    assert (keras_info["format"], keras_info["step"]) == ("keras", 9)
    assert rows["epoch_0"]["info"]["format"] == "torchtune-dir"


def inspect_from(zipapp: Path, path: Path, cwd: Path) -> subprocess.CompletedProcess:
    """The inspector's command line run from a zipapp, as on a remote host."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "trainctl_tui.checkpoints.inspect", str(path),
                           "--json"], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**env, "PYTHONPATH": str(zipapp)})


def test_inspector_alone_says_what_it_could_not_check(tmp_path):
    alone = tmp_path / "no-hdf5.pyz"  # a zipapp without the HDF5 reader
    write_bundle(str(alone), {name: data for name, data in bundle_files().items()
                              if "/hdf5" not in name})
    out = inspect_from(alone, FIX / "keras_models" / KERAS[-1], tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["format"], data["status"]) == ("keras", "ok")
    assert data["model_args"]["class"] == "Sequential"  # config.json needs no HDF5 reader
    assert data["unverified"] == ["HDF5 model.weights.h5 not read: the HDF5 reader (hdf5.py) "
                                  "is not next to this file"]
    out = inspect_from(runner_zipapp(), FIX / "keras_models" / KERAS[-1], tmp_path)
    assert json.loads(out.stdout)["step"] == 9


def test_inspecting_new_formats_imports_no_ml_library():
    paths = [str(FIX / p) for p in (f"keras_models/{KERAS[0]}", "keras_legacy.h5",
                                    "accelerate/checkpoints/checkpoint_0", "torchtune/epoch_0")]
    # From the runner's zipapp: its trainctl_tui holds the inspector and nothing else of ours.
    code = f"""
import sys
sys.path.insert(0, {str(runner_zipapp())!r})
from trainctl_tui.checkpoints import inspect as module
for path in {paths!r}:
    assert module.inspect_checkpoint(path).status == "ok", path
shipped = ("trainctl_tui.checkpoints.inspect", "trainctl_tui.checkpoints.hdf5")
print([m for m in ("h5py", "keras", "tensorflow", "torch", "numpy", "accelerate", "torchtune",
                   "safetensors") if m in sys.modules] +
      [m for m in sys.modules if m.startswith("trainctl_tui.") and not m.startswith(shipped)
       and m != "trainctl_tui.checkpoints"])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
