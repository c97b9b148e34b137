"""Safe checkpoint inspection (issue 4) against checkpoints written by the real libraries
(tests/fixtures/make_checkpoints.py wrote them and, in expected.json, what torch, safetensors,
transformers and lightning say is inside). No test here needs torch."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import random
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from runner_names import runner_zipapp

from trainctl_tui.checkpoints.inspect import cache_clear, cache_stats, inspect_checkpoint, main
from trainctl_tui.checkpoints.inspect.allow_list import Findings
from trainctl_tui.checkpoints.inspect.info import plain_json
from trainctl_tui.checkpoints.inspect.unpickler import SafeUnpickler

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "checkpoints"
EXPECTED = json.loads((FIX / "expected.json").read_text())
MARKER = "trainctl_pwned.marker"


@pytest.fixture(autouse=True)
def fresh_cache():
    cache_clear()
    yield
    cache_clear()


def assert_matches(info, expected: dict, fields: tuple[str, ...]) -> None:
    for name in fields:
        assert getattr(info, name) == expected[name], name


TORCH_FIELDS = ("format", "status", "step", "epoch", "loss", "tensor_count", "param_count",
                "dtypes", "top_keys", "has_optimizer", "unknown_globals", "dangerous_globals")


# -- checkpoints written by the libraries ----------------------------------------------------


def test_nanogpt_dict_checkpoint():
    exp = EXPECTED["nanogpt_ckpt.pt"]
    info = inspect_checkpoint(FIX / "nanogpt_ckpt.pt")
    assert_matches(info, exp, TORCH_FIELDS + ("best_metric", "model_args", "hparams"))
    assert info.reason is None and info.kind == "file"
    # best_val_loss is a 0-dim tensor: its 4 bytes were read from the archive and decoded
    assert info.metrics == {"best_val_loss": exp["best_metric"]}
    # tied wte/lm_head weights count once, as model.parameters() does
    assert info.param_count == exp["parameters_deduplicated"]
    sizes = [t.nbytes for t in info.tensors]
    assert sizes == sorted(sizes, reverse=True)
    wpe = next(t for t in info.tensors if t.name == "model.transformer.wpe.weight")
    assert (wpe.dtype, wpe.shape, wpe.numel, wpe.nbytes) == ("float32", (16, 16), 256, 1024)
    assert any(t.name.startswith("optimizer.state.") for t in info.tensors)


def test_legacy_torch_file():
    info = inspect_checkpoint(FIX / "legacy.pt")
    assert_matches(info, EXPECTED["legacy.pt"], TORCH_FIELDS)
    assert info.metrics["loss"] == EXPECTED["legacy.pt"]["loss"]


def test_custom_classes_namespace_allowed_user_class_makes_it_suspicious():
    exp = EXPECTED["custom_classes.pt"]
    info = inspect_checkpoint(FIX / "custom_classes.pt")
    assert_matches(info, exp, TORCH_FIELDS + ("hparams",))
    assert info.unknown_globals == ["__main__.TrainConfig"]  # shown, never imported
    assert info.status == "suspicious"  # off the allow-list: never ok
    assert info.reason == ("unknown global __main__.TrainConfig (not on the allow-list: "
                           "loading it may run code)")
    assert info.loss == 0.8125  # a numpy float64, decoded: the summary is still there


def test_dtypes_views_parameters_and_scalar_tensors():
    exp = EXPECTED["dtypes.pt"]
    info = inspect_checkpoint(FIX / "dtypes.pt")
    assert_matches(info, exp, TORCH_FIELDS)
    by_name = {t.name: t for t in info.tensors}
    assert {k: list(t.shape) for k, t in by_name.items()} == exp["shapes"]
    assert {k: t.nbytes for k, t in by_name.items()} == exp["nbytes"]
    assert by_name["fp8"].dtype == "float8_e4m3fn"  # written as UntypedStorage + dtype (v3)
    assert (info.step, info.loss) == (77, 0.5)  # int64 and float16 0-dim tensors, decoded


def test_lightning_checkpoint():
    exp = EXPECTED["lightning.ckpt"]
    info = inspect_checkpoint(FIX / "lightning.ckpt")
    assert_matches(info, exp, TORCH_FIELDS + ("best_metric", "hparams", "callbacks"))
    assert info.metrics["val_loss"] == exp["loss"]
    assert info.metadata["pytorch-lightning_version"] == EXPECTED["_versions"]["lightning"]
    assert all(t.name.startswith(("state_dict.", "optimizer_states.", "callbacks."))
               for t in info.tensors)


def test_hf_checkpoint_dir():
    exp = EXPECTED["hf_run"]
    info = inspect_checkpoint(FIX / exp["path"])
    assert (info.kind, info.format, info.status, info.reason) == ("dir", "hf-dir", "ok", None)
    assert_matches(info, exp, ("step", "epoch", "loss", "best_metric", "tensor_count",
                               "param_count", "dtypes", "has_optimizer"))
    assert info.param_count == exp["model_parameters"]
    assert info.metrics["eval_loss"] == exp["eval_loss"]
    assert sorted(f["name"] for f in info.files) == exp["files"]
    roles = {f["name"]: f["role"] for f in info.files}
    assert roles["model.safetensors"] == "weights" and roles["optimizer.pt"] == "optimizer"
    optimizer = next(f for f in info.files if f["name"] == "optimizer.pt")
    assert optimizer["param_count"] == 0 and optimizer["tensor_count"] > 0
    # TrainingArguments and its enums are on the allow-list as Hugging Face writes them
    # (rebuilt without a call): its plain fields are shown, nothing is built
    assert info.unknown_globals == [] and info.dangerous_globals == []
    assert info.hparams["learning_rate"] == exp["training_args_learning_rate"]
    assert info.model_args["n_embd"] == 16
    assert info.size == sum(f["size"] for f in info.files)


def test_hf_sharded_bin_dir():
    exp = EXPECTED["hf_sharded_bin"]
    info = inspect_checkpoint(FIX / "hf_sharded_bin")
    assert_matches(info, exp, ("format", "status", "tensor_count", "param_count", "dtypes",
                               "has_optimizer"))
    assert info.model_args["n_embd"] == exp["model_args_n_embd"]


def test_hf_dir_missing_shard_is_corrupt():
    info = inspect_checkpoint(FIX / "hf_missing_shard")
    assert info.status == "corrupt"
    assert info.reason == ("pytorch_model-00002-of-00002.bin missing "
                           "(listed in pytorch_model.bin.index.json)")


def test_safetensors_header():
    exp = EXPECTED["model.safetensors"]
    info = inspect_checkpoint(FIX / "model.safetensors")
    assert_matches(info, exp, ("format", "status", "tensor_count", "param_count", "dtypes",
                               "step", "epoch", "has_optimizer"))
    assert info.metadata == exp["metadata"]
    embed = next(t for t in info.tensors if t.name == "embed.weight")
    assert (embed.dtype, embed.shape, embed.nbytes) == ("bfloat16", (64, 32), 4096)


# -- corrupt files ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fmt", "reason"), [
    ("truncated_zip.pt", "torch-zip", "bad zip central directory (File is not a zip file)"),
    ("empty.pt", "unknown", "empty file (0 bytes)"),
    ("short_storage.pt", "torch-zip",
     "truncated storage archive/data/0 (declared 256 bytes, archive member has 100)"),
    ("truncated_header.safetensors", "safetensors",
     f"header length {EXPECTED['truncated_header.safetensors']['header_length']} past end of "
     "file (40 bytes)"),
    ("lfs_pointer.pt", "git-lfs-pointer",
     f"git-lfs pointer, not the data ({(FIX / 'nanogpt_ckpt.pt').stat().st_size} bytes not "
     "fetched; run `git lfs pull`)"),
])
def test_corrupt_files(name, fmt, reason):
    info = inspect_checkpoint(FIX / name)
    assert (info.format, info.status, info.reason) == (fmt, "corrupt", reason)


def test_lfs_pointer_size_is_the_real_files():
    info = inspect_checkpoint(FIX / "lfs_pointer.pt")
    assert info.metadata["size"] == str((FIX / "nanogpt_ckpt.pt").stat().st_size)
    assert info.metadata["oid"].startswith("sha256:")


def test_truncated_safetensors_names_the_first_tensor_past_the_end():
    raw = (FIX / "truncated.safetensors").read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    header.pop("__metadata__")
    data_size = EXPECTED["truncated.safetensors"]["data_size"]
    name, entry = min(((k, v) for k, v in header.items() if v["data_offsets"][1] > data_size),
                      key=lambda kv: kv[1]["data_offsets"])
    begin, end = entry["data_offsets"]
    info = inspect_checkpoint(FIX / "truncated.safetensors")
    assert info.status == "corrupt"
    assert info.reason == (f"tensor {name} bytes [{begin}, {end}) past end of data "
                           f"({data_size} bytes)")


def test_truncated_legacy_storage():
    info = inspect_checkpoint(FIX / "truncated_legacy.pt")
    assert (info.format, info.status) == ("torch-legacy", "corrupt")
    assert re.fullmatch(r"truncated storage \d+ \(ends \d+ bytes past the end of the file\)",
                        info.reason)
    assert (info.step, info.tensor_count) == (120, EXPECTED["legacy.pt"]["tensor_count"])


def test_tensor_reaching_past_its_storage(tmp_path):
    bench = load_bench()
    pid = bench._tuple([bench._text("storage"), pickle.GLOBAL + b"torch\nFloatStorage\n",
                        bench._text("0"), bench._text("cpu"), bench._int(4)]) + pickle.BINPERSID
    hooks = pickle.GLOBAL + b"collections\nOrderedDict\n" + pickle.EMPTY_TUPLE + pickle.REDUCE
    args = bench._tuple([pid, bench._int(0), bench._tuple([bench._int(8)]),
                         bench._tuple([bench._int(1)]), pickle.NEWFALSE, hooks])
    data = (pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + bench._text("w") + pickle.GLOBAL +
            b"torch._utils\n_rebuild_tensor_v2\n" + args + pickle.REDUCE + pickle.SETITEM +
            pickle.STOP)
    path = tmp_path / "bounds.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("bounds/data.pkl", data)
        zf.writestr("bounds/data/0", bytes(16))
    info = inspect_checkpoint(path)
    assert (info.status, info.tensor_count) == ("corrupt", 1)
    assert info.reason == "tensor w reaches past the end of its storage 0 (32 > 16 bytes)"


def test_flipped_storage_byte_only_caught_by_deep():
    shallow = inspect_checkpoint(FIX / "crc_flipped.pt")
    assert shallow.status == "ok" and shallow.step == EXPECTED["nanogpt_ckpt.pt"]["step"]
    deep = inspect_checkpoint(FIX / "crc_flipped.pt", deep=True)
    assert deep.status == "corrupt"
    assert deep.reason == f"CRC mismatch in {EXPECTED['crc_flipped.pt']['member']}"
    assert (deep.step, deep.tensor_count) == (shallow.step, shallow.tensor_count)  # still shown


@pytest.mark.parametrize("name", ["nanogpt_ckpt.pt", "legacy.pt", "lightning.ckpt",
                                  "model.safetensors", "hf_run/checkpoint-6", "hf_sharded_bin"])
def test_deep_check_passes_on_intact_checkpoints(name):
    info = inspect_checkpoint(FIX / name, deep=True)
    assert (info.status, info.reason) == ("ok", None)


def test_safetensors_deep_checks_sizes_and_coverage(tmp_path):
    raw = (FIX / "model.safetensors").read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    # claim a float32 tensor is bfloat16: the byte range stays in the file, the size is wrong
    header["proj.weight"]["dtype"] = "BF16"
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= length
    text = text.ljust(length)  # safetensors pads its header with spaces too
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(raw[:8] + text + raw[8 + length:])
    assert inspect_checkpoint(bad).status == "ok"
    deep = inspect_checkpoint(bad, deep=True)
    assert deep.status == "corrupt"
    assert deep.reason == "tensor proj.weight has 4096 bytes, bfloat16 x 1024 needs 2048"


def test_safetensors_overlapping_ranges(tmp_path):
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}
    text = json.dumps(header).encode()
    path = tmp_path / "overlap.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + bytes(24))
    info = inspect_checkpoint(path)
    assert (info.status, info.reason) == ("corrupt", "tensors a and b overlap")


# -- hostile pickles -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["evil_raw.pt", "evil_zip.pt", "evil_eval_p2.pt"])
def test_code_running_globals_are_suspicious_and_never_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the payload touches a relative marker
    exp = EXPECTED[name]
    info = inspect_checkpoint(FIX / name)
    info_deep = inspect_checkpoint(FIX / name, deep=True)
    main([str(FIX / name), "--json"])
    assert not (tmp_path / MARKER).exists()
    assert not (FIX / MARKER).exists()
    assert info.format == exp["format"]
    assert info.status == info_deep.status == "suspicious"
    assert info.dangerous_globals == exp["dangerous_globals"]
    assert info.reason == (f"dangerous global {exp['dangerous_globals'][0]} "
                           "(can run code when loaded)")
    for field in ("tensor_count", "param_count"):  # the rest of the file still parsed
        if field in exp:
            assert getattr(info, field) == exp[field]


def test_raw_payload_is_live(tmp_path):
    """The fixture is a real attack: plain pickle.load runs it (in a throwaway process)."""
    code = f"import pickle; pickle.load(open({str(FIX / 'evil_raw.pt')!r}, 'rb'))"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60)
    assert (tmp_path / MARKER).exists()


def test_suspicious_file_inside_hf_dir(tmp_path):
    folder = tmp_path / "checkpoint-6"
    shutil.copytree(FIX / "hf_run" / "checkpoint-6", folder)
    shutil.copy(FIX / "evil_zip.pt", folder / "training_args.bin")
    info = inspect_checkpoint(folder)
    assert info.status == "suspicious"
    system = f"{os.system.__module__}.system"
    assert info.reason == f"training_args.bin: dangerous global {system} (can run code when loaded)"
    assert info.dangerous_globals == [system]


class Getter:
    def __reduce__(self):
        return getattr, (str, "upper")

    def __call__(self, *args):  # pickle wants the first item of a reduce tuple callable
        return str.upper(*args)


class CallResult:
    def __reduce__(self):
        return Getter(), ("abc",)  # REDUCE on the result of a REDUCE


class UserThing:
    def __init__(self, a, b):
        self.a, self.b = a, b

    def __reduce__(self):
        return UserThing, (self.a, self.b), {"extra": [1, 2]}


class UserDict(dict):
    pass


class UserList(list):
    pass


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_unknown_globals_parse_through_every_opcode(tmp_path, protocol):
    d = UserDict(k=1)
    d.note = "state"
    payload = {"step": 3, "thing": UserThing(1, "x"), "d": d, "l": UserList([1, 2]),
               "call": CallResult()}
    path = tmp_path / "p.pt"
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    info = inspect_checkpoint(path)
    assert (info.format, info.status, info.step) == ("pickle", "suspicious", 3)
    assert info.dangerous_globals == [
        "__builtin__.getattr" if protocol < 3 else "builtins.getattr"]
    assert info.unknown_globals == sorted(f"{__name__}.{n}" for n in (
        "UserDict", "UserList", "UserThing"))
    assert info.top_keys == ["step", "thing", "d", "l", "call"]


def test_opaque_marker_records_args_shape():
    data = pickle.dumps({"x": UserThing(1, "a")}, protocol=2)
    findings = Findings()
    root = SafeUnpickler(io.BytesIO(data), findings).load()
    marker = root["x"]
    assert repr(marker) == f"<unsupported global {__name__}.UserThing>"
    assert marker.args_shape == "(int, str)" and marker.state == {"extra": [1, 2]}
    assert plain_json(root) == {"x": f"<unsupported global {__name__}.UserThing>"}


def nested_tuple_bomb(depth: int = 64) -> bytes:
    """A tuple holding the same tuple twice, `depth` levels down: 2**depth leaves in ~7*depth
    bytes, all memo references. Hashing it never ends."""
    ops = [pickle.EMPTY_TUPLE, pickle.LONG_BINPUT + (0).to_bytes(4, "little"), pickle.POP]
    for i in range(depth):
        get = pickle.LONG_BINGET + i.to_bytes(4, "little")
        ops += [get, get, pickle.TUPLE2, pickle.LONG_BINPUT + (i + 1).to_bytes(4, "little"),
                pickle.POP]
    return b"".join(ops) + pickle.LONG_BINGET + depth.to_bytes(4, "little")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("container", ["dict", "set", "OrderedDict"])
def test_hash_bomb_is_refused(tmp_path, container):
    bomb = nested_tuple_bomb()
    if container == "dict":
        body = pickle.EMPTY_DICT + bomb + pickle.BININT1 + b"\x01" + pickle.SETITEM
    elif container == "set":
        body = pickle.EMPTY_SET + pickle.MARK + bomb + pickle.ADDITEMS
    else:  # OrderedDict([(bomb, 1)])
        body = (pickle.GLOBAL + b"collections\nOrderedDict\n" + pickle.MARK + bomb +
                pickle.BININT1 + b"\x01" + pickle.TUPLE2 + pickle.LIST + pickle.TUPLE1 +
                pickle.REDUCE)
    path = tmp_path / "bomb.pt"
    path.write_bytes(pickle.PROTO + b"\x02" + body + pickle.STOP)
    info = inspect_checkpoint(path)
    assert (info.status, info.reason) == (
        "corrupt", "pickle error in pickle: a dict key or set item nests too much to hash")


def test_huge_memo_index_allocates_nothing(tmp_path):
    """C's unpickler sizes its memo array from the index: this would make it zero 32 GB."""
    import tracemalloc

    path = tmp_path / "memo.pt"
    path.write_bytes(pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.LONG_BINPUT +
                     (0x7FFFFFF0).to_bytes(4, "little") + pickle.STOP)
    tracemalloc.start()
    try:
        info = inspect_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (info.format, info.status) == ("pickle", "ok")
    assert peak < 16 * 2**20


