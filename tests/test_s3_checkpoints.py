"""Checkpoints in S3 against moto's server, with the real fixture checkpoints uploaded: listing
by the completion-marker rule, inspection through ranged GETs (bytes counted), validation,
resumable downloads, ETag changes, prune, and the CLI."""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from moto_aws import aws, moto_server  # noqa: F401

from trainctl_tui.checkpoints.inspect import inspect_checkpoint
from trainctl_tui.core.errors import TrainctlError

FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints"
BUCKET = "ckpts"
PREFIX = "runs/abc123/checkpoints/"
URI = f"s3://{BUCKET}/{PREFIX}"
MARKER = ".trainctl-complete"


class Counting:
    """A boto3 S3 client that counts the bytes its GETs return and records deletions."""

    def __init__(self, client):
        self._client = client
        self.fetched = 0
        self.gets = 0
        self.deletes: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def get_object(self, **kwargs):
        answer = self._client.get_object(**kwargs)
        body = answer["Body"]
        data = body.read()
        body.close()
        self.fetched += len(data)
        self.gets += 1
        answer["Body"] = io.BytesIO(data)
        return answer

    def delete_objects(self, **kwargs):
        self.deletes.append([o["Key"] for o in kwargs["Delete"]["Objects"]])
        return self._client.delete_objects(**kwargs)


@pytest.fixture
def s3(aws):  # noqa: F811
    from trainctl_tui.backends.aws import api as aws_api
    from trainctl_tui.backends.aws import s3_checkpoints

    s3_checkpoints.cache_clear()
    client = aws_api.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def put_file(client, source: Path, name: str, *, marker: bool = True) -> None:
    client.upload_file(str(source), BUCKET, PREFIX + name)
    if marker:
        client.put_object(Bucket=BUCKET, Key=PREFIX + name + MARKER, Body=b"")


def put_dir(client, source: Path, name: str, *, marker: bool = True,
            replace: dict[str, bytes] | None = None) -> None:
    for path in sorted(source.rglob("*")):
        if path.is_file():
            rel = path.relative_to(source).as_posix()
            body = (replace or {}).get(rel, path.read_bytes())
            client.put_object(Bucket=BUCKET, Key=f"{PREFIX}{name}/{rel}", Body=body)
    if marker:
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}{name}/{MARKER}", Body=b"")


def keys(client, prefix: str = PREFIX) -> list[str]:
    answer = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in answer.get("Contents", []))


def comparable(info) -> dict:
    data = info.to_json()
    for name in ("path", "mtime"):
        data.pop(name)
    return data


# -- URIs and errors ------------------------------------------------------------------------


@pytest.mark.parametrize(("uri", "message"), [
    ("http://bucket/x", "not an S3 URI: 'http://bucket/x' (expected s3://BUCKET/PREFIX/)"),
    ("s3://", "no bucket in 's3://' (expected s3://BUCKET/PREFIX/)"),
    ("s3:///ckpt.pt", "no bucket in 's3:///ckpt.pt' (expected s3://BUCKET/PREFIX/)"),
    ("s3://My_Bucket/x", "'My_Bucket' is not a valid S3 bucket name in 's3://My_Bucket/x' "
                         "(3-63 lowercase letters, digits, dots and hyphens)"),
    ("s3://bucket//x", "empty folder name in 's3://bucket//x' (a '//' in the key)"),
])
def test_malformed_uris_are_one_clear_line(uri, message):
    from trainctl_tui.backends.aws.s3_checkpoints import parse_uri

    with pytest.raises(TrainctlError) as caught:
        parse_uri(uri)
    assert str(caught.value) == message


def test_parse_uri_keeps_bucket_and_prefix():
    from trainctl_tui.backends.aws.s3_checkpoints import parse_uri

    where = parse_uri("s3://my.bucket-1/a/b")
    assert (where.bucket, where.key, where.prefix) == ("my.bucket-1", "a/b", "a/b/")
    assert parse_uri("s3://bucket").prefix == ""


def test_missing_bucket_is_aws_one_line_error(s3):
    from trainctl_tui.backends.aws.s3_checkpoints import list_checkpoints

    with pytest.raises(TrainctlError) as caught:
        list_checkpoints("s3://no-such-bucket/x/")
    assert str(caught.value) == ("aws: listing s3://no-such-bucket/x/: NoSuchBucket: The "
                                 "specified bucket does not exist (no such S3 bucket)")


