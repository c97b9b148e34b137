"""Sessions on an EC2 instance, driven through SSM (provider string `aws:i-0123456789abcdef0`).

The same stdlib runner as over SSH: installed under the template's workdir (absolute, default
/opt/trainctl), started detached, probed, its train.log mirrored by offset, stopped — every step
one or a few SSM commands instead of ssh calls (see aws_ssm). A refresh is one SSM command: the
probe carries the next slice of train.log with it.

Secrets never travel in command text: each secret env var becomes a SecureString SSM parameter
`/trainctl/<session>/env/<NAME>`; a command that names only the parameter path makes the
instance read them with its own role (`aws ssm get-parameters-by-path --with-decryption`) into
a 0600 secret_env.json. The parameters are deleted when the session is removed or ends for good.

An instance that is stopped, terminated or not registered with SSM shows as unreachable with one
line; one that AWS reclaimed (spot, `Server.SpotInstanceTermination`) as interrupted."""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path

from ...core import interruptions
from ...core.atomic import atomic_write
from ...core.errors import TrainctlError
from ...core.machines import Instance
from ...core.models import Session, Status
from ...runner.bundle import RUNNER_NAME
from ..base import ProviderError, UnknownProvider
from ..remote.runner import (
    PROBE_TTL,
    RemoteLogMirror,
    RemoteRunnerProvider,
    backoff,
    keep_usage,
    remote_info,
    remote_nodes,
)
from ..remote.transport import SSHTarget, ssh_command
from . import api as aws_api
from .api import AWSError
from .cloud import TEMPLATE_TAG  # the template an instance was created from
from .recovery import LAST_STATUS, interruption_reason
from .runner_spot import IMDS_URL
from .ssm import SSMError, SSMTransport, SSMUnreachable, parse_slice, slice_script

INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
SECRET_PREFIX = "/trainctl/{session}/env/"
SPOT_NOTICE_URL = IMDS_URL  # tests point it at a local server
SPOT_POLL_SECONDS: float | None = None  # None: the runner's default
AWS_CLI = "aws"  # the aws CLI on the instance (the Deep Learning AMIs have it)
SPOT_TERMINATION = "Server.SpotInstanceTermination"
LOG_MARK = "TRAINCTL-LOG"

# Runs on the instance: reads the session's SecureString parameters with the instance's own
# credentials and writes them to a 0600 file. Only the parameter path is in the command text.
FETCH_SECRETS = r"""
import json, os, subprocess, sys
aws, path, region, out = sys.argv[1:5]
argv = [aws, "ssm", "get-parameters-by-path", "--path", path, "--with-decryption",
        "--recursive", "--output", "json"] + (["--region", region] if region else [])
done = subprocess.run(argv, capture_output=True, text=True)
if done.returncode != 0:
    lines = [l for l in done.stderr.splitlines() if l.strip()]
    sys.stderr.write("cannot read the session's secrets from SSM: "
                     + (lines[-1] if lines else "aws exit %d" % done.returncode) + "\n")
    sys.exit(3)
env = {p["Name"][len(path):]: p["Value"] for p in json.loads(done.stdout)["Parameters"]}
tmp = out + ".tmp"
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as fh:
    json.dump(env, fh)
os.replace(tmp, out)
print(len(env))
"""


def secret_path(session_id: str) -> str:
    return SECRET_PREFIX.format(session=session_id)


