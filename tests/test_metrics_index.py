"""The metrics index: a reopened log parses only what was appended, and any doubt about the
index (log truncated, rotated or rewritten, another parser or pattern, a damaged file) means
a parse from the start — the result always equals `extract_file` on the whole log."""

from __future__ import annotations

import json
import os
import random
from itertools import pairwise
from pathlib import Path

import pytest
from test_metrics_golden import adversarial_log, mixed_logs

from trainctl_tui.monitor import index as index_module
from trainctl_tui.monitor.index import (
    INDEX_NAME,
    MAGIC,
    SEGMENT_MAGIC,
    cache_dir,
    index_path,
    load_metrics,
    prune_cache,
)
from trainctl_tui.monitor.metrics import extract_file

LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"


@pytest.fixture(autouse=True)
def index_small_logs(monkeypatch):
    """The tests' logs are small; trainctl indexes only logs of 4 MB and more."""
    monkeypatch.setattr(index_module, "MIN_LOG_BYTES", 1)


def as_json(metrics) -> str:
    return json.dumps(metrics.to_json(all_points=True), sort_keys=True)


def parsed_bytes(log: Path, index: Path, patterns=()) -> tuple[object, int]:
    """(metrics, bytes the call parsed)."""
    seen = [0]

    def progress(done, total):
        seen[0] = max(seen[0], done)

    return load_metrics(log, patterns, index=index, progress=progress), seen[0]


def sample_logs() -> dict[str, bytes]:
    logs = {p.stem: p.read_bytes() for p in sorted(LOGS.glob("*.log"))}
    logs["adversarial"] = adversarial_log(11, lines=3000)
    logs["mixed"] = mixed_logs()["mixed_seed7"]
    return logs


@pytest.mark.parametrize("name", sorted(sample_logs()))
def test_a_log_grown_in_pieces_gives_what_a_whole_parse_gives(name, tmp_path):
    data = sample_logs()[name]
    log, index = tmp_path / "train.log", tmp_path / "i.index"
    rng = random.Random(name)
    cuts = sorted(rng.sample(range(1, len(data)), 4)) + [len(data)]  # mid-line cuts too
    for cut in cuts:
        log.write_bytes(data[:cut])
        got, _ = parsed_bytes(log, index)
        assert as_json(got) == as_json(extract_file(log)), cut
    assert index.read_bytes().startswith(MAGIC)


def test_a_reopen_parses_only_the_bytes_appended_since(tmp_path):
    log, index = tmp_path / "train.log", tmp_path / "i.index"
    log.write_text("".join(f"step {i} loss {1 / i:.5f}\n" for i in range(1, 5001)))
    first, parsed = parsed_bytes(log, index)
    assert parsed == log.stat().st_size and len(first.series["loss"]) == 5000
    again, parsed = parsed_bytes(log, index)
    assert parsed == 0 and as_json(again) == as_json(first)
    added = "".join(f"step {i} loss {1 / i:.5f}\n" for i in range(5001, 5101))
    with open(log, "a") as out:
        out.write(added + "step 5101 loss 0.0")  # an unfinished last line: parsed, not kept
    grown, parsed = parsed_bytes(log, index)
    assert parsed == len(added) + len("step 5101 loss 0.0")
    assert grown.series["loss"].xs[-1] == 5101 and as_json(grown) == as_json(extract_file(log))