# -- listing --------------------------------------------------------------------------------


def upload_run(client) -> None:
    put_file(client, FIXTURES / "nanogpt_ckpt.pt", "ckpt_100.pt")
    put_file(client, FIXTURES / "lightning.ckpt", "epoch=1-step=200.ckpt")
    put_dir(client, FIXTURES / "hf_run" / "checkpoint-6", "checkpoint-300")
    put_file(client, FIXTURES / "evil_zip.pt", "ckpt_400.pt")
    put_file(client, FIXTURES / "model.safetensors", "ckpt_500.safetensors", marker=False)
    put_file(client, FIXTURES / "legacy.pt", "ckpt_600.pt.tmp", marker=False)
    client.put_object(Bucket=BUCKET, Key=PREFIX + "notes.txt", Body=b"not a checkpoint")
    client.put_object(Bucket=BUCKET, Key=PREFIX + "logs/train.log", Body=b"loss 1.0\n")


def test_listing_groups_objects_orders_by_step_and_marks_uploads_in_progress(s3):
    from trainctl_tui.backends.aws.s3_checkpoints import list_checkpoints

    upload_run(s3)
    entries, rows = list_checkpoints(URI)
    assert entries.directory == URI
    by_name = {r.entry.name: r for r in rows}
    assert set(by_name) == {"ckpt_100.pt", "epoch=1-step=200.ckpt", "checkpoint-300",
                            "ckpt_400.pt", "ckpt_500.safetensors", "ckpt_600.pt.tmp"}
    # steps from the names (as the local scanner), HF's from trainer_state.json
    assert [r.entry.step for r in rows] == [100, 200, 300, 400, 500, 600]
    assert by_name["checkpoint-300"].step == 6  # trainer_state.json's global_step
    status = {name: r.status for name, r in by_name.items()}
    assert status == {"ckpt_100.pt": "ok", "epoch=1-step=200.ckpt": "ok",
                      "checkpoint-300": "ok", "ckpt_400.pt": "suspicious",
                      "ckpt_500.safetensors": "writing", "ckpt_600.pt.tmp": "writing"}
    assert by_name["ckpt_500.safetensors"].entry.note == "no completion marker yet (uploading)"
    assert by_name["ckpt_500.safetensors"].info is None  # never opened while uploading
    assert by_name["ckpt_600.pt.tmp"].entry.note == "temporary name"
    hf = by_name["checkpoint-300"]
    local_hf = FIXTURES / "hf_run" / "checkpoint-6"
    assert hf.entry.kind == "dir"
    assert hf.entry.size == sum(p.stat().st_size for p in local_hf.iterdir())
    assert hf.entry.path == URI + "checkpoint-300"
    assert by_name["ckpt_100.pt"].entry.size == (FIXTURES / "nanogpt_ckpt.pt").stat().st_size
    row = by_name["ckpt_100.pt"].to_json()
    assert row["info"]["format"] == "torch-zip" and row["info"]["step"] == 250


def test_old_objects_without_markers_count_as_finished(s3):
    from trainctl_tui.backends.aws.s3_checkpoints import list_checkpoints

    put_file(s3, FIXTURES / "model.safetensors", "step_5.safetensors", marker=False)
    put_dir(s3, FIXTURES / "hf_run" / "checkpoint-6", "checkpoint-6", marker=False)
    put_dir(s3, FIXTURES / "hf_sharded_bin", "checkpoint-7", marker=False)  # no trainer_state
    _, rows = list_checkpoints(URI, recent_seconds=0)  # as if uploaded long ago
    status = {r.entry.name: (r.status, r.entry.note) for r in rows}
    assert status["step_5.safetensors"] == ("ok", None)
    assert status["checkpoint-6"] == ("ok", None)
    assert status["checkpoint-7"] == (
        "writing", "no trainer_state.json and no completion marker")


def test_service_and_snapshot_render_s3_rows_like_local_ones(s3):
    import asyncio

    from trainctl_tui.app.service import Service
    from trainctl_tui.render.snapshot import render_checkpoints

    upload_run(s3)
    directory, session, entries, rows = asyncio.run(Service().checkpoints(URI))
    assert directory == URI and session is None
    out = io.StringIO()
    render_checkpoints(directory, rows, entries.skipped, out)
    text = out.getvalue()
    assert URI in text
    for name in ("ckpt_100.pt", "checkpoint-300", "ckpt_500.safetensors"):
        assert name in text
    assert "writing" in text and "suspicious" in text


