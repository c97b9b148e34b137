"""trainctl runner: supervises one training command for one session folder.

Stdlib only and Python 3.7+: these modules are shipped to SSH hosts, pods and EC2 instances as
one zipapp together with the checkpoint inspector (see bundle.py) and run there as
``python3 trainctl-runner.pyz [--detach] SESSION_DIR``. Never import the rest of trainctl_tui here.

The session folder holds ``spec.json`` (what to run), optional ``secret_env.json`` (env vars that
are never logged), ``status.json`` (written atomically by this runner at every state change and
heartbeat), ``train.log`` (the training's own stdout/stderr, appended directly by the child) and
``runner.log`` (this runner's stderr when detached).

On cloud instances (all optional spec keys; absent = none of this happens):
``spot_notice_url`` polls IMDSv2 for a spot interruption notice (SIGTERM the training, sync its
checkpoint, end ``interrupted``); ``s3_checkpoint_uri`` uploads each finished checkpoint once with
the aws CLI and a ``.trainctl-complete`` marker; an ``s3://`` ``resume_from`` is downloaded
first; ``autostop_minutes`` runs ``autostop_command`` once the machine has been idle that long.

Signals: SIGTERM/SIGINT = graceful stop (SIGTERM to the training's process group, SIGKILL after
``grace_seconds``), a second one or SIGUSR1 = force stop (SIGKILL now), SIGHUP is ignored.
"""

from __future__ import annotations
