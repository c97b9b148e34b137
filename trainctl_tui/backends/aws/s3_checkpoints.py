"""Checkpoints that live in S3 (`s3://bucket/prefix/<session>/checkpoints/`): listed, inspected
through ranged GETs (never downloaded just to be described), downloaded resumably, pruned.

On the instance the runner uploads each finished checkpoint (`aws s3 cp` for a file ->
`URI/NAME`, `aws s3 sync` for a directory -> `URI/NAME/...`) and then writes a marker object,
`URI/NAME.trainctl-complete` or `URI/NAME/.trainctl-complete`, last. A checkpoint without its
marker that was modified recently is still being uploaded (`writing`); an old one without a
marker was put there by something else and counts as finished.

Names, steps and temp-name rules are the local scanner's (checkpoints/scan.py); the inspector is
checkpoints/inspect/ reading a seekable file object over `Range` GETs with `IfMatch` on the
ETag, so an object replaced while it is read is an error, never a garbage report. Rows have the
same shape as local and SSH rows (CheckpointRow), so the renderers show them unchanged.

Import only when an S3 path is used: it imports boto3 (through aws_api).
"""

from __future__ import annotations

import collections
import errno
import io
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import botocore.exceptions

from ...checkpoints.catalog import CheckpointRow, newest_usable, validity_and_metrics
from ...checkpoints.inspect import CheckpointInfo, inspect_dir_files, inspect_fileobj
from ...checkpoints.retention import PrunePlan, PruneResult
from ...checkpoints.retention import plan_prune as plan_entries
from ...checkpoints.scan import (
    HF_STATE_FILE,
    CheckpointEntry,
    ScanResult,
    looks_like_checkpoint,
    order_key,
    temp_checkpoint,
)
from ...core.errors import TrainctlError
from ...runner.checkpoint_files import checkpoint_step
from . import api as aws_api

__all__ = [
    "MARKER",
    "DownloadStats",
    "RangeReader",
    "S3CheckpointEntry",
    "S3ObjectChanged",
    "S3Uri",
    "apply_prune",
    "download_entry",
    "inspect_entry",
    "inspect_uri",
    "is_s3_uri",
    "list_checkpoints",
    "parse_uri",
    "plan_prune",
    "pull",
]

MARKER = ".trainctl-complete"
# Without a marker, an object modified this recently may still be uploading (a big file of a
# directory upload can take minutes after the previous one finished).
RECENT_SECONDS = 15 * 60
BLOCK_SIZE = 128 * 1024  # ranged reads for inspection
DEEP_BLOCK_SIZE = 4 * 1024 * 1024  # --deep streams whole members: fewer, larger GETs
CACHE_BLOCKS = 32
PART_SIZE = 8 * 1024 * 1024  # download ranges
DOWNLOAD_THREADS = 4
JSON_LIMIT = 64 * 1024 * 1024  # trainer_state.json, config.json, *.index.json read whole
DELETE_BATCH = 1000  # delete_objects' limit
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# HF / plain weight files that make an unnamed folder a checkpoint directory
_DIR_FILES = re.compile(
    r"^(trainer_state\.json|(model|pytorch_model)([.-].*)?\.(safetensors|bin))$")


class S3UriError(TrainctlError):
    """A malformed s3:// URI."""


class S3ObjectChanged(TrainctlError):
    """The object was replaced while it was being read (its ETag changed)."""


# --------------------------------------------------------------------------- URIs


def is_s3_uri(text: str) -> bool:
    return isinstance(text, str) and text[:5].lower() == "s3://"


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str  # "" for the bucket itself

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def prefix(self) -> str:
        """The key as a folder prefix: "" or ending with "/"."""
        return self.key if not self.key or self.key.endswith("/") else self.key + "/"


def parse_uri(uri: str) -> S3Uri:
    """`s3://bucket[/key]` -> S3Uri; one clear line for anything else."""
    usage = "expected s3://BUCKET/PREFIX/"
    if not is_s3_uri(uri):
        raise S3UriError(f"not an S3 URI: '{uri}' ({usage})")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise S3UriError(f"no bucket in '{uri}' ({usage})")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise S3UriError(f"'{bucket}' is not a valid S3 bucket name in '{uri}' (3-63 "
                         "lowercase letters, digits, dots and hyphens)")
    if "//" in key or key.startswith("/"):
        raise S3UriError(f"empty folder name in '{uri}' (a '//' in the key)")
    return S3Uri(bucket, key)