# -- inspection through ranges --------------------------------------------------------------


def big_safetensors(path: Path, size: int) -> None:
    data_len = size - 8 - 256
    header = {"__metadata__": {"format": "pt"},
              "weight": {"dtype": "F32", "shape": [data_len // 4], "data_offsets": [0,
                                                                                    data_len]}}
    raw = json.dumps(header).encode().ljust(256)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(size)


def big_torch_zip(path: Path, pad: int) -> None:
    """The nanoGPT fixture with one storage member padded by `pad` bytes (still valid: the
    pickle's storages fit in their members)."""
    with zipfile.ZipFile(FIXTURES / "nanogpt_ckpt.pt") as src, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data/0"):
                data += bytes(pad)
            dst.writestr(info.filename, data)


@pytest.mark.parametrize("kind", ["safetensors", "torch-zip"])
def test_inspecting_a_50mb_object_fetches_under_1mb(s3, tmp_path, kind):
    from trainctl_tui.backends.aws.s3_checkpoints import inspect_uri

    local = tmp_path / ("big.safetensors" if kind == "safetensors" else "big.pt")
    if kind == "safetensors":
        big_safetensors(local, 50 * 1024 * 1024)
    else:
        big_torch_zip(local, 50 * 1024 * 1024)
    size = local.stat().st_size
    assert size >= 50 * 1024 * 1024
    put_file(s3, local, local.name)
    counting = Counting(s3)
    info = inspect_uri(URI + local.name, client=counting)
    assert info.status == "ok", info.reason
    assert info.format == kind
    assert comparable(info) == comparable(inspect_checkpoint(local))
    assert 0 < counting.fetched < 1024 * 1024, counting.fetched
    assert counting.fetched < size / 50


FILE_FIXTURES = ["nanogpt_ckpt.pt", "lightning.ckpt", "model.safetensors", "legacy.pt",
                 "custom_classes.pt", "dtypes.pt", "truncated_zip.pt", "truncated.safetensors",
                 "truncated_header.safetensors", "truncated_legacy.pt", "short_storage.pt",
                 "lfs_pointer.pt", "empty.pt", "evil_zip.pt", "evil_raw.pt", "evil_eval_p2.pt",
                 "crc_flipped.pt"]


def test_validation_through_s3_matches_local_for_every_fixture(s3):
    from trainctl_tui.backends.aws.s3_checkpoints import inspect_uri

    seen = set()
    for name in FILE_FIXTURES:
        put_file(s3, FIXTURES / name, name)
        for deep in (False, True):
            remote = inspect_uri(URI + name, deep=deep)
            local = inspect_checkpoint(FIXTURES / name, deep=deep)
            assert remote.path == URI + name
            assert comparable(remote) == comparable(local), (name, deep)
            seen.add((name, deep, remote.status))
    statuses = {(name, deep): status for name, deep, status in seen}
    assert statuses[("evil_zip.pt", False)] == "suspicious"
    assert statuses[("evil_eval_p2.pt", False)] == "suspicious"
    assert statuses[("truncated_zip.pt", False)] == "corrupt"
    assert statuses[("empty.pt", False)] == "corrupt"
    assert statuses[("crc_flipped.pt", True)] == "corrupt"  # --deep reads every byte
    assert statuses[("nanogpt_ckpt.pt", False)] == "ok"


@pytest.mark.parametrize("fixture", ["hf_run/checkpoint-6", "hf_sharded_bin",
                                     "hf_missing_shard"])
def test_hf_directories_in_s3_match_local(s3, fixture):
    from trainctl_tui.backends.aws.s3_checkpoints import inspect_uri

    name = "checkpoint-9"
    put_dir(s3, FIXTURES / fixture, name)
    remote = inspect_uri(URI + name)
    local = inspect_checkpoint(FIXTURES / fixture)
    r, l_ = comparable(remote), comparable(local)
    assert r.pop("step") == (l_.pop("step") or 9)  # a fixture folder has no step in its name
    assert r == l_
    if fixture == "hf_missing_shard":
        assert remote.status == "corrupt" and "missing" in remote.reason
    else:
        assert remote.status == "ok"