class AWSProvider(RemoteRunnerProvider):
    """The runner on one EC2 instance, through SSM."""

    probes_nodes_apart = True  # a run's other instances are probed on their own (nodes.py)

    def __init__(self, instance_id: str, template: str | None = None):
        super().__init__()
        ids = [part.strip() for part in instance_id.split(",")]
        for part in ids:
            if not INSTANCE_ID.match(part):
                raise UnknownProvider(f"aws: '{part}' is not an EC2 instance id: use "
                                      "--provider aws:i-0123456789abcdef0")
        if len(set(ids)) != len(ids):
            raise UnknownProvider(f"aws: {instance_id} names an instance twice")
        self.host = ids[0]  # the head of a multi-node run (aws:i-HEAD,i-B,...): rank 0
        self.node_ids = ids
        self.template_name = template
        self._template = None
        self._transport: SSMTransport | None = None

    @property
    def name(self) -> str:
        return f"aws:{','.join(self.node_ids)}"

    @property
    def label(self) -> str:
        return f"aws {self.host}"

    @property
    def template(self):
        """The `[aws.templates.NAME]` the instance's workdir/python/S3 prefix come from."""
        if self._template is None:
            from .cloud import AWSCloud
            from .settings import AwsTemplate

            try:
                self._template = AWSCloud().template(self.template_name)
            except ProviderError:
                if self.template_name is not None:
                    raise
                self._template = AwsTemplate()  # only named templates: built-in defaults
        return self._template

    @property
    def target(self):
        """What service.launch checks before it stores a session (no network here; the
        instance itself is checked by validate())."""
        return self.template

    @property
    def transport(self) -> SSMTransport:
        if self._transport is None:
            self._transport = SSMTransport(self.host, cwd=self.template.workdir)
        return self._transport

    @property
    def python(self) -> str:
        return self.template.python

    @property
    def workdir(self) -> str:
        return self.template.workdir

    # -- checks --------------------------------------------------------------------------------

    async def describe(self) -> dict:
        from .cloud import AWSCloud

        return await AWSCloud().lookup(self.host)

    async def price_per_hour(self, session: Session, options: dict) -> float | None:
        """The instance's price (on-demand, or its zone's spot price), or None if unknown."""
        from .cloud import AWSCloud

        if len(self.node_ids) > 1:  # a multi-node run costs what its nodes cost together
            from .nodes import price_of_nodes

            return await price_of_nodes(self)
        return (await AWSCloud().get_instance(self.host)).price_per_hour

    async def validate(self) -> None:
        """One line when the instance does not exist, is not running or not in SSM."""
        raw = await self.describe()
        self._spot = raw.get("InstanceLifecycle") == "spot"
        self._instance_type = raw.get("InstanceType")
        tags = {t["Key"]: t.get("Value", "") for t in raw.get("Tags") or []}
        if self.template_name is None and tags.get(TEMPLATE_TAG):
            self.template_name, self._template, self._transport = tags[TEMPLATE_TAG], None, None
        state = raw.get("State", {}).get("Name")
        if state != "running":
            raise ProviderError(f"aws: {self.host} is {state}, not running (start it: "
                                f"trainctl instance start {self.host})")

    async def _unreachable_reason(self, error: Exception) -> tuple[str, bool]:
        """(one line, reclaimed by a spot interruption?) for an SSM failure."""
        try:
            raw = await self.describe()
        except AWSError as exc:
            return f"{error} ({exc})", False
        state = raw.get("State", {}).get("Name", "?")
        reason = raw.get("StateReason") or {}
        spot = reason.get("Code") == SPOT_TERMINATION
        if state == "running":
            return str(error), False
        why = f"instance is {state}" + (f": {reason.get('Message')}" if reason.get("Message")
                                        else "")
        return f"aws ssm: {self.host} is not reachable through SSM ({why})", spot

    # -- launching -----------------------------------------------------------------------------

    def remote_dir(self, session: Session) -> str:
        info = remote_info(session)
        if info and info.get("host") == self.host:
            return info["remote_dir"]
        return f"{self.workdir.rstrip('/')}/sessions/{session.id}"

    def heals_nodes(self, session: Session) -> bool:
        """A multi-node run is watched and healed (node_healing.py) with terminals closed."""
        return len(self.node_ids) > 1

    def placed_now(self, session: Session) -> str | None:
        """The provider string as the run's instances are now: a lost node's replacement
        in its place (None: as it is)."""
        from .nodes import node_ids

        ids = node_ids(self, session) if len(self.node_ids) > 1 else self.node_ids
        return f"aws:{','.join(ids)}" if ids != self.node_ids else None

    def check_options(self, options: dict) -> None:
        """At launch, before anything is made: --nodes against the instances named."""
        from .nodes import check_node_count

        check_node_count(",".join(self.node_ids), self.node_ids, options.get("nodes"))

    async def launch(self, session: Session, node_args: tuple[str, ...] = (),
                     record: bool = True) -> None:
        try:
            if len(self.node_ids) > 1 and not node_args:
                from .nodes import start_nodes

                return await start_nodes(self, session)  # each node comes back here
            await self.validate()
            self._add_aws_spec(session)
            await super().launch(session, node_args, record)
        except SSMUnreachable as exc:
            raise ProviderError(str(exc)) from None

    def _add_aws_spec(self, session: Session) -> None:
        """spot_notice_url, s3_checkpoint_uri, autostop_minutes for the runner on EC2."""
        path = Path(session.session_dir) / "spec.json"
        spec = json.loads(path.read_text())
        template = self.template
        if getattr(self, "_spot", False):  # on-demand instances get no notices
            spec["spot_notice_url"] = SPOT_NOTICE_URL
            if SPOT_POLL_SECONDS:
                spec["spot_poll_seconds"] = SPOT_POLL_SECONDS
        if template.s3_prefix and not spec.get("s3_checkpoint_uri"):
            spec["s3_checkpoint_uri"] = s3_checkpoint_uri(template.s3_prefix, session.id)
        if template.autostop_minutes:
            spec["autostop_minutes"] = template.autostop_minutes
            spec.setdefault("autostop_command", "shutdown -h now")
        if spec.get("budget") is not None or spec.get("max_hours") is not None:
            # At a limit the spending must end: the instance shuts itself down, which stops
            # or terminates it as it was created to (the template's shutdown_behavior). In a
            # minute: a trainctl that watches reads the run's final status first.
            spec.setdefault("budget_stop_command", "shutdown -h +1")
        if getattr(self, "_instance_type", None):  # how alerts name the machine: g5.xlarge
            spec["machine_type"] = self._instance_type
        spec.setdefault("aws_cli", AWS_CLI)
        try:
            spec.setdefault("aws_region", aws_api.region())
        except AWSError:
            pass
        atomic_write(path, json.dumps(spec, indent=2))

    async def _ship_secrets(self, session: Session, remote_dir: str, data: bytes) -> None:
        """SecureString parameters, read on the instance by its role: the values are never
        in a command."""
        values = json.loads(data)
        ssm = aws_api.client("ssm")
        prefix = secret_path(session.id)
        for name, value in values.items():
            await aws_api.call(f"storing secret {name} in SSM", ssm.put_parameter,
                               Name=prefix + name, Value=str(value), Type="SecureString",
                               Overwrite=True)
        try:
            region = aws_api.region()
        except AWSError:
            region = ""
        spec = json.loads((Path(session.session_dir) / "spec.json").read_text())
        result = await self.transport.run(
            [self.python, "-c", FETCH_SECRETS, spec.get("aws_cli") or "aws", prefix, region,
             f"{remote_dir}/secret_env.json"], check=False, timeout=120)
        if result.returncode != 0:
            lines = result.stderr.decode(errors="replace").strip().splitlines()
            raise ProviderError(f"{self.label}: " + (lines[-1] if lines else
                                "cannot read the session's secrets from SSM") +
                                " (the instance role needs ssm:GetParametersByPath on "
                                f"{prefix}* and kms:Decrypt)")

    async def forget_secrets(self, session: Session) -> int:
        return await delete_secrets(session.id) if has_secrets(session) else 0

    # -- replacing a reclaimed spot instance (backends/replacing.py) ---------------------------

    @property
    def replaces_machines(self) -> bool:
        """One instance: yes. A node of a multi-node run is healed on its own instead
        (node_healing.py)."""
        return len(self.node_ids) == 1

    async def lost_detail(self, session: Session, status: dict) -> str | None:
        from ..remote.node_group import lost_nodes_detail

        return lost_nodes_detail(status)

    interrupted_when = (Status.INTERRUPTED,)  # the probe says so (_interrupted)

    async def interruption(self, session: Session, entries: list[dict]):
        from . import recovery

        return await recovery.interruption(session, self.host, entries)

    async def replace(self, session: Session, entry: dict | None, *, reason: str,
                      by_hand: bool = False, scratch: bool = False,
                      from_checkpoint: str | None = None, progress=None):
        from . import recovery

        return await recovery.replace(session, self.host, entry, by_hand=by_hand,
                                      scratch=scratch, from_checkpoint=from_checkpoint)

    async def observe(self, session: Session) -> None:
        pass  # what a replacement needs is read when the instance is reclaimed

    # -- watching ------------------------------------------------------------------------------

    async def probe(self, session: Session) -> dict:
        cached = self._probes.get(session.id)
        if cached and time.monotonic() - cached[0] < PROBE_TTL:
            return cached[1]
        launched = None
        if len(self.node_ids) > 1:
            from .nodes import released_answer

            answer = released_answer(session)  # the run ended, its instances released
            if answer is not None:
                return answer
            # which launch these probes see: a resume meanwhile makes them stale (healing.py)
            launched = (remote_nodes(session) or [{}])[0].get("started")
        with backoff(self.backoff_key):
            try:
                return await self._probe(session, launched)
            except SSMUnreachable as exc:
                if len(self.node_ids) > 1:
                    answer = await self._head_unanswered(session, launched)
                    if answer is not None:
                        return answer
                line, spot = await self._unreachable_reason(exc)
                if spot or (self._last_status(session).get("cost") or {}).get("reached"):
                    return self._interrupted(session, line)  # taken, or stopped at a limit
                raise ProviderError(line) from None

    async def _head_unanswered(self, session: Session, launched: float | None
                               ) -> dict | None:
        """A multi-node run's head SSM does not reach: once it is lost, the run as it ends
        (node_healing.py), its instances released; None while it is only unreachable."""
        from .node_healing import head_unanswered
        from .nodes import release_lock, release_now, released_answer

        with release_lock(session):
            answer = released_answer(session)  # released meanwhile: why it no longer answers
            if answer is None:
                answer = await head_unanswered(self, session, launched)
                if answer is not None:
                    await release_now(self, session, answer)
        if answer is not None:
            self._probes[session.id] = (time.monotonic(), answer)
        return answer

    def _interrupted(self, session: Session, line: str) -> dict:
        """A status for a reclaimed instance: the last one seen, in state interrupted."""
        status = self._last_status(session)
        reached = (status.get("cost") or {}).get("reached")
        if status.get("state") in ("stopped", "succeeded", "failed", "interrupted"):
            pass  # the runner said how it ended before the instance went
        elif reached:  # the runner's budget guard stopped the run, then the instance
            status.update(state="stopped", reason=reached, ended=time.time())
        else:
            status.update(state="interrupted", reason=f"spot interruption: {line}",
                          ended=time.time())
            for attempt in status.get("attempts") or []:
                if attempt.get("ended") is None:
                    attempt.update(ended=status["ended"], reason="spot interruption")
        answer = {"status": status, "runner_alive": False, "child_alive": False,
                  "log_size": 0, "newest_checkpoint": None, "interrupted": True}
        self._probes[session.id] = (time.monotonic(), answer)
        return answer

    @staticmethod
    def _last_status(session: Session) -> dict:
        """The runner's status as the last probe read it ({} if none)."""
        try:
            status = json.loads((Path(session.session_dir) / LAST_STATUS).read_text())
        except (OSError, ValueError):
            return {}
        return status if isinstance(status, dict) else {}

    async def _probe(self, session: Session, launched: float | None = None) -> dict:
        """One SSM command: the runner's probe and the next slice of train.log."""
        runner = (remote_info(session) or {}).get("runner") or \
            f"{self.workdir.rstrip('/')}/runner/{_version()}/{RUNNER_NAME}"
        remote_dir = self.remote_dir(session)
        mirror = self._mirror(session)
        offset = mirror.offset
        script = (shlex.join([self.python, runner, "--probe", remote_dir]) +
                  f"; echo {LOG_MARK}; p={shlex.quote(remote_dir + '/train.log')}; "
                  f'if [ -r "$p" ]; then {slice_script("p", offset, 1 << 20)}; fi')
        result = await self.transport.invoke(script, timeout=30)
        text = result.stdout.decode(errors="replace")
        head, mark, tail = text.partition(f"\n{LOG_MARK}\n")
        try:
            answer = json.loads(head)
        except ValueError:
            raise ProviderError(f"{self.label}: unreadable answer from the runner probe"
                                ) from None
        self._probes[session.id] = (time.monotonic(), answer)
        keep_usage(session, answer.get("usage"))
        if answer.get("status") is not None:
            atomic_write(Path(session.session_dir) / LAST_STATUS,
                              json.dumps(answer["status"]))
        await self._sync_probed_log(session, answer, mark, tail, offset, mirror)
        if len(self.node_ids) > 1:  # the other nodes probed, a lost one healed; at the run's
            from .node_healing import heal  # end its instances released, once
            from .nodes import probe_nodes, release_at_end

            await probe_nodes(self, session, answer)
            await heal(self, session, answer, launched)
            await release_at_end(self, session, answer)
        return answer

    async def _sync_probed_log(self, session: Session, answer: dict, mark: str, tail: str,
                               offset: int, mirror: RemoteLogMirror) -> None:
        """The log slice the probe carried appended here; a backlog read further."""
        size = answer.get("log_size", 0)
        if size < offset:
            await mirror.sync(size)  # truncated there: the mirror says so and starts over
        elif mark and tail.strip():
            try:
                data, _ = parse_slice(tail, self.label)
            except SSMError:
                data = b""  # cut short: the mirror reads it in further commands
            if data:  # read just after the probe: may run past log_size, never short of it
                with open(mirror.local, "ab") as out:
                    out.write(data)
                mirror.save(offset + len(data))
            if size > mirror.offset:
                await mirror.sync(size)  # a backlog beyond one answer: further commands

    async def read_status(self, session: Session) -> dict | None:
        """The runner's status; after spot interruptions, with the attempts of the reclaimed
        instances in front."""
        return await _read_status_merged(self, session)

    def _mirror(self, session: Session) -> RemoteLogMirror:
        folder = Path(session.session_dir)
        return RemoteLogMirror(self.transport, f"{self.remote_dir(session)}/train.log",
                               folder / "train.log", folder / "remote.offset")

    # -- stopping ------------------------------------------------------------------------------

    async def _stop(self, session: Session, force: bool) -> str:
        try:
            if len(self.node_ids) > 1:  # every node at once: the head here, the others there
                from ...core import aio
                from .nodes import InstanceGroup

                group = InstanceGroup(self)
                others = list(enumerate(group.nodes_of(session)))[1:]
                done, _ = await aio.gather(super()._stop(session, force),
                                           group.stop_nodes(session, others, force=force))
                return done
            return await super()._stop(session, force)
        except SSMUnreachable as exc:
            line, _ = await self._unreachable_reason(exc)
            raise ProviderError(line) from None