def _client(client):
    return client if client is not None else aws_api.client("s3")


def _aws(doing: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise aws_api.describe_error(exc, doing) from None


# --------------------------------------------------------------------------- listing


@dataclass
class S3Object:
    key: str
    size: int
    etag: str
    mtime: float


@dataclass
class S3CheckpointEntry(CheckpointEntry):
    """A CheckpointEntry whose path is an s3:// URI, with the objects it is made of."""

    bucket: str = ""
    key: str = ""  # the object's key, or the folder's key without the trailing "/"
    objects: list[S3Object] = field(default_factory=list)  # data objects, markers excluded
    markers: list[S3Object] = field(default_factory=list)


def _list_objects(client, bucket: str, prefix: str, doing: str) -> list[S3Object]:
    out = []

    def run() -> None:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                out.append(S3Object(item["Key"], int(item["Size"]),
                                    str(item.get("ETag", "")).strip('"'),
                                    item["LastModified"].timestamp()))

    _aws(doing, run)
    return out


def _group(objects: list[S3Object], bucket: str, prefix: str, directory: str,
           now: float, recent_seconds: float) -> list[S3CheckpointEntry]:
    """Checkpoint entries from a prefix's objects: top-level files with checkpoint names, and
    top-level folders that are checkpoint directories."""
    files: dict[str, S3Object] = {}
    file_markers: dict[str, S3Object] = {}
    folders: dict[str, list[tuple[str, S3Object]]] = collections.defaultdict(list)
    for obj in objects:
        rel = obj.key[len(prefix):]
        if not rel or rel.endswith("/"):
            continue  # the prefix itself, or a console-made "folder" placeholder
        top, slash, rest = rel.partition("/")
        if not slash:
            if top.endswith(MARKER) and len(top) > len(MARKER):
                file_markers[top[: -len(MARKER)]] = obj
            else:
                files[top] = obj
        else:
            folders[top].append((rest, obj))
    entries = []
    for name, obj in sorted(files.items()):
        entry = _entry(name, "file", bucket, prefix, directory, [obj],
                       [file_markers[name]] if name in file_markers else [], now,
                       recent_seconds)
        if entry is not None:
            entries.append(entry)
    for name, members in sorted(folders.items()):
        data = [obj for rest, obj in members if rest != MARKER]
        markers = [obj for rest, obj in members if rest == MARKER]
        names = {rest for rest, _ in members}
        entry = _entry(name, "dir", bucket, prefix, directory, data, markers, now,
                       recent_seconds, names)
        if entry is not None:
            entries.append(entry)
    return entries


def _entry(name: str, kind: str, bucket: str, prefix: str, directory: str,
           data: list[S3Object], markers: list[S3Object], now: float, recent_seconds: float,
           names: set[str] | None = None) -> S3CheckpointEntry | None:
    is_dir = kind == "dir"
    notes: list[str] = []
    writing = False
    final_name = temp_checkpoint(name, is_dir)
    if final_name is not None:
        writing = True
        notes.append("temporary name")
        step = checkpoint_step(final_name) if final_name else None
    elif name.startswith("."):
        return None
    elif looks_like_checkpoint(name, is_dir) or (
            is_dir and (markers or any(_DIR_FILES.match(n) for n in names or ()))):
        step = checkpoint_step(name)
    else:
        return None
    size = sum(o.size for o in data)
    mtime = max((o.mtime for o in data), default=max((m.mtime for m in markers), default=0.0))
    if not writing:
        if markers:
            if mtime > max(m.mtime for m in markers):
                writing = True
                notes.append("modified after its completion marker (being re-uploaded)")
        elif not data:
            writing = True
            notes.append("empty")
        elif now - mtime < recent_seconds:
            writing = True
            notes.append("no completion marker yet (uploading)")
        elif is_dir and name.startswith("checkpoint-") and HF_STATE_FILE not in (names or ()):
            writing = True
            notes.append(f"no {HF_STATE_FILE} and no completion marker")
    key = prefix + name
    return S3CheckpointEntry(
        path=f"s3://{bucket}/{key}", name=name, kind=kind, step=step, mtime=mtime, size=size,
        writing=writing, note="; ".join(notes) or None, root=directory, bucket=bucket,
        key=key, objects=sorted(data, key=lambda o: o.key), markers=markers)


def scan(uri: str, *, client=None, recent_seconds: float = RECENT_SECONDS,
         now: float | None = None) -> ScanResult:
    """The checkpoints under an s3:// prefix, oldest -> newest (names and listing only)."""
    where = parse_uri(uri)
    directory = f"s3://{where.bucket}/{where.prefix}"
    objects = _list_objects(_client(client), where.bucket, where.prefix,
                            f"listing {directory}")
    entries = _group(objects, where.bucket, where.prefix, directory,
                     time.time() if now is None else now, recent_seconds)
    entries.sort(key=order_key)
    return ScanResult(directory, entries)


def list_checkpoints(uri: str, *, inspect: bool = True, client=None,
                     recent_seconds: float = RECENT_SECONDS
                     ) -> tuple[ScanResult, list[CheckpointRow]]:
    """Like catalog.list_checkpoints for an s3:// prefix: entries and rows, oldest first; each
    finished checkpoint is inspected through ranged reads unless inspect=False."""
    client = _client(client)
    entries = scan(uri, client=client, recent_seconds=recent_seconds)
    rows = []
    for entry in entries:
        info = None
        if inspect and not entry.writing:
            try:
                info = inspect_entry(entry, client=client)
            except (S3ObjectChanged, aws_api.AWSError) as exc:
                if aws_api.error_code(exc) not in (None, "NoSuchKey", "PreconditionFailed"):
                    raise
                entry.writing = True  # replaced or removed while we looked
                entry.note = f"changed while it was read ({exc})"
        rows.append(CheckpointRow(entry, info))
    return entries, rows


# --------------------------------------------------------------------------- ranged reads


class DownloadStats:
    """Bytes and requests fetched (thread-safe); tests and benchmarks read it."""

    def __init__(self) -> None:
        self.fetched = 0
        self.requests = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.fetched += n
            self.requests += 1


def _get_range(client, bucket: str, key: str, etag: str, start: int, end: int,
               stats: DownloadStats | None = None) -> bytes:
    """Bytes [start, end] (inclusive) of the object, only if it still has `etag`."""
    uri = f"s3://{bucket}/{key}"
    kwargs = {"Bucket": bucket, "Key": key, "Range": f"bytes={start}-{end}"}
    if etag:
        kwargs["IfMatch"] = f'"{etag}"'
    try:
        body = client.get_object(**kwargs)["Body"]
        try:
            data = body.read()
        finally:
            body.close()
    except botocore.exceptions.ClientError as exc:
        code = aws_api.error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("PreconditionFailed", "412") or status == 412:
            raise S3ObjectChanged(f"{uri} changed in S3 while it was being read (its ETag is "
                                  f"no longer {etag}); list the checkpoints again") from None
        raise aws_api.describe_error(exc, f"reading {uri}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise aws_api.describe_error(exc, f"reading {uri}") from None
    if stats is not None:
        stats.add(len(data))
    if len(data) != end - start + 1:
        raise aws_api.AWSError(f"aws: reading {uri}: got {len(data)} bytes of range "
                               f"{start}-{end} (the object is shorter than listed?)")
    return data


class RangeReader(io.RawIOBase):
    """A seekable, read-only file over an S3 object: ranged GETs of whole blocks with IfMatch
    on the ETag, a small LRU of blocks, adjacent missing blocks fetched in one request."""

    def __init__(self, client, bucket: str, key: str, size: int, etag: str, *,
                 block_size: int = BLOCK_SIZE, cache_blocks: int = CACHE_BLOCKS,
                 stats: DownloadStats | None = None):
        super().__init__()
        self.client, self.bucket, self.key = client, bucket, key
        self.size, self.etag = size, etag
        self.block_size, self.cache_blocks = block_size, max(2, cache_blocks)
        self.stats = stats if stats is not None else DownloadStats()
        self._pos = 0
        self._blocks: collections.OrderedDict[int, bytes] = collections.OrderedDict()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "Invalid argument")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.size - self._pos))
        if n == 0:
            return 0
        data = self._read(self._pos, n)
        view[:n] = data
        self._pos += n
        return n

    def _read(self, pos: int, n: int) -> bytes:
        first, last = pos // self.block_size, (pos + n - 1) // self.block_size
        wanted = range(first, last + 1)
        missing = [b for b in wanted if b not in self._blocks]
        fetched: dict[int, bytes] = {}
        run: list[int] = []
        for block in [*missing, None]:
            if run and (block is None or block != run[-1] + 1):
                start = run[0] * self.block_size
                end = min(self.size, (run[-1] + 1) * self.block_size) - 1
                data = _get_range(self.client, self.bucket, self.key, self.etag, start, end,
                                  self.stats)
                for i, b in enumerate(run):
                    fetched[b] = data[i * self.block_size:(i + 1) * self.block_size]
                run = []
            if block is not None:
                run.append(block)
        parts = []
        for b in wanted:
            data = fetched.get(b)
            if data is None:
                data = self._blocks[b]
                self._blocks.move_to_end(b)
            parts.append(data)
        for b, data in fetched.items():
            self._blocks[b] = data
        while len(self._blocks) > self.cache_blocks:
            self._blocks.popitem(last=False)
        joined = b"".join(parts)
        offset = pos - first * self.block_size
        return joined[offset:offset + n]


