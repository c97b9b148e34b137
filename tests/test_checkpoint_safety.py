"""Issue 12, code execution through resume: the allow-list of pickle globals and the bounds on
what the inspector inflates. Hostile files are written here byte by byte: nothing is ever
unpickled for real, and no test needs torch."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import sshd
import test_runner
import test_s3_checkpoints
import test_ssh_provider
from conftest import ROOT, run_cli
from moto_aws import aws, moto_server  # noqa: F401  (fixtures)
from test_cli import launch, session_json, wait_for
from test_runner import py, run_foreground, safetensors_file, sv

from trainctl_tui.checkpoints.inspect import METADATA_LIMIT, cache_clear, inspect_checkpoint
from trainctl_tui.runner.bundle import RUNNER_NAME, bundle_files, write_bundle

GiB = 1 << 30
session = test_runner.session  # the runner tests' session-folder fixture
s3 = test_s3_checkpoints.s3  # a bucket in moto's server
sshd_server, ssh_env = sshd.sshd_server, test_ssh_provider.ssh_env  # a real sshd, a host "box"


@pytest.fixture(autouse=True)
def fresh_cache():
    cache_clear()
    yield
    cache_clear()


def call_global(module: str, name: str, arg: str = "id") -> bytes:
    """Protocol 2: module.name(arg), the shape of every `__reduce__` payload."""
    text = arg.encode()
    return (b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X" + struct.pack("<I", len(text))
            + text + b"\x85R.")


def torch_zip(path: Path, pickle_bytes: bytes, compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("archive/data.pkl", pickle_bytes)
        zf.writestr("archive/version", "3\n")
    return path


@pytest.mark.parametrize("module, name", [
    ("platform", "popen"), ("pydoc", "pipepager"), ("pydoc", "tempfilepager"),
    ("builtins", "print"), ("uuid", "_popen"), ("__main__", "TrainConfig"),
])
@pytest.mark.parametrize("container", ["zip", "plain"])
def test_globals_off_the_allow_list_are_suspicious_and_named(tmp_path, module, name,
                                                             container):
    payload = call_global(module, name)
    path = tmp_path / "step_400.pt"
    if container == "zip":
        torch_zip(path, payload)
    else:
        path.write_bytes(payload)
    info = inspect_checkpoint(path)
    assert info.status == "suspicious"
    assert info.reason == (f"unknown global {module}.{name} (not on the allow-list: loading it "
                           "may run code)")
    assert info.unknown_globals == [f"{module}.{name}"]


def test_a_hugging_face_class_called_instead_of_rebuilt_is_suspicious(tmp_path):
    """TrainingArguments is known as pickle writes it (NEWOBJ + BUILD); a REDUCE runs its
    __init__, which Hugging Face never writes."""
    cls = b"ctransformers.training_args\nTrainingArguments\n"
    rebuilt = (b"\x80\x02ccopyreg\n__newobj__\n" + cls + b"\x85R}X\x02\x00\x00\x00lrG?\xb9"
               b"\x99\x99\x99\x99\x99\x9as" + b"b.")
    ok = inspect_checkpoint(torch_zip(tmp_path / "args_ok.bin", rebuilt))
    assert (ok.status, ok.unknown_globals, ok.hparams) == ("ok", [], {"lr": 0.1})
    called = inspect_checkpoint(torch_zip(tmp_path / "args_called.bin",
                                          call_global("transformers.training_args",
                                                      "TrainingArguments", "/tmp/x")))
    assert called.status == "suspicious"
    assert called.unknown_globals == ["transformers.training_args.TrainingArguments (called)"]


def test_known_dangerous_global_keeps_its_sharper_reason(tmp_path):
    info = inspect_checkpoint(torch_zip(tmp_path / "x.pt", call_global("os", "system")))
    assert (info.status, info.reason) == (
        "suspicious", "dangerous global os.system (can run code when loaded)")


# -- zip bombs and huge declared lengths ------------------------------------------------------


def write_zip_bomb(path: Path, member: str, inflated: int, head: bytes = b"",
                   others: dict[str, bytes] | None = None) -> Path:
    """A zip whose `member` is `head` and zeros up to `inflated` bytes, deflated ~1000:1."""
    chunk = b"\0" * (16 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in (others or {}).items():
            zf.writestr(name, data)
        with zf.open(member, "w") as out:
            out.write(head)
            left = inflated - len(head)
            while left > 0:
                out.write(chunk[:left])
                left -= len(chunk)
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bombs")
    # data.pkl: a pickle declaring a 1 GiB bytes object, its bytes all there (1 GiB inflated)
    head = b"\x80\x04\x8e" + struct.pack("<Q", GiB - 12)
    pt = write_zip_bomb(folder / "step_100.pt", "archive/data.pkl", GiB, head,
                        {"archive/version": b"3\n"})
    keras = write_zip_bomb(folder / "model.keras", "config.json", 512 << 20, b'{"a": "',
                           {"metadata.json": b"{}"})
    for n in (200, 300):  # more of the same: a directory of bombs
        (folder / f"step_{n}.pt").hardlink_to(pt)
    return folder, pt, keras


def test_a_zip_bomb_pickle_is_too_large_to_inspect(bombs):
    _, pt, _ = bombs
    assert pt.stat().st_size < 2 << 20
    info = inspect_checkpoint(pt)
    assert info.status == "unknown"
    assert info.reason == (f"archive/data.pkl ({GiB:,} bytes inflated) too large to inspect "
                           "(over 16 MiB; metadata is never that big)")


def test_a_keras_file_with_a_huge_config_is_too_large_to_inspect(bombs):
    _, _, keras = bombs
    info = inspect_checkpoint(keras)
    assert info.status == "unknown"
    assert info.reason.startswith(f"config.json ({512 << 20:,} bytes inflated) too large")


def test_a_small_member_that_inflates_past_what_it_declares_is_corrupt(tmp_path):
    """The central directory says 1 KB, the deflate stream holds 64 MiB: zipfile stops at the
    declared size, so nothing past it is inflated, and the CRC gives it away."""
    path = torch_zip(tmp_path / "liar.pt", b"\x80\x04\x8e" + struct.pack("<Q", 64 << 20)
                     + b"\0" * (64 << 20) + b".", zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    raw = bytearray(path.read_bytes())
    entry = raw.index(b"PK\x01\x02")  # data.pkl's central directory entry
    raw[entry + 24:entry + 28] = struct.pack("<I", 1024)  # its uncompressed size
    path.write_bytes(bytes(raw))
    info = inspect_checkpoint(path)
    assert info.status == "corrupt", info.reason


@pytest.mark.parametrize("opcode", [b"\x8e", b"\x96", b"\x8d"],
                         ids=["BINBYTES8", "BYTEARRAY8", "BINUNICODE8"])
def test_a_pickle_declaring_a_huge_object_is_refused_before_it_is_allocated(tmp_path, opcode):
    path = tmp_path / "x.pt"
    path.write_bytes(b"\x80\x05" + opcode + struct.pack("<Q", 1 << 40) + b"...")
    info = inspect_checkpoint(path)
    assert info.status == "corrupt"
    assert info.reason == ("pickle error in pickle: it needs 1,099,511,627,776 more bytes, "
                           "3 are left")


def test_a_big_inline_pickle_is_too_large_not_read(tmp_path):
    path = tmp_path / "big.pkl.pt"
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", METADATA_LIMIT + 1)
                     + b"\0" * (METADATA_LIMIT + 1) + b".")
    info = inspect_checkpoint(path)
    assert (info.status, info.reason) == (
        "unknown", "pickle too large to inspect (over 16 MiB; metadata is never that big)")


def peak_rss_mb(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    """`trainctl ARGS` as the only child of a small Python that reports its peak RSS."""
    code = ("import json, resource, subprocess, sys\n"
            "r = subprocess.run([sys.executable, '-m', 'trainctl_tui', *sys.argv[1:]],"
            " capture_output=True, text=True)\n"
            "kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
            "print(json.dumps([r.returncode, kb, r.stdout, r.stderr]))\n")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    rc, kb, out, err = json.loads(result.stdout)
    return kb / 1024, subprocess.CompletedProcess(args, rc, out, err)


def test_checkpoints_of_a_directory_of_bombs_stays_under_100_mb(bombs, trainctl_home):
    folder, _, _ = bombs
    peak, result = peak_rss_mb("checkpoints", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)["checkpoints"]
    assert {c["name"]: c["status"] for c in listed} == {
        "step_100.pt": "unknown", "step_200.pt": "unknown", "step_300.pt": "unknown",
        "model.keras": "unknown"}
    print(f"peak RSS of `trainctl checkpoints DIR` on 4 bombs: {peak:.1f} MB")
    assert peak < 100


# -- the runner: one rule for every restart and start -----------------------------------------

# A trainer that, like torch.load(weights_only=False), unpickles what it resumes from: a
# dangerous checkpoint handed to it runs its payload.
TRAINER = (
    "import pickle, sys\n"
    "args = sys.argv[1:]\n"
    "if '--resume' not in args: sys.exit(1)\n"
    "path = args[args.index('--resume') + 1]\n"
    "if path.endswith('.pt'):\n"
    "    pickle.load(open(path, 'rb'))\n"
    "print('resumed from', path)\n"
)


def hostile_folder(folder: Path, marker: Path) -> dict[str, Path]:
    """Newest first: what the runner must pass over, then the one it must take."""
    made = {
        "evil": folder / "step_400.pt",
        "empty": folder / "step_350.pt",
        "one_byte": folder / "step_300.pt",
        "popen": folder / "step_250.pt",
        "unfinished": folder / "step_225.keras",
        "sound": folder / "step_100.safetensors",
    }
    folder.mkdir(parents=True, exist_ok=True)
    made["evil"].write_bytes(call_global("os", "system", f"touch {marker}"))
    made["empty"].write_bytes(b"")
    made["one_byte"].write_bytes(b"\x80")
    made["popen"].write_bytes(call_global("platform", "popen", f"touch {marker}"))
    made["unfinished"].write_bytes(b"PK\x03\x04" + b"\0" * 100)  # no end record yet
    safetensors_file(made["sound"])
    for path in made.values():
        os.utime(path, (1e9, 1e9))
    return made


def skipped_reasons(made: dict[str, Path]) -> list[dict]:
    return [
        {"path": str(made["evil"]),
         "reason": "suspicious: dangerous global os.system (can run code when loaded)"},
        {"path": str(made["empty"]), "reason": "corrupt: empty file (0 bytes)"},
        {"path": str(made["one_byte"]),
         "reason": "corrupt: pickle error in pickle: it needs 1 more bytes, 0 are left"},
        {"path": str(made["popen"]),
         "reason": "suspicious: unknown global platform.popen (not on the allow-list: loading "
                   "it may run code)"},
        {"path": str(made["unfinished"]), "reason": "still being written (zip not finished: "
                                                    "no end-of-central-directory record)"},
    ]


def test_a_restart_resumes_from_the_newest_sound_checkpoint_only(session, tmp_path):
    marker = tmp_path / "pwned"
    made = hostile_folder(tmp_path / "ckpt", marker)
    folder = session(py(TRAINER), checkpoint_dir="ckpt", max_restarts=1,
                     resume_template="--resume {checkpoint}")
    run_foreground(folder)
    status = sv.read_status(str(folder))
    assert status["state"] == "succeeded", status
    first, second = status["attempts"]
    assert first["resumed_from"] is None and "skipped_checkpoints" not in first
    assert second["resumed_from"] == str(made["sound"])
    assert second["skipped_checkpoints"] == skipped_reasons(made)
    assert not marker.exists()
    log = (folder / "train.log").read_text()
    assert (f"[trainctl] skipped checkpoint {made['evil']}: suspicious: dangerous global "
            "os.system (can run code when loaded)") in log
    assert f"resumed from {made['sound']}" in log


def test_a_start_from_newest_uses_the_same_rule(session, tmp_path):
    marker = tmp_path / "pwned"
    made = hostile_folder(tmp_path / "ckpt", marker)
    folder = session(py(TRAINER), checkpoint_dir="ckpt", resume_from="newest",
                     resume_template="--resume {checkpoint}")
    run_foreground(folder)
    [attempt] = sv.read_status(str(folder))["attempts"]
    assert attempt["resumed_from"] == str(made["sound"]) and attempt["exit_code"] == 0
    assert attempt["skipped_checkpoints"] == skipped_reasons(made)
    assert not marker.exists()


def test_a_named_checkpoint_that_is_not_sound_never_reaches_the_trainer(session, tmp_path):
    marker = tmp_path / "pwned"
    made = hostile_folder(tmp_path / "ckpt", marker)
    folder = session(py(TRAINER), checkpoint_dir="ckpt", resume_from=str(made["popen"]),
                     resume_template="--resume {checkpoint}", max_restarts=2)
    run_foreground(folder)
    status = sv.read_status(str(folder))
    reason = (f"not resuming from {made['popen']}: suspicious: unknown global platform.popen "
              "(not on the allow-list: loading it may run code)")
    assert (status["state"], status["reason"]) == ("failed", reason)
    [attempt] = status["attempts"]
    assert attempt["command"] is None and attempt["reason"] == reason
    assert not marker.exists()


def test_trusted_globals_admit_only_what_was_trusted(session, tmp_path):
    """`resume --trust` records the unknown globals it accepted; a later checkpoint with
    another unknown global is still passed over."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    trusted = ckpt / "step_10.pt"
    trusted.write_bytes(call_global("fractions", "Fraction", "1/3"))
    newer = ckpt / "step_20.pt"
    newer.write_bytes(call_global("platform", "popen", "true"))
    for path in (trusted, newer):
        os.utime(path, (1e9, 1e9))
    folder = session(py(TRAINER), checkpoint_dir="ckpt", resume_from="newest",
                     resume_template="--resume {checkpoint}",
                     trusted_globals=["fractions.Fraction"])
    run_foreground(folder)
    [attempt] = sv.read_status(str(folder))["attempts"]
    assert attempt["resumed_from"] == str(trusted) and attempt["exit_code"] == 0
    assert [s["path"] for s in attempt["skipped_checkpoints"]] == [str(newer)]