def change_truncate(log: Path) -> None:
    data = log.read_bytes()
    log.write_bytes(data[: len(data) // 2])


def change_rewrite_in_place(log: Path) -> None:
    data = bytearray(log.read_bytes())
    at = len(data) - 100  # just before the offset the index reached: same size, new bytes
    data[at:at + 5] = b"99999"
    log.write_bytes(bytes(data) + b"step 9999 loss 0.5\n")


def change_rotate(log: Path) -> None:
    data = log.read_bytes()
    log.rename(log.with_name("train.log.1"))
    log.write_bytes(data[:2000] + b"step 1 loss 7.0\n" * 3000)  # same head, other run


def change_truncate_and_regrow(log: Path) -> None:
    data = log.read_bytes()
    log.write_bytes(data[:3000] + b"step 77 loss 0.25\n" * (len(data) // 18))


@pytest.mark.parametrize("change", [change_truncate, change_rewrite_in_place, change_rotate,
                                    change_truncate_and_regrow])
def test_a_changed_log_is_parsed_again_from_its_start(change, tmp_path):
    log, index = tmp_path / "train.log", tmp_path / "i.index"
    log.write_text("".join(f"step {i} loss {1 / i:.5f}\n" for i in range(1, 3001)))
    load_metrics(log, index=index)
    change(log)
    got, parsed = parsed_bytes(log, index)
    assert parsed == log.stat().st_size  # from the start
    assert as_json(got) == as_json(extract_file(log))


def damage_flip_a_point(index: Path) -> None:
    data = bytearray(index.read_bytes())
    data[-3] ^= 0xFF
    index.write_bytes(bytes(data))


def damage_cut(index: Path) -> None:
    index.write_bytes(index.read_bytes()[:-40])


def damage_garbage(index: Path) -> None:
    index.write_bytes(os.urandom(500))


def damage_header(index: Path) -> None:
    data = index.read_bytes()
    index.write_bytes(data.replace(b'"offset": ', b'"offset": 1', 1))


def damage_empty(index: Path) -> None:
    index.write_bytes(b"")


@pytest.mark.parametrize("damage", [damage_flip_a_point, damage_cut, damage_garbage,
                                    damage_header, damage_empty])
def test_a_damaged_index_is_rebuilt_and_no_wrong_point_is_shown(damage, tmp_path):
    log, index = tmp_path / "train.log", tmp_path / "i.index"
    log.write_text("".join(f"step {i} loss {1 / i:.5f}\n" for i in range(1, 3001)))
    load_metrics(log, index=index)
    damage(index)
    got, parsed = parsed_bytes(log, index)
    assert parsed == log.stat().st_size and as_json(got) == as_json(extract_file(log))
    assert parsed_bytes(log, index)[1] == 0  # rebuilt: the next open uses it again


def test_other_patterns_or_another_parser_do_not_use_the_index(tmp_path, monkeypatch):
    log, index = tmp_path / "train.log", tmp_path / "i.index"
    log.write_text("".join(f"iter {i} score={i / 7:.3f}\n" for i in range(1, 2001)))
    plain = load_metrics(log, index=index)
    assert "score" not in plain.series
    patterns = (r"score=(?P<score>[\d.]+)",)
    custom, parsed = parsed_bytes(log, index, patterns)
    assert parsed == log.stat().st_size and len(custom.series["score"]) == 2000
    monkeypatch.setattr(index_module, "VERSION", index_module.VERSION + 1)  # a new parser
    again, parsed = parsed_bytes(log, index, patterns)
    assert parsed == log.stat().st_size and as_json(again) == as_json(custom)


def test_an_index_beside_a_session_else_in_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINCTL_HOME", str(tmp_path / "home"))
    session = tmp_path / "sessions" / "abc123"
    session.mkdir(parents=True)
    (session / "spec.json").write_text("{}")
    assert index_path(session / "train.log") == session / INDEX_NAME
    other = index_path(tmp_path / "elsewhere" / "train.log")
    assert other.parent == cache_dir() == tmp_path / "home" / "cache" / "metrics"
    assert other != index_path(tmp_path / "elsewhere2" / "train.log")


def test_the_index_is_bounded_and_the_cache_dir_too(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINCTL_HOME", str(tmp_path / "home"))
    log = tmp_path / "train.log"
    log.write_text("".join(f"step {i} loss {1 / i:.5f}\n" for i in range(1, 3001)))
    load_metrics(log)
    written = index_path(log)
    assert written.exists() and not list(written.parent.glob("*.tmp"))
    monkeypatch.setattr(index_module, "SEGMENT_BYTES", 1)
    monkeypatch.setattr(index_module, "MAX_INDEX_BYTES", 1000)  # 3000 points do not fit
    with open(log, "a") as out:
        out.write("step 3001 loss 0.1\n")
    assert len(load_metrics(log).series["loss"]) == 3001
    assert not written.exists()  # too big: no index, not even the stale one

    folder = tmp_path / "cache"
    folder.mkdir()
    for n in range(5):
        (folder / f"{n}.index").write_bytes(b"x" * 1000)
        os.utime(folder / f"{n}.index", (n, n))
    prune_cache(folder, limit=2500)
    assert sorted(p.name for p in folder.glob("*.index")) == ["3.index", "4.index"]


def test_a_small_append_is_parsed_without_rewriting_a_big_index(tmp_path, monkeypatch):
    monkeypatch.setattr(index_module, "SEGMENT_BYTES", 3000)
    log, index = tmp_path / "train.log", tmp_path / "i.index"
    log.write_text("".join(f"step {i} loss {1 / i:.5f}\n" for i in range(1, 2001)))
    load_metrics(log, index=index)
    written = index.read_bytes()
    appended = 0
    for step in range(2001, 2301):  # 300 lines of about 20 bytes, one open after each
        line = f"step {step} loss 0.25\n"
        with open(log, "a") as out:
            out.write(line)
        appended += len(line)
        got, parsed = parsed_bytes(log, index)
        assert got.series["loss"].xs[-1] == step
        if index.read_bytes() != written:  # a segment once 3000 bytes were past it
            assert appended >= 3000 and parsed == appended
            break
        assert parsed == appended < 3000
    else:
        raise AssertionError("never brought up to date")
    grown = index.read_bytes()
    # only what was appended is written: the index's points, then a segment of 150 or so
    assert grown.startswith(written) and len(grown) - len(written) < 150 * 16 + 1000
    assert grown[len(written):].startswith(SEGMENT_MAGIC)
    assert parsed_bytes(log, index)[1] == 0
    assert as_json(load_metrics(log, index=index)) == as_json(extract_file(log))


def follow_until_caught_up(monitor) -> list:
    import asyncio

    updates = []

    async def follow():
        async for update in monitor.updates(poll_interval=0.1):
            updates.append(update)
            if not update.catching_up:
                return

    asyncio.run(follow())
    return updates


def test_the_session_screen_starts_from_the_index_and_keeps_it_current(tmp_path, monkeypatch):
    from trainctl_tui.monitor import session_monitor
    from trainctl_tui.monitor.session_monitor import SessionMonitor

    monkeypatch.setenv("TRAINCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(session_monitor, "HISTORY_SLICE", 1 << 20)
    log = tmp_path / "train.log"
    log.write_text("".join(f"step {i} loss {1 / i:.6f} lr 3.0e-4\n" for i in range(1, 150_001)))
    monkeypatch.setattr(index_module, "MIN_LOG_BYTES", 4 << 20)
    assert log.stat().st_size > index_module.MIN_LOG_BYTES

    first = SessionMonitor(log)
    updates = follow_until_caught_up(first)
    first.close()
    assert [u.history for u in updates if u.catching_up][0][1] == log.stat().st_size
    assert index_path(log).exists()  # written once the history was parsed

    with open(log, "a") as out:
        out.write("step 150001 loss 0.000001 lr 3.0e-4\n")
    again = SessionMonitor(log)
    updates = follow_until_caught_up(again)
    again.close()
    assert updates[0].metrics_changed and not any(u.catching_up for u in updates)
    assert again.history.bytes_read < 1000  # only the line appended since
    assert as_json(again.metrics) == as_json(extract_file(log))

    log.rename(tmp_path / "train.log.1")  # rotated: a new run with the same head
    log.write_text("step 1 loss 0.500000 lr 3.0e-4\n" * 3 + "step 4 loss 9.0 lr 3.0e-4\n")
    fresh = SessionMonitor(log)
    follow_until_caught_up(fresh)
    fresh.close()
    assert as_json(fresh.metrics) == as_json(extract_file(log))
    assert fresh.metrics.series["loss"].ys.tolist() == [0.5, 9.0]


def test_a_log_replaced_between_the_index_check_and_the_follow_is_read_whole(tmp_path,
                                                                           monkeypatch):
    from trainctl_tui.monitor.session_monitor import SessionMonitor

    monkeypatch.setenv("TRAINCTL_HOME", str(tmp_path / "home"))
    log = tmp_path / "train.log"
    text = "".join(f"step {i} loss {1 / i:.6f}\n" for i in range(1, 2001))
    log.write_text(text)
    follow_until_caught_up(SessionMonitor(log))
    real_restore = index_module.restore

    def restore_then_replace(*args):
        found = real_restore(*args)
        log.rename(tmp_path / "old.log")  # a new file as long, with other losses
        log.write_text(text.replace("loss 0.", "loss 7.") + "step 2001 loss 5.0\n")
        return found

    monkeypatch.setattr(index_module, "restore", restore_then_replace)
    monitor = SessionMonitor(log)
    follow_until_caught_up(monitor)
    monitor.close()
    assert monitor.history.bytes_read >= log.stat().st_size  # read from its start
    assert as_json(monitor.metrics) == as_json(extract_file(log))
    assert min(monitor.metrics.series["loss"].ys) == 1.0  # step 1; no old point is shown


def test_a_big_logs_end_is_charted_first_only_where_its_x_needs_no_start(tmp_path,
                                                                        monkeypatch):
    from trainctl_tui.monitor import session_monitor
    from trainctl_tui.monitor.session_monitor import tail_preview

    monkeypatch.setattr(session_monitor, "PREVIEW_AFTER", 100_000)
    monkeypatch.setattr(session_monitor, "PREVIEW_BYTES", 10_000)
    stepped, counted = tmp_path / "stepped.log", tmp_path / "counted.log"
    stepped.write_text("".join(f"step {i} loss {1 / i:.6f}\n" for i in range(1, 20001)))
    counted.write_text("".join(f"loss={1 / i:.6f} acc={i % 7 / 7:.4f}\n"
                               for i in range(1, 20001)))
    preview = tail_preview(stepped, ())
    assert preview.series["loss"].xs[-1] == 20000 and len(preview.series["loss"]) < 1000
    assert tail_preview(counted, ()) is None  # x is the record's number: needs the start
    stepped.write_text("step 1 loss 0.5\n")
    assert tail_preview(stepped, ()) is None  # small: parsed whole at once


def header_of(index: Path) -> dict:
    data = index.read_bytes()
    length = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "little")
    return json.loads(data[len(MAGIC) + 8:len(MAGIC) + 8 + length])


def test_series_with_the_same_steps_store_them_once_and_reopen_bit_for_bit(tmp_path):
    log, index = tmp_path / "train.log", tmp_path / "i.index"
    lines = [f"iter {s}: loss {1 / (s + 1):.4f}, time {s % 7 - 3:.2f}ms, mfu -0.00%"
             for s in range(2000)]
    lines[500] = "iter 500: loss nan, time 1.00ms, mfu 1.00%"
    log.write_text("\n".join(lines) + "\n")
    whole = extract_file(log)
    load_metrics(log, index=index)
    assert [entry["xs_of"] for entry in header_of(index)["series"]] == [None, 0, 0]
    reopened = load_metrics(log, index=index)
    assert [(name, s.xs.tobytes(), s.ys.tobytes(), s.nonfinite, repr(s.first_nonfinite()))
            for name, s in reopened.series.items()] == [
        (name, s.xs.tobytes(), s.ys.tobytes(), s.nonfinite, repr(s.first_nonfinite()))
        for name, s in whole.series.items()]


def test_an_index_naming_shared_steps_it_does_not_hold_is_rebuilt(tmp_path):
    log, index = tmp_path / "train.log", tmp_path / "i.index"
    log.write_text("".join(f"step {s} loss={s / 10:.2f} acc={s / 20:.2f}\n" for s in range(300)))
    load_metrics(log, index=index)
    data = index.read_bytes()
    assert b'"xs_of": 0' in data
    index.write_bytes(data.replace(b'"xs_of": 0', b'"xs_of": 7'))  # same length, same crc
    seen = []
    got = load_metrics(log, index=index, progress=lambda done, total: seen.append(done))
    assert as_json(got) == as_json(extract_file(log))
    assert max(seen) == log.stat().st_size  # parsed again from the start


def segments_of(index: Path) -> int:
    return index.read_bytes().count(SEGMENT_MAGIC) if index.exists() else 0


@pytest.mark.parametrize("name", sorted(sample_logs()))
def test_an_index_appended_to_many_times_equals_a_cold_parse(name, tmp_path, monkeypatch):
    monkeypatch.setattr(index_module, "SEGMENT_BYTES", 1)
    monkeypatch.setattr(index_module, "MAX_SEGMENTS", 4)  # then written whole again
    data = sample_logs()[name]
    log, index = tmp_path / "train.log", tmp_path / "i.index"
    rng = random.Random(name)
    cuts = sorted(rng.sample(range(1, len(data)), 9)) + [len(data)]  # mid-line cuts too
    counts = []
    for cut in cuts:
        log.write_bytes(data[:cut])
        before = index.read_bytes() if index.exists() else b""
        got, _ = parsed_bytes(log, index)
        assert as_json(got) == as_json(extract_file(log)), cut
        counts.append(segments_of(index))
        if counts[-1]:  # a segment added: what the index held stays as it was
            assert index.read_bytes().startswith(before)
        again, parsed = parsed_bytes(log, index)  # up to date: only an unfinished line
        assert parsed == len(data[:cut]) - (data[:cut].rfind(b"\n") + 1)
        assert as_json(again) == as_json(got), cut
    # one segment more an open that parsed a line, written whole again after 4
    assert all(now in (before, before + 1) if before < 4 else now in (4, 0)
               for before, now in pairwise(counts))
    assert name not in ("mixed", "adversarial") or (4, 0) in pairwise(counts)


def grown_log_with_segments(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A log indexed, then grown twice: an index of two segments."""
    monkeypatch.setattr(index_module, "SEGMENT_BYTES", 1)
    log, index = tmp_path / "train.log", tmp_path / "i.index"
    lines = [f"step {i} loss {1 / i:.5f} acc {i % 9 / 9:.3f}\n" for i in range(1, 3001)]
    lines[1500] = "eval loss 0.25 acc 0.5\n"
    log.write_text("".join(lines[:1000]))
    for stop in (2000, 3000):
        load_metrics(log, index=index)
        with open(log, "a") as out:
            out.write("".join(lines[stop - 1000:stop]))
    load_metrics(log, index=index)
    assert segments_of(index) == 2
    return log, index


def segment_flip_a_point(index: Path) -> None:
    data = bytearray(index.read_bytes())
    data[-3] ^= 0xFF  # in the last segment's ys
    index.write_bytes(bytes(data))


def segment_cut_short(index: Path) -> None:  # a crash while it was appended
    index.write_bytes(index.read_bytes()[:-40])


def segment_garbage_after(index: Path) -> None:
    with open(index, "ab") as out:
        out.write(os.urandom(300))


def segment_of_another_writer(index: Path) -> None:
    """Two processes appended what each parsed past the same offset: the second segment
    does not start where the first ends."""
    data = index.read_bytes()
    last = data.rfind(SEGMENT_MAGIC)
    index.write_bytes(data + data[last:])


def segment_header_lies(index: Path) -> None:
    data = index.read_bytes()
    last = data.rfind(SEGMENT_MAGIC)
    index.write_bytes(data[:last] + data[last:].replace(b'"count": ', b'"count": 1', 1))


@pytest.mark.parametrize("damage", [segment_flip_a_point, segment_cut_short,
                                    segment_garbage_after, segment_of_another_writer,
                                    segment_header_lies])
def test_a_damaged_segment_means_a_rebuild_with_no_wrong_point(damage, tmp_path, monkeypatch):
    log, index = grown_log_with_segments(tmp_path, monkeypatch)
    damage(index)
    got, parsed = parsed_bytes(log, index)
    assert parsed == log.stat().st_size and as_json(got) == as_json(extract_file(log))
    assert segments_of(index) == 0 and parsed_bytes(log, index)[1] == 0  # rebuilt whole


def test_a_log_rewritten_before_a_segment_s_offset_is_parsed_again(tmp_path, monkeypatch):
    monkeypatch.setattr(index_module, "CHECK_BYTES", 1000)  # only the first segment's check
    log, index = grown_log_with_segments(tmp_path, monkeypatch)  # covers the bytes changed
    data = bytearray(log.read_bytes())
    first_end = data.index(b"step 2001 ")  # where the first segment ends
    assert data[first_end - 8:first_end - 5] != b"999"
    data[first_end - 8:first_end - 5] = b"999"  # acc of step 2000
    log.write_bytes(bytes(data))
    got, parsed = parsed_bytes(log, index)
    assert parsed == log.stat().st_size and as_json(got) == as_json(extract_file(log))


def test_an_index_replaced_by_another_writer_is_written_whole_not_appended_to(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(index_module, "SEGMENT_BYTES", 1)
    log, index = tmp_path / "train.log", tmp_path / "i.index"
    log.write_text("".join(f"step {i} loss {1 / i:.5f}\n" for i in range(1, 2001)))
    from trainctl_tui.monitor.index import fingerprint, read_index, update_index

    load_metrics(log, index=index)
    with open(log, "a") as out:
        out.write("step 2001 loss 0.125\n")
    with open(log, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        metrics, indexed = read_index(index, handle, size, fingerprint(()), ())
        assert indexed is not None and indexed.segments == 0
        from trainctl_tui.monitor.metrics import extract_range

        extract_range(metrics, handle, indexed.offset, size)
        load_metrics(log, index=index)  # another process brings it up to date meanwhile
        assert segments_of(index) == 1
        again = update_index(index, metrics, handle.fileno(), size, fingerprint(()), indexed)
    assert again is not None and again.segments == 0 and segments_of(index) == 0
    got, parsed = parsed_bytes(log, index)
    assert parsed == 0 and as_json(got) == as_json(extract_file(log))


def test_the_session_screen_appends_what_it_parsed_past_the_index(tmp_path, monkeypatch):
    from trainctl_tui.monitor.session_monitor import SessionMonitor

    monkeypatch.setenv("TRAINCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(index_module, "SEGMENT_BYTES", 1)
    log = tmp_path / "train.log"
    log.write_text("".join(f"step {i} loss {1 / i:.6f}\n" for i in range(1, 3001)))
    first = SessionMonitor(log)
    follow_until_caught_up(first)
    first.close()
    written = index_path(log).read_bytes()
    with open(log, "a") as out:
        out.write("".join(f"step {i} loss {1 / i:.6f}\n" for i in range(3001, 4001)))
    again = SessionMonitor(log)
    follow_until_caught_up(again)
    again.close()
    grown = index_path(log).read_bytes()
    assert grown.startswith(written) and grown.count(SEGMENT_MAGIC) == 1
    third = SessionMonitor(log)
    follow_until_caught_up(third)
    third.close()
    assert again.history.bytes_read > 20_000
    assert third.history.bytes_read < 1000  # the segment covers what was appended
    assert as_json(third.metrics) == as_json(extract_file(log))