def test_object_replaced_while_read_is_an_error_not_garbage(s3, tmp_path):
    from trainctl_tui.backends.aws.s3_checkpoints import RangeReader, S3ObjectChanged, resolve

    put_file(s3, FIXTURES / "nanogpt_ckpt.pt", "ckpt_1.pt")
    entry = resolve(URI + "ckpt_1.pt")
    obj = entry.objects[0]
    reader = RangeReader(s3, BUCKET, obj.key, obj.size, obj.etag, block_size=4096)
    assert reader.read(4)[:2] == b"PK"
    s3.put_object(Bucket=BUCKET, Key=obj.key, Body=(FIXTURES / "legacy.pt").read_bytes())
    reader.seek(obj.size - 100)
    with pytest.raises(S3ObjectChanged, match="changed in S3 while it was being read"):
        reader.read(50)


# -- downloads ------------------------------------------------------------------------------


class Stop(Exception):
    pass


def test_download_resumes_after_an_interruption(s3, tmp_path):
    from trainctl_tui.backends.aws.s3_checkpoints import DownloadStats, download_entry, resolve

    source = tmp_path / "src.pt"
    source.write_bytes(os.urandom(9 * 1024 * 1024 + 123))
    put_file(s3, source, "ckpt_7.pt")
    entry = resolve(URI + "ckpt_7.pt")
    dest = tmp_path / "out" / "ckpt_7.pt"
    seen = []

    def stop_midway(done, total):
        seen.append((done, total))
        if done >= 4 * 1024 * 1024:
            raise Stop

    with pytest.raises(Stop):
        download_entry(entry, dest, progress=stop_midway, part_size=1024 * 1024, threads=3)
    part = dest.with_name("ckpt_7.pt.part")
    assert not dest.exists() and part.exists()
    have = part.stat().st_size
    assert 4 * 1024 * 1024 <= have < source.stat().st_size
    assert part.read_bytes() == source.read_bytes()[:have]  # a prefix, whatever the threads did

    stats = DownloadStats()
    progress = []
    size = download_entry(entry, dest, progress=lambda d, t: progress.append((d, t)),
                          part_size=1024 * 1024, threads=3, stats=stats)
    total = source.stat().st_size
    assert size == total
    assert dest.read_bytes() == source.read_bytes()
    assert not part.exists() and not dest.with_name("ckpt_7.pt.part.etag").exists()
    assert stats.fetched == total - have  # only the remainder
    assert progress[0][0] >= have and progress[-1] == (total, total)
    assert all(a[0] <= b[0] for a, b in zip(progress, progress[1:], strict=False))


def test_object_changed_between_runs_starts_over_and_says_so(s3, tmp_path):
    from trainctl_tui.backends.aws.s3_checkpoints import download_entry, resolve

    first = os.urandom(3 * 1024 * 1024)
    second = os.urandom(3 * 1024 * 1024 + 5)
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "ckpt_8.pt", Body=first)
    dest = tmp_path / "ckpt_8.pt"

    def stop(done, total):
        if done >= 1024 * 1024:
            raise Stop

    with pytest.raises(Stop):
        download_entry(resolve(URI + "ckpt_8.pt"), dest, progress=stop, part_size=512 * 1024)
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "ckpt_8.pt", Body=second)
    notes = []
    download_entry(resolve(URI + "ckpt_8.pt"), dest, note=notes.append, part_size=512 * 1024)
    assert dest.read_bytes() == second
    assert notes == [f"{URI}ckpt_8.pt changed in S3 since the interrupted download: "
                     "starting it over"]


def test_object_changed_during_download_restarts_with_the_new_one(s3, tmp_path):
    from trainctl_tui.backends.aws.s3_checkpoints import download_entry, resolve

    first, second = os.urandom(2 * 1024 * 1024), os.urandom(2 * 1024 * 1024 + 17)
    key = PREFIX + "ckpt_9.pt"
    s3.put_object(Bucket=BUCKET, Key=key, Body=first)
    entry = resolve(URI + "ckpt_9.pt")
    old_etag = entry.objects[0].etag
    replaced = []

    def replace_once(done, total):
        if not replaced and done > 0:
            s3.put_object(Bucket=BUCKET, Key=key, Body=second)
            replaced.append(True)

    notes = []
    dest = tmp_path / "ckpt_9.pt"
    size = download_entry(entry, dest, progress=replace_once, note=notes.append,
                          part_size=256 * 1024, threads=1)
    assert dest.read_bytes() == second and size == len(second)
    new_etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')
    assert notes == [f"{URI}ckpt_9.pt changed in S3 during the download (ETag {old_etag} -> "
                     f"{new_etag}): starting it over"]