def test_a_runner_without_its_inspector_trusts_no_checkpoint(session, tmp_path):
    alone = tmp_path / "runner" / "trainctl-runner.pyz"  # a zipapp without the inspector
    alone.parent.mkdir()
    write_bundle(str(alone), {name: data for name, data in bundle_files().items()
                              if "/checkpoints/inspect/" not in name})
    made = hostile_folder(tmp_path / "ckpt", tmp_path / "pwned")
    folder = session(py(TRAINER), checkpoint_dir="ckpt", resume_from="newest",
                     resume_template="--resume {checkpoint}")
    subprocess.run([sys.executable, str(alone), str(folder)], capture_output=True, timeout=60)
    [attempt] = sv.read_status(str(folder))["attempts"]
    assert attempt["resumed_from"] is None
    sound = attempt["skipped_checkpoints"][-1]
    assert sound == {"path": str(made["sound"]), "reason": "unknown: the checkpoint inspector "
                     "(ckpt_inspect.py) is not beside the runner"}


# -- trainctl resume: the same rule, and --trust -----------------------------------------------


def test_resume_skips_unknown_globals_and_trusts_them_only_when_told(trainctl_home, tmp_path):
    folder = tmp_path / "ckpt"
    session_id = launch("--checkpoint-dir", str(folder), "--resume-template",
                        "--resume {checkpoint}", "--", sys.executable, "-c", "pass")
    wait_for(lambda: session_json(session_id)["status"] == "succeeded")
    sound = safetensors_file(folder / "step_5.safetensors")
    custom = folder / "step_10.pt"
    custom.write_bytes(call_global("fractions", "Fraction", "1/3"))
    evil = folder / "step_20.pt"
    evil.write_bytes(call_global("os", "system", "true"))
    for path in (custom, evil):
        os.utime(path, (1e9, 1e9))
    status_path = trainctl_home / "sessions" / session_id / "status.json"
    spec_path = trainctl_home / "sessions" / session_id / "spec.json"

    resumed = run_cli("resume", session_id)
    assert resumed.returncode == 0, resumed.stderr
    assert f"as attempt 2 from {sound}" in resumed.stdout
    wait_for(lambda: session_json(session_id)["status"] == "succeeded")
    second = json.loads(status_path.read_text())["attempts"][1]
    assert second["skipped_checkpoints"] == [
        {"path": str(evil),
         "reason": "suspicious: dangerous global os.system (can run code when loaded)"},
        {"path": str(custom),
         "reason": "suspicious: unknown global fractions.Fraction (not on the allow-list: "
                   "loading it may run code)"}]

    refused = run_cli("resume", session_id, "--from", str(custom))
    assert (refused.returncode, refused.stderr) == (2, (
        f"checkpoint {custom} is suspicious: unknown global fractions.Fraction (not on the "
        f"allow-list: loading it may run code); pick another (trainctl checkpoints "
        f"{session_id}); if you trust where it came from: trainctl resume {session_id} "
        f"--from {custom} --trust\n"))
    no_path = run_cli("resume", session_id, "--trust")
    assert (no_path.returncode, no_path.stderr) == (2, (
        "--trust needs --from PATH: trust is given to one checkpoint you name, never to "
        "whichever is newest\n"))
    never = run_cli("resume", session_id, "--from", str(evil), "--trust")
    assert (never.returncode, never.stderr) == (2, (
        f"cannot trust {evil}: os.system can run code when loaded; --trust only covers "
        "globals that are merely unknown\n"))
    assert "trusted_globals" not in json.loads(spec_path.read_text())
    assert session_json(session_id)["attempt"] == 2

    trusted = run_cli("resume", session_id, "--from", str(custom), "--trust")
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.splitlines()[0] == (
        f"trusting {custom}: its unknown global fractions.Fraction may run code when it is "
        f"loaded; session {session_id} accepts them in every checkpoint from now on "
        "(restarts too)")
    assert f"as attempt 3 from {custom}" in trusted.stdout
    assert json.loads(spec_path.read_text())["trusted_globals"] == ["fractions.Fraction"]