# --------------------------------------------------------------------------- inspection

_CACHE: collections.OrderedDict[tuple, CheckpointInfo] = collections.OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 512


def _inspect_object(client, bucket: str, obj: S3Object, path: str, deep: bool,
                    stats: DownloadStats | None) -> CheckpointInfo:
    key = (bucket, obj.key, obj.etag, obj.size, deep)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    raw = RangeReader(client, bucket, obj.key, obj.size, obj.etag, stats=stats,
                      block_size=DEEP_BLOCK_SIZE if deep else BLOCK_SIZE)
    with io.BufferedReader(raw, buffer_size=64 * 1024) as fp:
        info = inspect_fileobj(fp, path, obj.size, obj.mtime, deep=deep)
    with _CACHE_LOCK:
        _CACHE[key] = info
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return info


def cache_clear() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def _read_whole(client, bucket: str, obj: S3Object, stats: DownloadStats | None) -> bytes:
    if obj.size > JSON_LIMIT:
        raise OSError(errno.EFBIG, f"over {JSON_LIMIT // (1024 * 1024)} MB")
    if obj.size == 0:
        return b""
    return _get_range(client, bucket, obj.key, obj.etag, 0, obj.size - 1, stats)


def inspect_entry(entry: S3CheckpointEntry, *, deep: bool = False, client=None,
                  stats: DownloadStats | None = None) -> CheckpointInfo:
    """What an S3 checkpoint holds, from ranged reads (headers, zip directory, data.pkl).
    Raises S3ObjectChanged if an object is replaced while it is read."""
    client = _client(client)
    if entry.kind == "file":
        return _inspect_object(client, entry.bucket, entry.objects[0], entry.path, deep, stats)
    base = entry.key + "/"
    by_name = {obj.key[len(base):]: obj for obj in entry.objects}
    files = [(name, obj.size, obj.mtime) for name, obj in sorted(by_name.items())]
    return inspect_dir_files(
        entry.path, files,
        lambda name: _inspect_object(client, entry.bucket, by_name[name],
                                     f"{entry.path}/{name}", deep, stats),
        lambda name: _read_whole(client, entry.bucket, by_name[name], stats),
        mtime=entry.mtime)