def test_mangled_pickles_never_raise(tmp_path):
    """Bytes flipped or cut anywhere in data.pkl: a status comes back, never an exception."""
    src = FIX / "custom_classes.pt"
    with zipfile.ZipFile(src) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    pkl = next(n for n in members if n.endswith("data.pkl"))
    rng = random.Random(4)
    for n in range(150):
        data = bytearray(members[pkl])
        if n % 3 == 0:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(1 + n % 4):
                data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"m{n}.pt"
        with zipfile.ZipFile(path, "w") as out:
            for name, raw in members.items():
                out.writestr(name, bytes(data) if name == pkl else raw)
        assert inspect_checkpoint(path).status in ("ok", "corrupt", "suspicious")
    legacy = (FIX / "legacy.pt").read_bytes()
    for cut in range(1, len(legacy), 97):
        path = tmp_path / "cut.pt"
        path.write_bytes(legacy[:cut])
        assert inspect_checkpoint(path).status == "corrupt"


# -- cache -----------------------------------------------------------------------------------


def test_cache_hit_and_invalidation_on_mtime(tmp_path):
    path = tmp_path / "ckpt.pt"
    shutil.copy(FIX / "legacy.pt", path)
    first = inspect_checkpoint(path)
    assert inspect_checkpoint(str(path)) is first
    assert cache_stats()["hits"] == 1 and cache_stats()["misses"] == 1
    assert inspect_checkpoint(path, deep=True) is not first  # deep is its own entry
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    again = inspect_checkpoint(path)
    assert again is not first and again.step == first.step
    shutil.copy(FIX / "empty.pt", path)
    assert inspect_checkpoint(path).status == "corrupt"