# -- auto-resume after a spot interruption: the newest sound checkpoint in S3 ------------------


def test_auto_resume_from_s3_takes_the_newest_sound_checkpoint(s3, tmp_path):
    import asyncio

    from test_s3_checkpoints import BUCKET, PREFIX, URI, put_file

    from trainctl_tui.backends.aws.recovery import newest_s3_checkpoint

    put_file(s3, safetensors_file(tmp_path / "a.safetensors"), "step_100.safetensors")
    popen = tmp_path / "popen.pt"
    popen.write_bytes(call_global("platform", "popen", "true"))
    put_file(s3, popen, "step_200.pt")
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "step_300.pt", Body=b"")  # no marker yet
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "step_250.pt", Body=b"\x80")
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "step_250.pt.trainctl-complete", Body=b"")
    uri, skipped = asyncio.run(newest_s3_checkpoint(URI))
    assert uri == URI + "step_100.safetensors"
    assert [(s["path"], s["reason"].split(":")[0]) for s in skipped] == [
        (URI + "step_300.pt", "still being written (no completion marker yet (uploading))"),
        (URI + "step_250.pt", "corrupt"), (URI + "step_200.pt", "suspicious")]
    trusting = asyncio.run(newest_s3_checkpoint(URI, ["platform.popen"]))
    assert trusting[0] == URI + "step_200.pt"