def resolve(uri: str, *, client=None, recent_seconds: float = RECENT_SECONDS
            ) -> S3CheckpointEntry:
    """The checkpoint an s3:// URI names: an object, or a folder of a checkpoint directory."""
    client = _client(client)
    where = parse_uri(uri)
    key = where.key.rstrip("/")
    if not key:
        raise S3UriError(f"'{uri}' names a bucket, not a checkpoint (give s3://BUCKET/KEY)")
    parent = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    name = key[len(parent):]
    directory = f"s3://{where.bucket}/{parent}"
    # the object itself, its marker, and the folder of that name (one listing, exact keys)
    objects = [o for o in _list_objects(client, where.bucket, key, f"looking up {uri}")
               if o.key in (key, key + MARKER) or o.key.startswith(key + "/")]
    is_folder = where.key.endswith("/") or any(o.key.startswith(key + "/") for o in objects)
    if not objects:
        raise TrainctlError(f"no such S3 object or checkpoint folder: {uri}")
    now = time.time()
    if is_folder:
        data = [o for o in objects if o.key.startswith(key + "/")
                and o.key != f"{key}/{MARKER}" and not o.key.endswith("/")]
        markers = [o for o in objects if o.key == f"{key}/{MARKER}"]
        entry = _entry(name, "dir", where.bucket, parent, directory, data, markers, now,
                       recent_seconds, {o.key[len(key) + 1:] for o in objects})
        if entry is None:  # any folder can be inspected when asked for by name
            entry = _entry(name, "dir", where.bucket, parent, directory, data, markers, now,
                           recent_seconds, {HF_STATE_FILE})
    else:
        data = [o for o in objects if o.key == key]
        if not data:
            raise TrainctlError(f"no such S3 object or checkpoint folder: {uri}")
        markers = [o for o in objects if o.key == key + MARKER]
        entry = _entry(name, "file", where.bucket, parent, directory, data, markers, now,
                       recent_seconds)
        if entry is None:  # not a checkpoint name: still inspect what was asked for
            obj = data[0]
            entry = S3CheckpointEntry(
                path=f"s3://{where.bucket}/{key}", name=name, kind="file",
                step=checkpoint_step(name), mtime=obj.mtime, size=obj.size, writing=False,
                root=directory, bucket=where.bucket, key=key, objects=data, markers=markers)
    return entry