def test_directory_download_is_each_file(s3, tmp_path):
    from trainctl_tui.backends.aws.s3_checkpoints import pull

    source = FIXTURES / "hf_run" / "checkpoint-6"
    put_dir(s3, source, "checkpoint-6")
    remote, local, size = pull(URI + "checkpoint-6", str(tmp_path / "got"))
    assert remote == URI + "checkpoint-6" and local == tmp_path / "got" / "checkpoint-6"
    files = sorted(p.name for p in local.iterdir())
    assert files == sorted(p.name for p in source.iterdir())  # no marker, no .part left
    for p in source.iterdir():
        assert (local / p.name).read_bytes() == p.read_bytes()
    assert size == sum(p.stat().st_size for p in source.iterdir())


def test_pull_of_a_prefix_takes_the_newest_sound_checkpoint(s3, tmp_path):
    from trainctl_tui.backends.aws.s3_checkpoints import pull

    upload_run(s3)  # 400 is suspicious, 500 and 600 are still being written
    remote, local, _ = pull(URI, str(tmp_path))
    assert remote == URI + "checkpoint-300"
    assert (local / "trainer_state.json").exists()
    with pytest.raises(TrainctlError, match="still being uploaded"):
        pull(URI + "ckpt_500.safetensors", str(tmp_path))


# -- prune ----------------------------------------------------------------------------------


def upload_for_prune(client) -> None:
    source = FIXTURES / "hf_run" / "checkpoint-6"
    state = json.loads((source / "trainer_state.json").read_text())
    for step, loss in ((100, 0.5), (200, 0.2), (300, 0.9), (400, 0.7)):
        fresh = dict(state, global_step=step,
                     log_history=[{"loss": loss, "eval_loss": loss, "step": step}])
        put_dir(client, source, f"checkpoint-{step}",
                replace={"trainer_state.json": json.dumps(fresh).encode()})
    put_file(client, FIXTURES / "nanogpt_ckpt.pt", "checkpoint-500.pt", marker=False)


def test_prune_plan_keeps_last_best_and_writing_and_deletes_markers_first(s3):
    from trainctl_tui.backends.aws.s3_checkpoints import apply_prune
    from trainctl_tui.backends.aws.s3_checkpoints import plan_prune as plan_prune_s3

    upload_for_prune(s3)
    before = keys(s3)
    plan = plan_prune_s3(URI, keep_last=1, keep_best="eval_loss")
    decided = {d.entry.name: (d.keep, d.reason) for d in plan.decisions}
    assert decided["checkpoint-500.pt"] == (True, "being written")
    assert decided["checkpoint-400"][0] is True and "in last 1" in decided["checkpoint-400"][1]
    assert decided["checkpoint-200"] == (True, "best eval_loss=0.2")
    assert decided["checkpoint-100"][0] is False and decided["checkpoint-300"][0] is False
    summary = plan.summary()
    assert summary.splitlines()[0] == f"prune {URI}: keep last 1 + best eval_loss (min)"
    assert "DELETE" in summary and "checkpoint-100" in summary
    assert keys(s3) == before  # planning touches nothing

    with pytest.raises(TrainctlError) as caught:
        apply_prune(plan)
    assert str(caught.value) == (f"S3 has no trash: pruning {URI} deletes checkpoints for good; "
                                 "add --purge to delete them (or --dry-run to only see the "
                                 "plan)")
    assert keys(s3) == before

    counting = Counting(s3)
    result = apply_prune(plan, purge=True, client=counting)
    assert list(result) == [URI + "checkpoint-100", URI + "checkpoint-300"]
    after = keys(s3)
    assert not [k for k in after if "/checkpoint-100/" in k or "/checkpoint-300/" in k]
    assert any("/checkpoint-200/" in k for k in after)
    assert PREFIX + "checkpoint-500.pt" in after
    # each checkpoint's marker went in its own call, before any of its data
    assert counting.deletes[0] == [PREFIX + "checkpoint-100/" + MARKER]
    assert MARKER not in "".join(counting.deletes[1])
    assert counting.deletes[2] == [PREFIX + "checkpoint-300/" + MARKER]