# -- odd checkpoint folders: listed, never fatal, never walked out of --------------------------


def odd_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "loopA").symlink_to("loopB")
    (folder / "loopB").symlink_to("loopA")
    (folder / "step_9.pt").symlink_to("step_9.pt")
    safetensors_file(folder / "step_5" / "model.safetensors")
    (folder / "step_5" / "up").symlink_to("..")  # a dir holding `up -> ..`
    deep = folder / "checkpoint-7"
    safetensors_file(deep / "model.safetensors")
    (deep / "trainer_state.json").write_text('{"log_history": ' + "[" * 100_000 + "]" * 100_000
                                             + "}")
    (folder / "step_8").symlink_to("/")
    (folder / "x.pt").symlink_to("/")
    for path in (deep / "trainer_state.json", deep, folder / "step_5"):
        os.utime(path, (1e9, 1e9))
    return folder


def test_odd_checkpoint_folders_are_listed_not_fatal(trainctl_home, tmp_path):
    folder = odd_folder(tmp_path / "ckpt")
    result = run_cli("checkpoints", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    rows = {Path(c["path"]).name: c for c in data["checkpoints"]}
    assert sorted(rows) == ["checkpoint-7", "step_5"]
    assert rows["step_5"]["status"] == "ok"  # `up -> ..` was not entered
    assert [f["name"] for f in rows["step_5"]["info"]["files"]] == ["model.safetensors"]
    assert rows["checkpoint-7"]["status"] == "corrupt"
    assert rows["checkpoint-7"]["reason"].startswith(
        "trainer_state.json: invalid JSON (maximum recursion depth exceeded")
    assert {Path(s["path"]).name: s["reason"] for s in data["skipped"]} == {
        "step_8": "symlink -> / (outside the directory): a folder outside the checkpoint "
                  "dir, not followed",
        "step_9.pt": "broken symlink -> step_9.pt"}
    assert sv.choose_checkpoint(str(folder)) == (str(folder / "step_5"), [{
        "path": str(folder / "checkpoint-7"),
        "reason": "corrupt: trainer_state.json: invalid JSON (maximum recursion depth exceeded "
                  "while decoding a JSON array from a unicode string)"}])


# -- over SSH: the session's cwd, and a lister that never walks out ----------------------------


def test_ssh_checkpoints_and_pull_look_under_the_sessions_cwd(ssh_env, trainctl_home,
                                                              tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    session_id = test_ssh_provider.launch_on_box(
        "--cwd", str(project), "--checkpoint-dir", "ckpt", "--", sys.executable,
        test_ssh_provider.DEMO, "--steps", "20", "--step-time", "0.001", "--ckpt-every", "10")
    wait_for(lambda: test_ssh_provider.info(session_id)["status"] == "succeeded")
    ckpt = project / "ckpt"
    (ckpt / "x.pt").symlink_to("/")
    (ckpt / "loop.pt").symlink_to("loop.pt")
    time.sleep(2.1)
    listed = run_cli("checkpoints", session_id, "--json", timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)["checkpoints"]}
    assert sorted(rows) == ["loop.pt", "step_000010.safetensors", "step_000020.safetensors",
                            "x.pt"]
    assert rows["step_000020.safetensors"]["path"] == str(ckpt / "step_000020.safetensors")
    assert rows["step_000020.safetensors"]["status"] == "ok"
    assert (rows["x.pt"]["status"], rows["x.pt"]["reason"]) == (
        "unknown", "symlink -> /: not followed (outside the checkpoint dir)")
    assert (rows["loop.pt"]["status"], rows["loop.pt"]["reason"]) == (
        "unknown", "symlink -> loop.pt: not followed (broken)")

    dest = tmp_path / "home copy"
    pulled = run_cli("pull", session_id, "--to", str(dest))
    assert pulled.returncode == 0, pulled.stderr
    local = dest / "step_000020.safetensors"
    assert local.read_bytes() == (ckpt / "step_000020.safetensors").read_bytes()


def test_runpod_home_copies_keep_the_newest_sound_one(tmp_path):
    """Copies pulled home from a pod: the newest HOME_KEEP stay, and so does the newest sound
    one, however many newer copies are not sound."""
    from trainctl_tui.backends.runpod.recovery import _prune_home

    home = tmp_path / "checkpoints-home"
    safetensors_file(home / "step_1.safetensors")
    safetensors_file(home / "step_2.safetensors")
    for n in (3, 4):
        (home / f"step_{n}.pt").write_bytes(call_global("os", "system", "true"))
        os.utime(home / f"step_{n}.pt", (1e9, 1e9))
    _prune_home(home)
    assert sorted(p.name for p in home.iterdir()) == [
        "step_2.safetensors", "step_3.pt", "step_4.pt"]


def test_ssh_resume_takes_the_newest_sound_checkpoint_on_the_host(ssh_env, trainctl_home,
                                                                  tmp_path):
    """The runner on the host judges with the inspector shipped with it (in its zipapp)."""
    _server, workdir = ssh_env
    project = tmp_path / "project"
    project.mkdir()
    trainer = project / "train.py"
    trainer.write_text(TRAINER.replace("sys.exit(1)", "sys.exit(0)"))
    session_id = test_ssh_provider.launch_on_box(
        "--cwd", str(project), "--checkpoint-dir", "ckpt", "--resume-template",
        "--resume {checkpoint}", "--", sys.executable, str(trainer))
    wait_for(lambda: test_ssh_provider.info(session_id)["status"] == "succeeded")
    marker = tmp_path / "pwned"
    made = hostile_folder(project / "ckpt", marker)
    resumed = run_cli("resume", session_id)
    assert resumed.returncode == 0, resumed.stderr
    done = wait_for(lambda: (s := test_ssh_provider.info(session_id))["status"] == "succeeded"
                    and s["attempt"] == 2 and s)
    assert done["attempts"][1]["resumed_from"] == str(made["sound"])
    remote_status = json.loads((workdir / "sessions" / session_id / "status.json").read_text())
    assert remote_status["attempts"][1]["skipped_checkpoints"] == skipped_reasons(made)
    assert not marker.exists()
    runner_dir = next((workdir / "runner").iterdir())
    shipped = zipfile.ZipFile(runner_dir / RUNNER_NAME).namelist()
    assert "trainctl_tui/checkpoints/inspect/dispatch.py" in shipped
    # a checkpoint named relative to the session's cwd is judged on the host first
    refused = run_cli("resume", session_id, "--from", "ckpt/step_250.pt")
    assert (refused.returncode, refused.stderr) == (2, (
        f"checkpoint {made['popen']} is suspicious: unknown global platform.popen (not on the "
        f"allow-list: loading it may run code); pick another (trainctl checkpoints "
        f"{session_id}); if you trust where it came from: trainctl resume {session_id} --from "
        f"{made['popen']} --trust\n"))
    assert test_ssh_provider.info(session_id)["attempt"] == 2


def test_trust_in_a_checkpoint_folder_never_hides_damage(tmp_path):
    from trainctl_tui.checkpoints.inspect import unsound_reason

    folder = tmp_path / "checkpoint-10"
    safetensors_file(folder / "model.safetensors")
    (folder / "trainer_state.json").write_text('{"global_step": 10}')
    (folder / "training_args.bin").write_bytes(call_global("__main__", "MyArgs"))
    info = inspect_checkpoint(folder)
    assert (info.status, info.unknown_globals) == ("suspicious", ["__main__.MyArgs"])
    assert unsound_reason(info, ["__main__.MyArgs"]) is None
    assert unsound_reason(info, ["__main__.Other"]).startswith(
        "suspicious: training_args.bin: unknown global __main__.MyArgs")
    (folder / "optimizer.pt").write_bytes(b"\x80")  # damage ranks above the unknown global
    cache_clear()
    damaged = inspect_checkpoint(folder)
    assert damaged.status == "corrupt"
    assert unsound_reason(damaged, ["__main__.MyArgs"]).startswith("corrupt: optimizer.pt: ")
