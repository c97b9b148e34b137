"""AWS in the runner (a runner part, runner/parts.py): on an EC2 instance, each finished
checkpoint goes to S3 (`s3_checkpoint_uri`, through the aws CLI), a checkpoint in S3 is
downloaded to resume from, and a spot interruption notice (`spot_notice_url`, IMDS) stops the
training in time for it to save, and that checkpoint is uploaded before the instance goes.
Shipped in the runner's zipapp: stdlib only, Python 3.7+."""

from __future__ import annotations

import os
import time

from ...runner.checkpoint_files import find_newest_checkpoint
from ...runner.parts import RunnerPart
from ...runner.runner_log import log_stderr
from ...runner.spec import SpecError, command_list
from .runner_s3 import CheckpointSync, download_checkpoint, is_s3_uri, s3_join
from .runner_spot import (
    SPOT_DEFAULT_NOTICE_SECONDS,
    SPOT_MIN_SAVE_SECONDS,
    SpotWatcher,
    imds_endpoint,
    parse_aws_time,
)


class AwsRunnerPart(RunnerPart):
    SPEC_DEFAULTS = {
        "spot_notice_url": None,
        "spot_poll_seconds": 5.0,
        "spot_safety_seconds": 20.0,
        "s3_checkpoint_uri": None,
        "s3_sync_seconds": 10.0,
        "aws_cli": "aws",
    }

    @classmethod
    def check_spec(cls, spec: dict, path: str) -> None:
        for key in ("spot_poll_seconds", "spot_safety_seconds", "s3_sync_seconds"):
            try:
                spec[key] = max(0.05, float(spec[key]))
            except (TypeError, ValueError):
                raise SpecError(f"{path}: '{key}' must be a number") from None
        uri = spec["s3_checkpoint_uri"]
        if uri is not None and not is_s3_uri(uri):
            raise SpecError(f"{path}: 's3_checkpoint_uri' must start with s3:// (got {uri!r})")
        spec["aws_cli"] = command_list(spec["aws_cli"], "aws_cli", path)

    @classmethod
    def enabled(cls, spec: dict) -> bool:
        return bool(spec.get("spot_notice_url") or spec.get("s3_checkpoint_uri")
                    or is_s3_uri(spec.get("resume_from")))

    @classmethod
    def owns_checkpoint(cls, checkpoint) -> bool:
        return is_s3_uri(checkpoint)

    def __init__(self, supervisor):
        super().__init__(supervisor)
        self.spec = supervisor.spec
        self.spot = None  # SpotWatcher
        self.syncer = None  # CheckpointSync

    def init_status(self, previous: dict) -> None:
        status, spec = self.supervisor.status, self.spec
        if spec["spot_notice_url"]:
            status["interruption"] = None
        if spec["s3_checkpoint_uri"]:
            synced = previous.get("synced_checkpoints")
            same_uri = previous.get("s3_checkpoint_uri") == spec["s3_checkpoint_uri"]
            status.update(
                s3_checkpoint_uri=spec["s3_checkpoint_uri"],
                # A restarted runner does not upload again what its predecessor uploaded.
                synced_checkpoints=synced if same_uri and isinstance(synced, list) else [],
                last_sync=previous.get("last_sync") if same_uri else None,
            )

    def cli_env(self) -> dict:
        """The aws CLI sees what the training sees (session env and secrets may hold AWS_*)."""
        env = dict(os.environ)
        env.update(self.spec["env"])
        env.update(self.supervisor.secret_env)
        return env

    def start(self) -> None:
        spec = self.spec
        if spec["s3_checkpoint_uri"]:
            if spec["checkpoint_dir"]:
                self.syncer = CheckpointSync(
                    spec["checkpoint_dir"], spec["s3_checkpoint_uri"], spec["aws_cli"],
                    self.cli_env(), spec["s3_sync_seconds"],
                    synced=self.supervisor.status.get("synced_checkpoints") or (),
                    notify=self.supervisor.wake_from_thread,
                )
                self.syncer.start()
            else:
                log_stderr("s3_checkpoint_uri is set but checkpoint_dir is not: nothing to sync")
        if spec["spot_notice_url"]:
            self.spot = SpotWatcher(imds_endpoint(spec["spot_notice_url"]),
                                    spec["spot_poll_seconds"],
                                    self.on_spot_notice)
            self.spot.start()

    def before_status_write(self) -> None:
        if self.syncer is not None:  # what it uploaded so far
            self.supervisor.status.update(self.syncer.snapshot())

    def on_spot_notice(self, notice: dict) -> None:
        # Runs in the watcher thread: the supervisor records it and its main loop acts.
        now = time.time()
        deadline = parse_aws_time(notice.get("time")) or now + SPOT_DEFAULT_NOTICE_SECONDS
        self.supervisor.interrupt(self, {
            "notice_at": now,
            "action": str(notice.get("action")),
            "time": notice.get("time"),
            "deadline": deadline,
            "checkpoint": None,
            "synced": False,
            "uri": None,
        })

    def interruption_reason(self, info: dict) -> str:
        when = f" at {info['time']}" if info.get("time") else ""
        return f"spot interruption notice ({info.get('action')}{when})"

    def interruption_kill_at(self, info: dict) -> float:
        """Leave a safety margin before AWS takes the machine, but give the training a few
        seconds even when the notice came late (or clocks differ)."""
        return max(info["deadline"] - self.spec["spot_safety_seconds"],
                   info["notice_at"] + SPOT_MIN_SAVE_SECONDS)

    def fetch_checkpoint(self, uri: str):
        """Download an s3:// checkpoint for the next attempt: (local path, None) or
        (None, reason). No training starts without the checkpoint it should resume from."""
        dest = self.spec["checkpoint_dir"] or os.path.join(self.supervisor.session_dir,
                                                           "checkpoints")
        self.supervisor.log_line(f"downloading checkpoint {uri} to {dest}")
        name = uri.rstrip("/").rsplit("/", 1)[-1]
        base = self.spec["s3_checkpoint_uri"]
        from_sync_prefix = (self.syncer is not None and bool(base)
                            and uri.rstrip("/") == s3_join(base, name))
        if from_sync_prefix:
            # Marked before it appears locally, so the sync thread never uploads it back.
            self.syncer.mark_synced(name, True)
        local, error = download_checkpoint(self.spec["aws_cli"], uri, dest, self.cli_env())
        if error:
            if from_sync_prefix:
                self.syncer.mark_synced(name, False)
            return None, f"cannot download checkpoint {uri}: {error}"
        return local, None

    def finish(self, state: str) -> None:
        if self.spot is not None:
            self.spot.stop()
        info = self.supervisor.interruption
        if state == "interrupted" and info is not None and self.spec["spot_notice_url"]:
            self.record_interruption_checkpoint(info)
        elif self.syncer is not None:
            self.supervisor.log_line("final checkpoint sync to S3")
            self.supervisor.run_beating(lambda: self.syncer.final_sync(deadline=None))

    def record_interruption_checkpoint(self, info: dict) -> None:
        """Upload what the training saved after the notice and record where it is."""
        newest = find_newest_checkpoint(self.spec["checkpoint_dir"])
        if self.syncer is not None:
            self.supervisor.log_line("spot interruption: syncing the newest checkpoint to S3")
            self.supervisor.run_beating(lambda: self.syncer.final_sync(deadline=info["deadline"]))
        synced = bool(newest and self.syncer is not None and self.syncer.is_synced(newest))
        info.update(
            checkpoint=newest,
            synced=synced,
            uri=s3_join(self.spec["s3_checkpoint_uri"], os.path.basename(newest))
            if synced else None,
        )
        self.supervisor.status["interruption"] = info


PART = AwsRunnerPart
