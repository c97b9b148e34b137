"""Retention: plan properties (hypothesis) and real moves/deletes on real files and dirs."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainctl_tui.checkpoints import retention
from trainctl_tui.checkpoints.retention import (
    Decision,
    PrunePlan,
    apply_prune,
    default_mode,
    plan_prune,
)
from trainctl_tui.checkpoints.scan import CheckpointEntry, order_key, scan_checkpoints

ROOT = "/nonexistent-ckpts"
FAST = settings(max_examples=150, deadline=None)
DISK = settings(max_examples=20, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def entry(name: str, step: int | None, mtime: float, *, writing: bool = False,
          root: str = ROOT, kind: str = "file", size: int = 1) -> CheckpointEntry:
    return CheckpointEntry(path=f"{root}/{name}", name=name, kind=kind, step=step, mtime=mtime,
                           size=size, writing=writing, note=None, root=root)


def put(path: Path, data: bytes = b"x", age: float = 100.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def listing(top: Path) -> dict[str, tuple]:
    """Every path under `top` with its kind, size and mtime (links not followed)."""
    out = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st_ = os.lstat(path)
            out[os.path.relpath(path, top)] = (st_.st_mode, st_.st_size, st_.st_mtime_ns)
    return out


# --------------------------------------------------------------------------- plan properties

checkpoint_specs = st.lists(
    st.fixed_dictionaries({
        "step": st.one_of(st.none(), st.integers(0, 50)),
        "valid": st.sampled_from([True, False, None]),
        "writing": st.booleans(),
        "protected": st.booleans(),
        "metric": st.one_of(st.none(), st.floats(-5, 5, allow_nan=False), st.just(float("nan"))),
    }),
    max_size=12,
)


def build(specs):
    entries, validity, metrics, protected = [], {}, {}, {}
    for i, spec in enumerate(specs):
        e = entry(f"c{i}.pt", spec["step"], 1000.0 + i, writing=spec["writing"])
        entries.append(e)
        if spec["valid"] is not None:
            validity[e.path] = spec["valid"]
        if spec["metric"] is not None:
            metrics[e.path] = {"val_loss": spec["metric"], "other": 1.0}
        if spec["protected"]:
            protected[e.path] = f"session s{i} resumed from it"
    return entries, validity, metrics, protected


@FAST
@given(specs=checkpoint_specs, keep_last=st.integers(1, 5), use_best=st.booleans(),
       mode=st.sampled_from([None, "min", "max"]), seed=st.integers(0, 1000))
def test_plan_properties(specs, keep_last, use_best, mode, seed):
    entries, validity, metrics, protected = build(specs)
    shuffled = entries[:]
    random.Random(seed).shuffle(shuffled)  # the caller's order does not matter
    plan = plan_prune(shuffled, keep_last=keep_last, keep_best="val_loss" if use_best else None,
                      mode=mode, validity=validity, metrics=metrics, protected=protected)
    kept = {d.entry.path for d in plan.keep}
    ordered = sorted(entries, key=order_key)
    assert [d.entry.path for d in plan.decisions] == [e.path for e in ordered]
    finished = [e for e in ordered if not e.writing]

    # Never deleted: being written, protected, the newest valid one, the last N finished.
    assert all(e.path in kept for e in entries if e.writing or e.path in protected)
    known_valid = [e for e in finished if validity.get(e.path) is True]
    if known_valid:
        assert known_valid[-1].path in kept
    unchecked = [e for e in finished if e.path not in validity]
    if unchecked and (not known_valid or order_key(unchecked[-1]) > order_key(known_valid[-1])):
        assert unchecked[-1].path in kept  # may be the newest valid one
    assert {e.path for e in finished[-keep_last:]} <= kept

    # The best by metric survives (ties: any with the best value), among non-invalid ones.
    scored = [e for e in finished if validity.get(e.path) is not False
              and e.path in metrics and metrics[e.path]["val_loss"] == metrics[e.path]["val_loss"]]
    if use_best and scored:
        pick = min if (mode or "min") == "min" else max
        best_value = pick(metrics[e.path]["val_loss"] for e in scored)
        assert any(metrics[e.path]["val_loss"] == best_value for e in scored if e.path in kept)
    if use_best and not scored:
        assert any("no checkpoint has metric 'val_loss'" in n for n in plan.notes)

    # At most keep_last + best + protected + newest valid (+ being written) are kept.
    newest_valid = sum("newest valid" in d.reason for d in plan.keep)
    assert newest_valid <= (2 if validity and unchecked else 1)
    bound = keep_last + int(use_best) + len(protected) + newest_valid
    bound += sum(e.writing and e.path not in protected for e in entries)
    assert len(kept) <= bound

    # Every deletion is explained and really old.
    for d in plan.delete:
        assert not d.entry.writing and d.entry.path not in protected
        assert d.reason.endswith(f"older than the last {keep_last}")
        assert sum(order_key(e) > order_key(d.entry) for e in finished) >= keep_last
    assert len(plan.summary().splitlines()) == 2 + len(entries) + len(plan.notes)


def test_reasons_and_summary():
    entries = [entry(f"step_{s}.pt", s, 1000.0 + s) for s in (1, 2, 3, 4, 5)]
    entries.append(entry("step_6.pt.tmp", 6, 2000.0, writing=True))
    paths = {e.name: e.path for e in entries}
    plan = plan_prune(
        entries, keep_last=2, keep_best="val_loss",
        validity={paths["step_5.pt"]: False, paths["step_4.pt"]: True, paths["step_3.pt"]: True},
        metrics={paths["step_2.pt"]: {"val_loss": 0.312}, paths["step_4.pt"]: {"val_loss": 0.5}},
        protected={paths["step_1.pt"]: "session abc123 resumed from it"},
    )
    reasons = {d.entry.name: (d.keep, d.reason) for d in plan.decisions}
    assert reasons == {
        "step_1.pt": (True, "protected: session abc123 resumed from it"),
        "step_2.pt": (True, "best val_loss=0.312"),
        "step_3.pt": (False, "older than the last 2"),
        "step_4.pt": (True, "newest valid; in last 2"),
        "step_5.pt": (True, "in last 2 (invalid)"),
        "step_6.pt.tmp": (True, "being written"),
    }
    text = plan.summary()
    assert text.splitlines()[0] == f"prune {ROOT}: keep last 2 + best val_loss (min)"
    line = next(x for x in text.splitlines() if "step_3.pt" in x)
    assert line.startswith("DELETE") and line.endswith("older than the last 2")
    assert text.splitlines()[-1] == "5 kept, 1 to delete (1 B)"


def test_unchecked_newer_than_known_valid_is_kept_too():
    entries = [entry(f"s{s}.pt", s, 1000.0 + s) for s in (1, 2, 3, 4)]
    validity = {entries[0].path: True, entries[2].path: False, entries[3].path: False}
    plan = plan_prune(entries, keep_last=1, validity=validity)
    reasons = {d.entry.name: d.reason for d in plan.keep}
    assert reasons == {"s1.pt": "newest valid", "s2.pt": "newest valid (not checked)",
                       "s4.pt": "in last 1 (invalid)"}
    assert [d.reason for d in plan.delete] == ["invalid, older than the last 1"]


def test_missing_metric_is_said_not_ignored():
    entries = [entry("a1.pt", 1, 1.0), entry("a2.pt", 2, 2.0)]
    plan = plan_prune(entries, keep_last=1, keep_best="eval_acc",
                      metrics={entries[0].path: {"loss": 1.0}})
    assert plan.notes == ["no checkpoint has metric 'eval_acc': none kept as best "
                          "(metrics seen: loss)"]
    assert plan.summary().endswith("note: " + plan.notes[0])
    assert plan.mode == "max"


def test_protected_file_inside_a_checkpoint_dir_protects_the_dir():
    entries = [entry("checkpoint-1", 1, 1.0, kind="dir"), entry("checkpoint-2", 2, 2.0,
                                                                  kind="dir")]
    plan = plan_prune(entries, keep_last=1,
                      protected={f"{ROOT}/checkpoint-1/model.safetensors": "session x"})
    assert not plan.delete and plan.keep[0].reason == "protected: session x"


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True, None])
def test_keep_last_must_be_at_least_one(bad):
    with pytest.raises(ValueError, match="keep_last must be a whole number of at least 1"):
        plan_prune([entry("a.pt", 1, 1.0)], keep_last=bad)


def test_bad_mode_and_metric():
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        plan_prune([], keep_last=1, keep_best="loss", mode="median")
    with pytest.raises(ValueError, match="keep_best must name a metric"):
        plan_prune([], keep_last=1, keep_best=" ")


def test_default_mode():
    assert [default_mode(m) for m in ("val_loss", "eval/loss", "perplexity", "eval_wer",
                                      "accuracy", "answer_f1", "bleu")] == \
        ["min", "min", "min", "min", "max", "max", "max"]


def test_entries_from_two_directories_need_an_explicit_directory():
    with pytest.raises(ValueError, match="directory="):
        plan_prune([entry("a.pt", 1, 1.0), entry("b.pt", 2, 2.0, root="/other")], keep_last=1)


# --------------------------------------------------------------------------- real disk


def make_tree(top: Path, specs) -> dict[str, str]:
    """Real checkpoints: files, HF dirs (some without trainer_state.json), temp names."""
    kinds = {}
    for i, (step, shape) in enumerate(specs):
        age = 1000 - i  # all settled: no second look, deterministic mtimes
        if shape == "file":
            name = f"step_{step}_{i}.pt"
            put(top / name, b"x" * (i + 1), age)
        elif shape == "dir":
            name = f"checkpoint-{step}{i}"
            put(top / name / "model.safetensors", b"w" * (i + 1), age)
            put(top / name / "trainer_state.json", json.dumps({"global_step": step}).encode(), age)
        elif shape == "hf-unfinished":
            name = f"checkpoint-{step}{i}"
            put(top / name / "model.safetensors", b"w", age)
        else:
            name = f"step_{step}_{i}.pt.tmp"
            put(top / name, b"t", age)
        kinds[name] = shape
    return kinds


disk_specs = st.lists(
    st.tuples(st.integers(0, 9), st.sampled_from(["file", "dir", "hf-unfinished", "temp"])),
    min_size=1, max_size=8,
)


@DISK
@given(specs=disk_specs, keep_last=st.integers(1, 4), data=st.data())
def test_apply_moves_exactly_the_planned_entries(specs, keep_last, data):
    with tempfile.TemporaryDirectory() as tmp:
        top, trash = Path(tmp) / "ckpts", Path(tmp) / "state" / "trash" / "20240101-000000"
        make_tree(top, specs)
        entries = scan_checkpoints(top)
        finished = [e for e in entries if not e.writing]
        chosen = data.draw(st.lists(st.sampled_from(entries), unique_by=lambda e: e.path)
                           if entries else st.just([]))
        protected = {e.path: "session s1 resumed from it" for e in chosen}
        validity = {e.path: data.draw(st.booleans()) for e in finished}
        plan = plan_prune(entries, keep_last=keep_last, validity=validity, protected=protected)
        before = listing(top)
        planned = {d.entry.path for d in plan.delete}

        removed = apply_prune(plan, trash_dir=str(trash))

        assert set(removed) == planned and not removed.skipped
        after = listing(top)
        for decision in plan.decisions:
            rel = decision.entry.name
            gone = {k for k in before if k == rel or k.startswith(rel + os.sep)}
            if decision.keep:
                assert {k: before[k] for k in gone} == {k: after[k] for k in gone}
            else:
                assert not gone & set(after)
                moved = {k: v[1] for k, v in before.items() if k in gone}
                assert {k: v[1] for k, v in listing(trash).items() if k in gone} == moved
        trashed = {k.split(os.sep)[0] for k in listing(trash)} if trash.exists() else set()
        assert trashed == {os.path.basename(p) for p in planned}
        assert set(after) == set(before) - {k for k in before if k.split(os.sep)[0] in trashed}


def test_dry_run_changes_nothing(tmp_path):
    top = tmp_path / "ckpts"
    make_tree(top, [(1, "file"), (2, "dir"), (3, "temp"), (4, "file"), (5, "hf-unfinished")])
    os.symlink(top / "step_1_0.pt", top / "best.pt")
    before = listing(tmp_path)
    plan = plan_prune(scan_checkpoints(top), keep_last=1)
    assert plan.delete and plan.summary()
    assert listing(tmp_path) == before


def test_purge_deletes_files_dirs_and_links_only(tmp_path):
    top, outside = tmp_path / "ckpts", tmp_path / "elsewhere"
    put(outside / "target.pt", b"keep me")
    put(top / "step_1.pt", age=300)
    put(top / "step_2" / "model.pt", age=300)
    put(top / "step_2" / "sub" / "optim.pt", age=300)
    os.symlink(outside / "target.pt", top / "step_3.pt")
    os.symlink(outside, top / "step_2" / "shared")  # rmtree must not follow it
    put(top / "step_9.pt", age=300)
    plan = plan_prune(scan_checkpoints(top), keep_last=1)
    assert [d.entry.name for d in plan.delete] == ["step_1.pt", "step_2", "step_3.pt"]
    removed = apply_prune(plan, trash_dir=None, purge=True)
    assert [os.path.basename(p) for p in removed] == ["step_1.pt", "step_2", "step_3.pt"]
    assert sorted(os.listdir(top)) == ["step_9.pt"]
    assert (outside / "target.pt").read_bytes() == b"keep me"
    with pytest.raises(ValueError, match="trash_dir is required"):
        apply_prune(plan, trash_dir=None)


def test_modified_between_plan_and_apply_is_skipped(tmp_path):
    top, trash = tmp_path / "ckpts", tmp_path / "trash"
    for step in (1, 2, 3, 4):
        put(top / f"step_{step}.pt", age=300)
    put(top / "step_3" / "model.pt", age=300)
    plan = plan_prune(scan_checkpoints(top), keep_last=1)
    put(top / "step_1.pt", b"rewritten", age=0)  # a writer came back
    put(top / "step_3" / "model.pt", age=5)  # same size, new mtime
    os.unlink(top / "step_2.pt")
    removed = apply_prune(plan, trash_dir=str(trash))
    assert [os.path.basename(p) for p in removed] == ["step_3.pt"]
    assert sorted((os.path.basename(p), why) for p, why in removed.skipped) == [
        ("step_1.pt", "size changed since the scan"),
        ("step_2.pt", "no longer exists"),
        ("step_3", "modified since the scan"),
    ]
    assert (top / "step_1.pt").read_bytes() == b"rewritten"
    assert sorted(os.listdir(trash)) == ["step_3.pt"]


def test_paths_outside_the_directory_are_refused(tmp_path):
    top, outside = tmp_path / "ckpts", tmp_path / "elsewhere"
    put(top / "step_1.pt")
    put(top / "step_2.pt")
    put(outside / "victim.pt")
    os.symlink(outside, top / "escape")
    entries = list(scan_checkpoints(top))
    sneaky = [
        entry("../elsewhere/victim.pt", 0, 1.0, root=str(top)),
        entry("escape/victim.pt", 0, 1.0, root=str(top)),  # through a symlinked folder
    ]
    plan = plan_prune(entries + sneaky, keep_last=1)
    refused = [d for d in plan.decisions if d.reason.startswith("refused: outside")]
    assert len(refused) == 2 and all(d.keep for d in refused)
    for bad in sneaky:  # a hand-made plan gets nothing done at all
        tampered = PrunePlan([Decision(entries[0], False, "x"), Decision(bad, False, "x")],
                             str(top))
        with pytest.raises(ValueError, match="refusing to touch"):
            apply_prune(tampered, trash_dir=str(tmp_path / "trash"), purge=True)
    assert (outside / "victim.pt").exists() and (top / "step_1.pt").exists()
    with pytest.raises(ValueError, match="must be outside"):
        apply_prune(plan, trash_dir=str(top / "trash"))


def test_writing_entries_are_never_acted_on(tmp_path):
    put(tmp_path / "ck" / "step_1.pt.tmp")
    entries = scan_checkpoints(tmp_path / "ck")
    plan = PrunePlan([Decision(entries[0], False, "forced")], str(tmp_path / "ck"))
    removed = apply_prune(plan, trash_dir=str(tmp_path / "trash"))
    assert removed == [] and removed.skipped == [(entries[0].path, "being written")]
    assert (tmp_path / "ck" / "step_1.pt.tmp").exists()


def test_trash_keeps_nested_paths_and_never_overwrites(tmp_path):
    top, trash = tmp_path / "ckpts", tmp_path / "trash"
    put(top / "run1" / "step_1.pt", b"new")
    put(top / "run1" / "step_2.pt")
    put(trash / "run1" / "step_1.pt", b"older trash")
    plan = plan_prune(scan_checkpoints(top, recursive=True), keep_last=1)
    removed = apply_prune(plan, trash_dir=str(trash))
    dest = removed.moved_to[str(top / "run1" / "step_1.pt")]
    assert dest == str(trash / "run1" / "step_1.pt.1") and Path(dest).read_bytes() == b"new"
    assert (trash / "run1" / "step_1.pt").read_bytes() == b"older trash"


def test_cross_filesystem_move_copies_then_deletes(tmp_path, monkeypatch):
    top, trash = tmp_path / "ckpts", tmp_path / "trash"
    put(top / "checkpoint-1" / "model.safetensors", b"m" * 100, 300)
    put(top / "checkpoint-1" / "trainer_state.json", b'{"global_step": 1}', 300)
    os.symlink("model.safetensors", top / "checkpoint-1" / "alias.safetensors")
    put(top / "step_2.pt", b"f" * 10, 300)
    os.symlink(top / "step_2.pt", top / "step_3.pt")
    put(top / "step_9.pt", age=300)
    monkeypatch.setattr(retention, "_try_rename", lambda src, dest: False)  # as if EXDEV
    plan = plan_prune(scan_checkpoints(top), keep_last=1)
    removed = apply_prune(plan, trash_dir=str(trash))
    assert sorted(os.path.basename(p) for p in removed) == ["checkpoint-1", "step_2.pt",
                                                           "step_3.pt"]
    assert sorted(os.listdir(top)) == ["step_9.pt"]
    assert (trash / "checkpoint-1" / "model.safetensors").read_bytes() == b"m" * 100
    assert os.readlink(trash / "checkpoint-1" / "alias.safetensors") == "model.safetensors"
    assert os.readlink(trash / "step_3.pt") == str(top / "step_2.pt")  # the link, as a link
    assert not [n for n in os.listdir(trash) if n.endswith(".trainctl-partial")]


def test_failed_copy_leaves_original_and_no_partial(tmp_path, monkeypatch):
    top, trash = tmp_path / "ckpts", tmp_path / "trash"
    put(top / "step_1" / "a.pt", b"a" * 50, 300)
    put(top / "step_1" / "b.pt", b"b" * 50, 300)
    put(top / "step_2.pt", age=300)
    real_copy2 = shutil.copy2
    copied = []

    def copy_then_fail(src, dst, **kwargs):
        if copied:
            raise OSError(28, "No space left on device")
        copied.append(src)
        return real_copy2(src, dst, **kwargs)

    monkeypatch.setattr(retention, "_try_rename", lambda src, dest: False)
    monkeypatch.setattr(shutil, "copy2", copy_then_fail)
    before = listing(top)
    plan = plan_prune(scan_checkpoints(top), keep_last=1)
    removed = apply_prune(plan, trash_dir=str(trash))
    assert removed == [] and len(removed.skipped) == 1
    assert "No space left on device" in removed.skipped[0][1]
    assert listing(top) == before
    assert os.listdir(trash) == []  # nothing half-copied left behind


def test_kept_link_keeps_its_target(tmp_path):
    top = tmp_path / "ckpts"
    for step in (1, 2, 3):
        put(top / f"step_{step}.pt", age=300)
    os.symlink("step_1.pt", top / "step_9.pt")  # e.g. a "latest"/"best" pointer
    plan = plan_prune(scan_checkpoints(top), keep_last=1)
    reasons = {d.entry.name: d.reason for d in plan.decisions if d.keep}
    assert reasons == {"step_9.pt": "newest valid (not checked); in last 1",
                       "step_1.pt": "target of kept link step_9.pt"}
    assert [d.entry.name for d in plan.delete] == ["step_2.pt", "step_3.pt"]