def test_dir_cache_sees_a_rewritten_file(tmp_path):
    folder = tmp_path / "checkpoint-6"
    shutil.copytree(FIX / "hf_run" / "checkpoint-6", folder)
    first = inspect_checkpoint(folder)
    assert inspect_checkpoint(folder) is first
    state = json.loads((folder / "trainer_state.json").read_text())
    state["global_step"] = 7
    (folder / "trainer_state.json").write_text(json.dumps(state))
    assert inspect_checkpoint(folder).step == 7


def test_missing_path_raises():
    with pytest.raises(FileNotFoundError):
        inspect_checkpoint(FIX / "no-such-checkpoint.pt")


# -- a 4 GB checkpoint: only the zip directory and the pickle are read -----------------------


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_checkpoints",
                                                  ROOT / "bench" / "checkpoints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bytes_read() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/self/io")
def test_four_gib_sparse_checkpoint_reads_only_metadata(tmp_path):
    bench = load_bench()
    path = tmp_path / "big.pt"
    bench.big_checkpoint(path, gib=4.0)
    st = path.stat()
    if st.st_blocks * 512 > 256 * 2**20:
        pytest.skip("this filesystem does not keep sparse files sparse")
    assert st.st_size > 4 * 10**9
    with zipfile.ZipFile(path) as zf:
        pkl_size = zf.getinfo("big/data.pkl").file_size
    before = bytes_read()
    info = inspect_checkpoint(path)
    read = bytes_read() - before
    assert (info.status, info.format, info.step, info.epoch) == ("ok", "torch-zip", 100_000, 3)
    assert info.param_count * 4 > 4 * 10**9 and info.tensor_count == 193
    assert read < pkl_size + 256 * 1024, f"read {read} bytes of a {st.st_size} byte file"