def inspect_uri(uri: str, *, deep: bool = False, client=None) -> CheckpointInfo:
    """`trainctl checkpoint info s3://...`: an object or a checkpoint folder."""
    client = _client(client)
    entry = resolve(uri, client=client)
    return inspect_entry(entry, deep=deep, client=client)


# --------------------------------------------------------------------------- download


def _part_paths(local: Path) -> tuple[Path, Path]:
    return local.with_name(local.name + ".part"), local.with_name(local.name + ".part.etag")


def _head(client, bucket: str, key: str) -> S3Object:
    head = _aws(f"looking up s3://{bucket}/{key}", client.head_object, Bucket=bucket, Key=key)
    return S3Object(key, int(head["ContentLength"]), str(head.get("ETag", "")).strip('"'),
                    head["LastModified"].timestamp())


class _Progress:
    """Overall progress of a download of several files, reported after each part."""

    def __init__(self, total: int, callback: Callable[[int, int], None] | None):
        self.done, self.total, self.callback = 0, total, callback

    def add(self, n: int) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)


def _download_object(client, bucket: str, obj: S3Object, local: Path, progress: _Progress,
                     note: Callable[[str], None], stats: DownloadStats, part_size: int,
                     threads: int) -> None:
    """One object into `local` through `local.part`: resumed from the part's size when the
    object still has the ETag the part was started from, started over (and said so) if not."""
    uri = f"s3://{bucket}/{obj.key}"
    part, etag_file = _part_paths(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    offset = 0
    if part.exists():
        saved = etag_file.read_text().strip() if etag_file.exists() else ""
        have = part.stat().st_size
        if saved == obj.etag and have <= obj.size:
            offset = have
        else:
            note(f"{uri} changed in S3 since the interrupted download: starting it over")
    for _attempt in range(3):
        etag_file.write_text(obj.etag + "\n")
        with open(part, "r+b" if offset and part.exists() else "wb") as fh:
            fh.truncate(offset)
            fh.seek(offset)
            progress.add(offset)
            try:
                _fetch_parts(client, bucket, obj, fh, offset, progress, stats, part_size,
                             threads)
                break
            except S3ObjectChanged:
                fresh = _head(client, bucket, obj.key)
                note(f"{uri} changed in S3 during the download (ETag {obj.etag} -> "
                     f"{fresh.etag}): starting it over")
                progress.add(-fh.tell())
                progress.total += fresh.size - obj.size
                obj.size, obj.etag, obj.mtime = fresh.size, fresh.etag, fresh.mtime
                offset = 0
    else:
        raise S3ObjectChanged(f"{uri} keeps changing in S3 while it is downloaded; try again "
                              "when the upload has finished")
    if part.stat().st_size != obj.size:
        raise aws_api.AWSError(f"aws: downloading {uri}: got {part.stat().st_size} of "
                               f"{obj.size} bytes; run the pull again to continue")
    os.replace(part, local)
    os.utime(local, (obj.mtime, obj.mtime))
    etag_file.unlink(missing_ok=True)


def _fetch_parts(client, bucket: str, obj: S3Object, fh, offset: int, progress: _Progress,
                 stats: DownloadStats, part_size: int, threads: int) -> None:
    """Ranged GETs of `part_size` from `offset`, a few in flight, written strictly in order so
    the .part file is always a prefix of the object (its size is where to resume)."""
    ranges = [(start, min(obj.size, start + part_size) - 1)
              for start in range(offset, obj.size, part_size)]
    if not ranges:
        return
    pool = ThreadPoolExecutor(max_workers=max(1, threads))
    pending: collections.deque[Future] = collections.deque()
    todo = iter(ranges)
    try:
        for start, end in todo:
            pending.append(pool.submit(_get_range, client, bucket, obj.key, obj.etag, start,
                                       end, stats))
            if len(pending) >= threads:
                break
        while pending:
            data = pending.popleft().result()
            fh.write(data)
            fh.flush()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(_get_range, client, bucket, obj.key, obj.etag,
                                           nxt[0], nxt[1], stats))
            progress.add(len(data))
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def download_entry(entry: S3CheckpointEntry, local: Path, *,
                   progress: Callable[[int, int], None] | None = None,
                   note: Callable[[str], None] | None = None, client=None,
                   stats: DownloadStats | None = None, part_size: int = PART_SIZE,
                   threads: int = DOWNLOAD_THREADS) -> int:
    """Download a checkpoint (a file, or each file of a folder) to `local`; an interrupted
    download continues where it stopped. Returns the checkpoint's size in bytes."""
    client = _client(client)
    stats = stats if stats is not None else DownloadStats()
    note = note or (lambda _text: None)
    local = Path(local)
    if entry.kind == "file":
        targets = [(entry.objects[0], local)]
    else:
        base = entry.key + "/"
        targets = [(obj, local / obj.key[len(base):]) for obj in entry.objects]
    tracker = _Progress(sum(obj.size for obj, _ in targets), progress)
    for obj, path in targets:
        obj = S3Object(obj.key, obj.size, obj.etag, obj.mtime)
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        if st is not None and st.st_size == obj.size and int(st.st_mtime) == int(obj.mtime):
            tracker.add(obj.size)  # finished by an earlier pull
            continue
        _download_object(client, entry.bucket, obj, path, tracker, note, stats, part_size,
                         threads)
    return tracker.total