def test_prune_skips_a_checkpoint_changed_since_the_plan(s3):
    from trainctl_tui.backends.aws.s3_checkpoints import apply_prune
    from trainctl_tui.backends.aws.s3_checkpoints import plan_prune as plan_prune_s3

    for step in (1, 2, 3):
        put_file(s3, FIXTURES / "nanogpt_ckpt.pt", f"ckpt_{step}.pt")
    plan = plan_prune_s3(URI, keep_last=1)
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "ckpt_1.pt", Body=b"rewritten")
    result = apply_prune(plan, purge=True)
    assert list(result) == [URI + "ckpt_2.pt"]
    assert result.skipped == [(URI + "ckpt_1.pt", "changed since the listing")]
    assert keys(s3) == sorted([PREFIX + "ckpt_1.pt", PREFIX + "ckpt_1.pt" + MARKER,
                               PREFIX + "ckpt_3.pt", PREFIX + "ckpt_3.pt" + MARKER])


# -- CLI ------------------------------------------------------------------------------------


def test_cli_lists_inspects_and_pulls_s3_checkpoints(s3, tmp_path):
    upload_run(s3)
    listed = run_cli("checkpoints", URI, "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["directory"] == URI
    assert [(c["name"], c["status"]) for c in data["checkpoints"]] == [
        ("ckpt_100.pt", "ok"), ("epoch=1-step=200.ckpt", "ok"), ("checkpoint-300", "ok"),
        ("ckpt_400.pt", "suspicious"), ("ckpt_500.safetensors", "writing"),
        ("ckpt_600.pt.tmp", "writing")]

    table = run_cli("checkpoints", URI)
    assert table.returncode == 0, table.stderr
    assert "checkpoint-300" in table.stdout and "writing" in table.stdout

    info = run_cli("checkpoint", "info", URI + "ckpt_100.pt", "--json")
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert described["format"] == "torch-zip" and described["step"] == 250
    assert described["path"] == URI + "ckpt_100.pt"

    evil = run_cli("checkpoint", "info", URI + "ckpt_400.pt", "--deep")
    assert evil.returncode == 1
    assert "suspicious" in evil.stdout and "posix.system" in evil.stdout
    assert "note: --deep reads every byte of the checkpoint from S3" in evil.stderr

    pulled = run_cli("pull", URI + "ckpt_100.pt", "--to", str(tmp_path / "dl"))
    assert pulled.returncode == 0, pulled.stderr
    got = tmp_path / "dl" / "ckpt_100.pt"
    assert got.read_bytes() == (FIXTURES / "nanogpt_ckpt.pt").read_bytes()
    assert pulled.stdout.strip() == (f"pulled {URI}ckpt_100.pt ({got.stat().st_size:,} bytes) "
                                     f"to {got}")


def test_cli_prune_needs_purge_and_dry_run_changes_nothing(s3):
    upload_for_prune(s3)
    before = keys(s3)
    dry = run_cli("checkpoints", "prune", URI, "--keep-last", "2", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing was changed" in dry.stdout and "DELETE" in dry.stdout
    assert keys(s3) == before

    refused = run_cli("checkpoints", "prune", URI, "--keep-last", "2")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith(
        f"S3 has no trash: pruning {URI} deletes checkpoints for good; add --purge")
    assert keys(s3) == before

    done = run_cli("checkpoints", "prune", URI, "--keep-last", "2", "--purge")
    assert done.returncode == 0, done.stderr
    assert f"deleted: {URI}checkpoint-100" in done.stdout
    assert f"deleted: {URI}checkpoint-200" in done.stdout
    left = {k[len(PREFIX):].split("/")[0] for k in keys(s3)}
    assert left == {"checkpoint-300", "checkpoint-400", "checkpoint-500.pt"}


def test_cli_errors_are_one_line(s3):
    bad = run_cli("checkpoints", "s3://Bad_Bucket/x/")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("'Bad_Bucket' is not a valid S3 bucket name in "
                                  "'s3://Bad_Bucket/x/' (3-63 lowercase letters, digits, dots "
                                  "and hyphens)")
    missing = run_cli("checkpoints", "s3://no-such-bucket/x/")
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("aws: listing s3://no-such-bucket/x/: NoSuchBucket: The "
                                      "specified bucket does not exist (no such S3 bucket)")
    gone = run_cli("checkpoint", "info", URI + "nothing.pt")
    assert gone.returncode == 2
    assert gone.stderr.strip() == f"no such S3 object or checkpoint folder: {URI}nothing.pt"