def _version() -> str:
    from ..remote.runner import runner_version

    return runner_version()


def s3_checkpoint_uri(prefix: str, session_id: str) -> str:
    return f"{prefix.rstrip('/')}/{session_id}/checkpoints/"


def aws_shell(service, instance: Instance, *, has) -> list[str]:
    """A shell on an EC2 instance: SSM when the aws CLI and its session-manager-plugin are
    installed (no inbound port needed); else ssh to its address as its template's ssh_user.
    service: anything with the loaded config (`.config`)."""
    if has("aws") and has("session-manager-plugin"):
        return ["aws", "ssm", "start-session", "--target", instance.id,
                "--region", aws_api.region()]
    tags = instance.extra.get("tags", {})
    template = service.config.aws.templates.get(tags.get(TEMPLATE_TAG) or "default")
    if instance.address and instance.extra.get("key_name"):
        user = template.ssh_user if template else "ubuntu"
        return ssh_command(SSHTarget(name=instance.id, host=instance.address, user=user))
    raise TrainctlError("a shell on an EC2 instance needs the aws CLI with its "
                        "session-manager-plugin (SSM), or a key pair and a reachable address "
                        "for ssh")


async def delete_secrets(session_id: str) -> int:
    """Delete the session's SecureString parameters; how many there were."""
    ssm = aws_api.client("ssm")
    path = secret_path(session_id)

    def collect() -> list[str]:
        names, token = [], None
        while True:
            kwargs = {"Path": path, "Recursive": True, "MaxResults": 10}
            if token:
                kwargs["NextToken"] = token
            page = ssm.get_parameters_by_path(**kwargs)
            names += [p["Name"] for p in page.get("Parameters", [])]
            token = page.get("NextToken")
            if not token:
                return names

    names = await aws_api.call(f"listing the secrets of session {session_id}", collect)
    for start in range(0, len(names), 10):
        await aws_api.call(f"deleting the secrets of session {session_id}",
                           ssm.delete_parameters, Names=names[start:start + 10])
    return len(names)