def test_bench_writer_crc_of_zeros_matches_zlib():
    import zlib

    bench = load_bench()
    for n in (0, 1, 7, 4096, 123_457):
        assert bench.crc32_zeros(n) == zlib.crc32(bytes(n))


# -- command line and import hygiene ---------------------------------------------------------


def test_main_prints_json(capsys):
    assert main([str(FIX / "nanogpt_ckpt.pt"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    exp = EXPECTED["nanogpt_ckpt.pt"]
    assert (data["step"], data["loss"], data["param_count"]) == (
        exp["step"], exp["loss"], exp["param_count"])
    assert data["tensors"][0]["shape"] == list(data["tensors"][0]["shape"])
    assert json.loads(json.dumps(data)) == data


def test_main_text_and_missing_path(capsys):
    assert main([str(FIX / "evil_zip.pt")]) == 0
    out = capsys.readouterr().out
    assert "status: suspicious" in out and "dangerous globals:" in out
    assert main([str(FIX / "nope.pt")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_standalone_copy_runs_on_a_remote_host(tmp_path):
    """Run from the runner's zipapp, as on a remote host (no trainctl_tui installed)."""
    shutil.copy(runner_zipapp(), tmp_path / "runner.pyz")
    result = subprocess.run(
        [sys.executable, "-m", "trainctl_tui.checkpoints.inspect", str(FIX / "lightning.ckpt"),
         "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
             "PYTHONPATH": str(tmp_path / "runner.pyz")})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["format"], data["step"]) == ("lightning", EXPECTED["lightning.ckpt"]["step"])


def test_importing_inspect_imports_no_heavy_or_project_modules():
    # From the runner's zipapp: its trainctl_tui holds the inspector and nothing else of ours.
    code = f"""
import sys
sys.path.insert(0, {str(runner_zipapp())!r})
from trainctl_tui.checkpoints import inspect as module
for path in ("nanogpt_ckpt.pt", "custom_classes.pt", "hf_run", "model.safetensors"):
    module.inspect_checkpoint({str(FIX)!r} + "/" + path)
module.inspect_checkpoint({str(FIX / "hf_run" / "checkpoint-6")!r})
ours = ("trainctl_tui", "trainctl_tui.checkpoints", "trainctl_tui.checkpoints.inspect")
bad = [m for m in ("torch", "numpy", "safetensors", "transformers", "lightning",
                   "textual", "rich") if m in sys.modules]
bad += [m for m in sys.modules if m.startswith("trainctl_tui") and m not in ours
        and not m.startswith("trainctl_tui.checkpoints.inspect.")]
print(bad)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
