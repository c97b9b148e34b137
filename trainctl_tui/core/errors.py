"""Errors a user can cause. The CLI prints their message on one line and exits 2."""


class TrainctlError(Exception):
    """A problem the user can fix; str(error) is the whole message."""

    exit_code = 2


class ConfigError(TrainctlError):
    """Bad config file or value. Message starts with 'config error:'."""


class SessionNotFound(TrainctlError):
    def __init__(self, ref: str):
        super().__init__(f"no session '{ref}' (see trainctl sessions)")
        self.ref = ref


class StopFailed(TrainctlError):
    """A stop was sent but something of the session is still alive; the message lists it."""

    exit_code = 1