# -- interruptions ------------------------------------------------------------------------------

def has_secrets(session: Session) -> bool:
    return (Path(session.session_dir) / "secret_env.json").exists()


def merged_attempts(records: list[dict], current: list[dict]) -> list[dict]:
    """Attempts on earlier (reclaimed) instances, then the current instance's, numbered on."""
    merged: list[dict] = []
    for record in records:
        attempts = [dict(a) for a in record.get("attempts") or []] or \
            [{"started": None, "ended": record.get("at")}]
        attempts[-1]["reason"] = interruption_reason(record)
        if attempts[-1].get("ended") is None:
            attempts[-1]["ended"] = record.get("at")
        merged += attempts
    merged += [dict(a) for a in current]
    for n, attempt in enumerate(merged, 1):
        attempt["n"] = n
    return merged


async def _read_status_merged(provider: AWSProvider, session: Session) -> dict | None:
    status = (await provider.probe(session)).get("status")
    # the instances reclaimed under the run; a multi-node run's lost nodes are not attempts
    records = [r for r in interruptions.load(session.session_dir) if "node" not in r]
    if not status or not records:
        return status
    if any(r["machine"] == provider.host for r in records):
        return status  # the reclaimed instance itself: its own view
    status = dict(status)
    status["attempts"] = merged_attempts(records, status.get("attempts") or [])
    status["attempt"] = len(status["attempts"])
    return status

