"""The supervisor: runs the spec's command until it succeeds, fails for good or is stopped."""

from __future__ import annotations

import os
import select
import signal
import sys
import time

from .budget import Meter
from .gpu_sampler import start_sampler
from .lazy_import import OnFirstUse
from .parts import part_classes
from .processes import (
    describe_pid,
    marked_pids,
    pid_alive,
    process_start_token,
    quote_command,
    signal_name,
    signal_training,
)
from .restart_policy import NO_RETRY_EXIT_CODES, backoff_delay, resume_args
from .resume_choice import checkpoint_problem, choose_checkpoint
from .runner_log import log_stderr, one_line
from .spec import NEWEST
from .status import FINAL_STATES, STATUS_VERSION, atomic_write_json, read_status

subprocess = OnFirstUse("subprocess", globals())
threading = OnFirstUse("threading", globals())


LOG_PREFIX = "[trainctl] "

LEFTOVER_WAIT_SECONDS = 2.0  # for SIGKILLed leftovers to disappear before calling them survivors


class Supervisor:
    """Runs the spec's command until it succeeds, fails for good or is stopped."""

    def __init__(self, session_dir: str, spec: dict, secret_env: dict[str, str], on_ready=None,
                 node=None):
        self.session_dir = session_dir
        self.spec = spec
        self.secret_env = secret_env
        self.on_ready = on_ready
        self.node = node  # runner/nodes.py: this runner's node of a multi-node run, or None
        folder = node.folder(session_dir) if node else session_dir
        self.status_path = os.path.join(folder, "status.json")
        self.log_path = os.path.join(folder, "train.log")
        self.stop_requested = False
        self.force_stop = False
        self.stop_signal: int | None = None
        self.stop_reason: str | None = None  # a stop the runner decided (the budget guard)
        self.proc: subprocess.Popen | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._status_dirty = False
        previous = read_status(folder) or {}
        attempts = previous.get("attempts")
        self.status = {
            "version": STATUS_VERSION,
            "session_id": spec["id"],
            "state": "starting",
            "runner_pid": os.getpid(),
            "runner_start": process_start_token(os.getpid()),
            "child_pid": None,
            "child_start": None,
            "heartbeat": time.time(),
            "attempt": 0,
            "max_restarts": spec["max_restarts"],
            "exit_code": None,
            "signal": None,
            "reason": None,
            "stop_requested": False,
            "next_restart_at": None,
            "checkpoint": None,
            "started": time.time(),
            "ended": None,
            "survivors": [],  # pids the last attempt left alive even after SIGKILL
            "attempts": attempts if isinstance(attempts, list) else [],
        }
        for old in self.status["attempts"]:
            # The previous runner died before it could record the end of this attempt.
            if isinstance(old, dict) and old.get("ended") is None and old.get("reason") is None:
                old["reason"] = "runner lost before the attempt ended"
        self.status["attempt"] = len(self.status["attempts"])
        self.first_attempt = len(self.status["attempts"]) + 1
        # What a backend adds to the runner (runner/parts.py), where the spec turns it on.
        self.parts = [part(self) for part in part_classes() if part.enabled(self.spec)]
        self.interruption: dict | None = None  # set (once) by a part's watcher thread
        self.interrupting = None  # the part that reported it
        for part in self.parts:  # their status.json fields, present only when enabled
            part.init_status(previous)
        if self.spec["autostop_minutes"] is not None:
            self.status.update(autostop_at=None, autostop=None)
        if node:
            self.status["node"] = node.describe()
        self.meter = Meter(self, previous)  # progress, cost, the budget guard (budget.py)

    # ---- status and log

    def write_status(self, strict: bool = False) -> None:
        for part in self.parts:
            part.before_status_write()
        self.meter.update(time.time())
        self.status["heartbeat"] = time.time()
        try:
            atomic_write_json(self.status_path, self.status)
            self._status_dirty = False
        except OSError as exc:
            if strict:
                raise
            # Retried at the next heartbeat; training must not suffer for a flaky disk.
            self._status_dirty = True
            log_stderr(f"cannot write {self.status_path}: {exc}")

    def set_state(self, state: str, **fields) -> None:
        self.status["state"] = state
        self.status.update(fields)
        self.write_status()

    def log_line(self, text: str) -> None:
        """Append one marked line to train.log (never the secret env)."""
        try:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (LOG_PREFIX + text + "\n").encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except OSError as exc:
            log_stderr(f"cannot write {self.log_path}: {exc}")

    # ---- signals

    def install_signal_handlers(self) -> None:
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGUSR1, self._on_force_signal)
        # A Python handler (not SIG_IGN) so the child does not inherit "ignore SIGHUP".
        signal.signal(signal.SIGHUP, lambda signum, frame: None)
        # Only here so that the wakeup fd wakes the loop when the child exits.
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def _on_stop_signal(self, signum, frame) -> None:
        if self.stop_requested:
            self.force_stop = True  # second SIGTERM/SIGINT: stop now
        self.stop_requested = True
        self.stop_signal = self.stop_signal or signum

    def _on_force_signal(self, signum, frame) -> None:
        self.stop_requested = True
        self.force_stop = True
        self.stop_signal = self.stop_signal or signum

    def request_stop(self, reason: str) -> None:
        """A graceful stop the runner itself decided, e.g. at the budget: `reason` is the
        session's."""
        if not self.stop_requested:
            self.stop_reason = reason
        self.stop_requested = True
        self.wake_from_thread()

    def wake_from_thread(self) -> None:
        """Make the main loop look at the flags now (and write status.json)."""
        self._status_dirty = True
        try:
            os.write(self._wake_w, b"w")
        except OSError:
            pass  # pipe full: the loop is awake anyway

    def interrupt(self, part, info: dict) -> None:
        """A part's watcher thread: the machine is about to be taken (`info` says when);
        recorded, and the main loop stops the training in time for it to save."""
        self.interrupting = part
        self.interruption = info
        self.wake_from_thread()

    def _wait_event(self, timeout: float) -> None:
        """Sleep until a signal arrives (incl. SIGCHLD) or `timeout` seconds pass."""
        try:
            select.select([self._wake_r], [], [], max(0.0, timeout))
        except InterruptedError:
            pass
        try:
            while os.read(self._wake_r, 512):  # drain; the flags say what happened
                pass
        except BlockingIOError:
            pass

    # ---- main loop

    def run(self) -> int:
        """Supervise until a final state; returns the runner's exit code (0)."""
        os.set_blocking(self._wake_r, False)
        self.install_signal_handlers()
        self.write_status(strict=True)
        self.meter.runner_started()
        if self.on_ready:
            self.on_ready()
        for part in self.parts:
            part.start()
        usage = start_sampler(self)  # GPUs, CPU and memory into usage.json (gpu_sampler.py)
        code = self.supervise()
        if usage is not None:
            usage.stop()
        if self.meter.reached:
            self.stop_machine_at_limit()
        elif self.spec["autostop_minutes"] is not None:
            self.autostop_wait()
        return code

    def supervise(self) -> int:
        """Attempts and restarts until a final state."""
        restarts = 0
        checkpoint, skipped = self.starting_checkpoint()
        named = self.spec["resume_from"] != NEWEST  # not chosen here: check it before use
        while True:
            if self.interruption:
                return self.finish("interrupted", self.interruption_reason())
            if self.stop_requested:
                return self.finish("stopped", "stopped before the command started")
            n = len(self.status["attempts"]) + 1
            owner = self.part_owning(checkpoint)
            if owner is not None:
                checkpoint, error = owner.fetch_checkpoint(checkpoint)
                if error:
                    self.record_failed_attempt(n, error)
                    return self.finish("failed", error)
            error = self.refuse_unsound(checkpoint) if named else None
            named = False
            if error:
                self.record_failed_attempt(n, error)
                return self.finish("failed", error)
            command = self.spec["command"] + resume_args(self.spec["resume_template"], checkpoint)
            if self.node:
                command = self.node.command(command, self.spec["id"])
            rc, reason = self.run_attempt(n, command, checkpoint, skipped)
            if self.interruption:
                return self.finish("interrupted", reason)
            if self.stop_requested:
                return self.finish("stopped", reason)
            if rc == 0:
                return self.finish("succeeded", None)
            if rc in NO_RETRY_EXIT_CODES:
                return self.finish("failed", reason or f"exited with code {rc} (not retried)")
            if restarts >= self.spec["max_restarts"]:
                # With no restarts allowed there is nothing to add to the exit code.
                budget = f"gave up after {restarts} restart(s)" if restarts else None
                parts = [part for part in (reason, budget) if part]
                return self.finish("failed", "; ".join(parts) or None)
            if not self.backoff(restarts):
                return self.finish("stopped", "stopped during backoff")
            restarts += 1
            checkpoint, skipped = self.choose_checkpoint()

    def choose_checkpoint(self) -> tuple:
        """The newest sound checkpoint, and the newer ones passed over (logged)."""
        path, skipped = choose_checkpoint(self.spec["checkpoint_dir"],
                                          self.spec["trusted_globals"])
        for item in skipped:
            self.log_line(f"skipped checkpoint {item['path']}: {item['reason']}")
        return path, skipped

    def starting_checkpoint(self) -> tuple:
        """What the first attempt resumes from: chosen here for NEWEST, else as the spec says
        (checked by refuse_unsound), with what `trainctl resume` passed over."""
        wanted = self.spec["resume_from"]
        if wanted == NEWEST:
            return self.choose_checkpoint()
        skipped = [item for item in self.spec["resume_skipped"] if isinstance(item, dict)]
        for item in skipped:
            self.log_line(f"skipped checkpoint {item.get('path')}: {item.get('reason')}")
        return wanted, skipped

    def refuse_unsound(self, checkpoint: str | None) -> str | None:
        """A checkpoint named in the spec (or downloaded from S3) is checked like a chosen one:
        nothing starts from one that is not sound."""
        problem = checkpoint_problem(checkpoint, self.spec["trusted_globals"]) if (
            checkpoint) else None
        if problem:
            return f"not resuming from {checkpoint}: {problem}"
        return None

    def backoff(self, restarts: int) -> bool:
        """Wait before the next restart; False if a stop came in meanwhile."""
        delay = backoff_delay(self.spec, restarts)
        restart_at = time.time() + delay
        self.set_state("backoff", next_restart_at=restart_at)
        self.log_line(f"restarting in {delay:g}s")
        heartbeat = self.spec["heartbeat_seconds"]
        next_beat = time.time() + heartbeat
        while not self.stop_requested and not self.interruption:
            now = time.time()
            if now >= restart_at:
                break
            if now >= next_beat or self._status_dirty:
                self.write_status()
                next_beat = now + heartbeat
            self._wait_event(min(restart_at, next_beat) - now)
        self.status["next_restart_at"] = None
        return not self.stop_requested and not self.interruption

    def child_env(self, n: int) -> dict[str, str]:
        env = dict(os.environ)
        if self.node:  # before the user's --env, which may set MASTER_PORT
            env.update(self.node.env())
        env.update(self.spec["env"])
        env.update(self.secret_env)
        env["TRAINCTL_SESSION_ID"] = self.spec["id"]
        env["TRAINCTL_SESSION_DIR"] = self.session_dir
        env["TRAINCTL_ATTEMPT"] = str(n)
        if self.spec["checkpoint_dir"]:
            env["TRAINCTL_CHECKPOINT_DIR"] = self.spec["checkpoint_dir"]
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def launch(self, command: list[str], n: int) -> tuple[int, str] | None:
        """Start the child; on failure return (exit code, reason) like a shell would."""
        cwd = self.spec["cwd"]
        if not os.path.isdir(cwd):
            return 127, f"working directory not found: {cwd}"
        try:
            log_fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            return 126, f"cannot open {self.log_path}: {exc.strerror}"
        try:
            self.proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=self.child_env(n),
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                start_new_session=True,
            )
        except FileNotFoundError:
            return 127, f"command not found: {command[0]}"
        except PermissionError:
            return 126, f"permission denied (not executable?): {command[0]}"
        except OSError as exc:
            return 126, f"cannot execute {command[0]}: {exc.strerror or exc}"
        finally:
            os.close(log_fd)  # the child owns its copy; training keeps logging if we die
        return None

    def run_attempt(self, n: int, command: list[str], checkpoint: str | None, skipped=()):
        """Run one attempt to its end; returns (returncode, reason). `skipped`: the newer
        checkpoints passed over, with why."""
        attempt = {
            "n": n,
            "started": time.time(),
            "ended": None,
            "exit_code": None,
            "signal": None,
            "resumed_from": checkpoint,
            "command": command,
            "reason": None,
        }
        if skipped:
            attempt["skipped_checkpoints"] = list(skipped)
        self.status["attempts"].append(attempt)
        self.status.update(
            attempt=n, checkpoint=checkpoint, exit_code=None, signal=None, reason=None
        )
        self.set_state("starting")
        total = self.first_attempt + self.spec["max_restarts"]
        resuming = f" resuming from {checkpoint}" if checkpoint else ""
        self.log_line(f"attempt {n}/{total}{resuming}: {quote_command(command)}")
        self.meter.attempt_started(n, checkpoint)

        failure = self.launch(command, n)
        if failure is not None:
            rc, reason = failure
            self.log_line(reason)
            self.end_attempt(attempt, rc, reason)
            return rc, reason

        child = self.proc
        self.set_state("running", child_pid=child.pid, child_start=process_start_token(child.pid))
        rc, reason = self.wait_child(child)
        survivors = self.kill_leftovers(child.pid)  # dataloader workers, daemons it started
        self.proc = None
        self.status.update(child_pid=None, child_start=None, survivors=survivors)
        if rc < 0:
            self.log_line(f"killed by {signal_name(-rc)}")
        else:
            self.log_line(f"exited with code {rc}")
        if survivors:
            alive = ", ".join(describe_pid(pid) for pid in survivors)
            self.log_line(f"still alive after SIGKILL: {alive}")
            reason = "; ".join(part for part in (reason, f"still alive: {alive}") if part)
        self.end_attempt(attempt, rc, reason)
        return rc, reason

    def wait_child(self, child: subprocess.Popen) -> tuple[int, str | None]:
        """Wait for the child, handling stop requests and heartbeats."""
        heartbeat = self.spec["heartbeat_seconds"]
        grace = self.spec["grace_seconds"]
        next_beat = time.time() + heartbeat
        term_sent = kill_sent = False
        kill_at = None
        reason = None
        while True:
            rc = child.poll()
            if rc is not None:
                return rc, reason
            now = time.time()
            if self.interruption and not term_sent:
                term_sent = True
                reason = self.interruption_reason()
                kill_at = self.interruption_kill_at()
                self.set_state("stopping", interruption=self.interruption)
                self.log_line(f"{reason}: SIGTERM to the process group, "
                              f"{max(0.0, kill_at - now):.0f}s to save a checkpoint")
                self.signal_training(child.pid, signal.SIGTERM)
            if self.stop_requested and not term_sent:
                term_sent = True
                name = signal_name(self.stop_signal) if self.stop_signal else "request"
                reason = self.stop_reason or f"stopped by {name}"
                kill_at = now + grace
                self.set_state("stopping", stop_requested=True)
                if not self.force_stop:  # a force stop is SIGKILL alone, just below
                    self.log_line(f"stopping: SIGTERM to the process group, grace {grace:g}s")
                    self.signal_training(child.pid, signal.SIGTERM)
            if term_sent and not kill_sent and (self.force_stop or now >= kill_at):
                kill_sent = True
                if self.force_stop:
                    reason = f"force-stopped by {signal_name(self.stop_signal or 0)}"
                elif self.interruption:
                    reason = f"{self.interruption_reason()}; did not exit in time, killed"
                else:
                    reason = f"did not exit within {grace:g}s of SIGTERM; killed"
                self.log_line(reason)
                self.signal_training(child.pid, signal.SIGKILL)
            if now >= next_beat or self._status_dirty:
                self.write_status()
                next_beat = now + heartbeat
            wake = next_beat if kill_sent or not term_sent else min(next_beat, kill_at)
            self._wait_event(wake - now)

    @property
    def node_rank(self) -> int | None:
        return self.node.rank if self.node else None

    @staticmethod
    def kill_group(pgid: int, signum: int) -> None:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def signal_training(self, pgid: int, signum: int) -> None:
        signal_training(pgid, self.spec["id"], signum, self.node_rank)

    def kill_leftovers(self, pgid: int, wait: float = LEFTOVER_WAIT_SECONDS) -> list[int]:
        """SIGKILL what the training left behind; the pids still alive after `wait`."""
        self.signal_training(pgid, signal.SIGKILL)
        deadline = time.time() + wait
        while True:
            alive = marked_pids(self.spec["id"], self.node_rank)
            if not alive or time.time() >= deadline:
                return alive
            time.sleep(0.05)

    def end_attempt(self, attempt: dict, rc: int, reason: str | None) -> None:
        exit_code, sig = (None, -rc) if rc < 0 else (rc, None)
        attempt.update(ended=time.time(), exit_code=exit_code, signal=sig, reason=reason)
        self.status.update(exit_code=exit_code, signal=sig, reason=reason)
        self.write_status()

    def finish(self, state: str, reason: str | None) -> int:
        for part in self.parts:
            part.finish(state)
        if state == "stopped" and self.stop_reason:
            reason = self.stop_reason  # not "stopped during backoff": why it was stopped
        self.meter.finish()
        if self.meter.reached:  # the machine's stop follows (stop_machine_at_limit): its
            self.status["budget_stop"] = {"pending": True}  # outcome is still news
        self.status.update(
            state=state,
            reason=reason,
            ended=time.time(),
            next_restart_at=None,
            stop_requested=self.stop_requested,
        )
        self.log_line(f"session {state}" + (f": {reason}" if reason else ""))
        self.write_status()
        for _ in range(3):  # a flaky disk: the final state matters most
            if not self._status_dirty:
                break
            time.sleep(0.5)
            self.write_status()
        return 0


    # ---- backends' runner parts: interruptions, checkpoints in a store

    def part_owning(self, checkpoint):
        """The part whose store holds `checkpoint` (to fetch it first), or None."""
        return next((part for part in self.parts if part.owns_checkpoint(checkpoint)), None)

    def run_beating(self, work) -> None:
        """Run slow work (an upload) in a thread while the heartbeat goes on; a force stop
        (SIGUSR1, or a second SIGTERM) abandons the wait."""
        worker = threading.Thread(target=work, name="trainctl-final-sync", daemon=True)
        worker.start()
        while worker.is_alive() and not self.force_stop:
            self.write_status()
            worker.join(self.spec["heartbeat_seconds"])
        if worker.is_alive():
            self.log_line("final checkpoint sync abandoned (force stop)")

    def interruption_reason(self) -> str:
        return self.interrupting.interruption_reason(self.interruption)

    def interruption_kill_at(self) -> float:
        return self.interrupting.interruption_kill_at(self.interruption)

    def record_failed_attempt(self, n: int, reason: str) -> None:
        """An attempt that could not start (nothing ran): recorded so status.json says why."""
        self.log_line(reason)
        attempt = {"n": n, "started": time.time(), "ended": time.time(), "exit_code": None,
                   "signal": None, "resumed_from": None, "command": None, "reason": reason}
        self.status["attempts"].append(attempt)
        self.status.update(attempt=n, exit_code=None, signal=None, reason=reason)
        self.write_status()

    # ---- idle autostop

    def autostop_wait(self) -> None:
        """After the final state: wait `autostop_minutes`, then run autostop_command once unless
        another runner in the same workdir is busy (then wait again). A stop signal cancels."""
        period = self.spec["autostop_minutes"] * 60.0
        # The stop that ended the training must not also cancel the idle wait.
        self.stop_requested = self.force_stop = False
        self.stop_signal = None
        beat = max(self.spec["heartbeat_seconds"] * 5, 10.0)  # idle: a slower heartbeat
        stop_at = time.time() + period
        self.status["autostop_at"] = stop_at
        self.log_line(f"idle: autostop in {period:g}s unless another session starts")
        self.write_status()
        while not self.stop_requested:
            now = time.time()
            if now >= stop_at:
                busy = active_sibling(self.session_dir)
                if busy is None:
                    self.run_autostop()
                    return
                stop_at = now + period
                self.status["autostop_at"] = stop_at
                self.log_line(f"session {busy} is active: autostop postponed by {period:g}s")
            self.write_status()
            self._wait_event(min(stop_at - time.time(), beat))
        name = signal_name(self.stop_signal) if self.stop_signal else "request"
        self.status.update(autostop_at=None, autostop={
            "action": "cancelled", "at": time.time(), "reason": f"stopped by {name}",
            "command": None, "exit_code": None, "error": None})
        self.log_line(f"autostop cancelled by {name}")
        self.write_status()

    def stop_machine_at_limit(self) -> None:
        """The budget guard stopped the run: end the machine's spending. A backend's runner
        part does it where it can (a pod through RunPod's API), else `budget_stop_command`,
        which is also the fallback when the part failed. A stop that failed is said in
        train.log, in status.json (`budget_stop`) and in the session's reason."""
        record = next((found for found in (part.stop_machine() for part in self.parts)
                       if found is not None), None)
        command = self.spec["budget_stop_command"]
        if record is not None and not record["error"]:
            self.log_line(f"budget stop: {record['machine']} {record['action']}ped through "
                          f"the {record['via']} (now {record.get('state')})"
                          if record["action"] == "stop" else
                          f"budget stop: {record['machine']} terminated through the "
                          f"{record['via']}")
        elif record is not None:
            self.log_line(f"budget stop: could not {record['action']} {record['machine']}: "
                          f"{record['error']}")
            if command:
                ran = self.run_stop_command(command, "budget_stop")
                record.update(command=ran["command"], exit_code=ran["exit_code"])
                if ran["error"] is None:
                    record["error"] = None
                    self.log_line(f"budget stop: {quote_command(command)} did it")
                else:
                    record["error"] += f"; {quote_command(command)}: {ran['error']}"
        elif command:
            record = self.run_stop_command(command, "budget_stop")
        else:  # nothing here rents the machine
            self.status["budget_stop"] = None
            self.write_status()
            return
        record["at"] = time.time()
        if record["error"]:
            machine = record.get("machine") or "the machine"
            line = (f"{machine} was NOT stopped and may still cost money ({record['error']})")
            self.log_line("budget stop: " + line)
            log_stderr("budget stop failed: " + record["error"])
            self.status["reason"] = "; ".join(
                part for part in (self.status.get("reason"), line) if part)
        self.status["budget_stop"] = record
        self.write_status()

    def run_stop_command(self, command: list, key: str) -> dict:
        """Run a machine's stop command once: its record (exit code, error line or None)."""
        self.log_line(f"{key.replace('_', ' ')}: {quote_command(command)}")
        record = {"action": "ran", "at": time.time(), "reason": None, "command": command,
                  "exit_code": None, "error": None}
        try:
            result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                    timeout=120)
            record["exit_code"] = result.returncode
            if result.returncode != 0:
                record["error"] = (one_line(result.stderr.decode("utf-8", "replace"))
                                   or f"exited with code {result.returncode}")
        except (OSError, subprocess.SubprocessError) as exc:
            record["error"] = f"cannot run {command[0]}: {exc}"
        return record

    def run_autostop(self) -> None:
        """Run the machine's idle autostop command once and record how it went in
        status.json (`autostop`)."""
        record = self.run_stop_command(self.spec["autostop_command"], "autostop")
        if record["error"]:
            log_stderr(f"autostop command failed: {record['error']}")
        self.status["autostop_at"] = None
        self.status["autostop"] = record
        self.write_status()


def active_sibling(session_dir: str) -> str | None:
    """Name of another session in the same workdir whose runner is alive and busy, or None."""
    workdir = os.path.dirname(os.path.abspath(session_dir))
    own = os.path.basename(os.path.abspath(session_dir))
    try:
        names = sorted(os.listdir(workdir))
    except OSError:
        return None
    for name in names:
        if name == own:
            continue
        status = read_status(os.path.join(workdir, name))
        if not status or status.get("state") in FINAL_STATES:
            continue
        if pid_alive(status.get("runner_pid"), status.get("runner_start")):
            return name
    return None


if __name__ == "__main__":
    # `python -m trainctl_tui.runner.supervisor` still runs the runner's command line. Imported
    # by name: cli imports this module (as trainctl_tui.runner.supervisor, not as __main__).
    import importlib

    sys.exit(importlib.import_module(__package__ + ".cli").main())