def pull(uri: str, to: str | None = None, *, progress=None, note=None, client=None,
         stats: DownloadStats | None = None) -> tuple[str, Path, int]:
    """`trainctl pull s3://...`: a checkpoint object or folder, or the newest sound checkpoint
    under a prefix. Returns (uri, local path, bytes)."""
    client = _client(client)
    where = parse_uri(uri)
    entry = None
    if where.key and not where.key.endswith("/"):
        entry = resolve(uri, client=client)
        if (entry.kind == "dir" and not entry.markers
                and not looks_like_checkpoint(entry.name, True)
                and scan(uri + "/", client=client)):
            entry = None  # a folder of checkpoints, not a checkpoint folder
    if entry is None:
        entries, rows = list_checkpoints(uri, client=client)
        row = newest_usable(rows)
        if row is None:
            raise TrainctlError(f"no finished, sound checkpoint under {entries.directory} "
                                f"(see trainctl checkpoints {entries.directory})")
        entry = row.entry
    if entry.writing:
        raise TrainctlError(f"{entry.path} is still being uploaded ({entry.note}); "
                            "try again soon")
    local = Path(to or ".").expanduser().resolve() / entry.name
    size = download_entry(entry, local, progress=progress, note=note, client=client,
                          stats=stats)
    return entry.path, local, size


# --------------------------------------------------------------------------- prune


def plan_prune(uri: str, *, keep_last: int, keep_best: str | None = None,
              mode: str | None = None, protected: dict[str, str] | None = None,
              client=None) -> PrunePlan:
    """The checkpoints issue's retention rules applied to an S3 prefix; changes nothing."""
    entries, rows = list_checkpoints(uri, client=client)
    validity, metrics = validity_and_metrics(rows)
    try:
        plan = plan_entries(entries, keep_last=keep_last, keep_best=keep_best, mode=mode,
                            validity=validity, metrics=metrics, protected=protected,
                            directory=entries.directory)
    except ValueError as exc:
        raise TrainctlError(str(exc)) from None
    plan.directory = entries.directory  # shown and matched as the URI, not a local path
    return plan


def is_s3_plan(plan) -> bool:
    return is_s3_uri(getattr(plan, "directory", None) or "")


def _current(client, entry: S3CheckpointEntry) -> list[S3Object]:
    found = _list_objects(client, entry.bucket, entry.key, f"listing {entry.path}")
    if entry.kind == "file":
        return [o for o in found if o.key in (entry.key, entry.key + MARKER)]
    return [o for o in found if o.key.startswith(entry.key + "/")]


def _delete(client, bucket: str, keys: list[str], doing: str) -> list[str]:
    """Delete keys in batches of DELETE_BATCH; returns 'key: reason' for the ones S3 refused."""
    errors = []
    for i in range(0, len(keys), DELETE_BATCH):
        batch = keys[i:i + DELETE_BATCH]
        answer = _aws(doing, client.delete_objects, Bucket=bucket,
                      Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
        errors.extend(f"{e.get('Key')}: {e.get('Code')} {e.get('Message', '')}".strip()
                      for e in answer.get("Errors", []))
    return errors


def apply_prune(plan: PrunePlan, *, purge: bool = False, client=None) -> PruneResult:
    """Delete the plan's `delete` entries from S3 (there is no trash: purge=True is required).
    Each is listed again first and skipped if it changed since the plan; its completion
    marker goes first, so a half-deleted checkpoint is never taken for a complete one."""
    if not purge:
        raise TrainctlError(f"S3 has no trash: pruning {plan.directory} deletes checkpoints "
                            "for good; add --purge to delete them (or --dry-run to only see "
                            "the plan)")
    client = _client(client)
    result = PruneResult()
    for decision in plan.delete:
        entry = decision.entry
        if not isinstance(entry, S3CheckpointEntry) or not entry.path.startswith(
                plan.directory or "\0"):
            raise TrainctlError(f"refusing to touch {entry.path}: not under {plan.directory}")
        if entry.writing:
            result.skipped.append((entry.path, "being written"))
            continue
        planned = {(o.key, o.etag) for o in [*entry.objects, *entry.markers]}
        now = {(o.key, o.etag) for o in _current(client, entry)}
        if now != planned:
            reason = "no longer exists" if not now else "changed since the listing"
            result.skipped.append((entry.path, reason))
            continue
        doing = f"deleting {entry.path}"
        errors = _delete(client, entry.bucket, [m.key for m in entry.markers], doing)
        if not errors:
            errors = _delete(client, entry.bucket, [o.key for o in entry.objects], doing)
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            result.skipped.append((entry.path, f"S3 refused to delete {errors[0]}{more}"))
            continue
        result.append(entry.path)
    return result


# --------------------------------------------------------------------------- async façade


async def checkpoints_async(uri: str, *, inspect: bool = True):
    """(directory, None, entries, rows), the shape of Service.checkpoints."""
    import asyncio

    entries, rows = await asyncio.to_thread(list_checkpoints, uri, inspect=inspect)
    return entries.directory, None, entries, rows
