"""A Slurm login node for tests: a real sshd on 127.0.0.1 (tests/sshd.py) in a mount
namespace of its own, whose sessions reach the test cluster (SLURM_CONF set for them, as a
real login node has /etc/slurm). Two folders look different there than on the compute nodes:

- `login_only`: a tmpfs only the login node sees (a workdir not shared with the compute
  nodes: the job cannot find its session folder);
- `read_only`: a read-only tmpfs (a workdir the user cannot write).

Use it with `from slurm_login import login_node` (module-scoped, needs `slurm_cluster`)."""

from __future__ import annotations

import shutil

import pytest
from sshd import SshServer, find_sshd, missing


class LoginNode(SshServer):
    def __init__(self, root, sshd: str, slurm_conf: str):
        super().__init__(root, sshd)
        self.login_only = root / "login-only"
        self.read_only = root / "read-only"
        for folder in (self.login_only, self.read_only):
            folder.mkdir()
        config = self.sshd_config.read_text()
        assert "SetEnv PYENV_REHASH_TIMEOUT=1\n" in config
        self.sshd_config.write_text(config.replace(
            "SetEnv PYENV_REHASH_TIMEOUT=1\n",
            f"SetEnv PYENV_REHASH_TIMEOUT=1 SLURM_CONF={slurm_conf}\n"))

    def argv(self) -> list[str]:
        mounts = ('mount -t tmpfs tmpfs "$1" && mount -t tmpfs -o ro tmpfs "$2" && shift 2 && '
                  'exec "$@"')
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", mounts, "sh",
                str(self.login_only), str(self.read_only), *super().argv()]


@pytest.fixture(scope="module")
def login_node(slurm_cluster, tmp_path_factory):
    sshd = find_sshd()
    if sshd is None:
        missing("sshd is not installed (apt-get install openssh-server)")
    for tool in ("ssh", "ssh-keygen", "unshare"):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed")
    server = LoginNode(tmp_path_factory.mktemp("login"), sshd, str(slurm_cluster.conf_path))
    server.start()
    try:
        yield server
    finally:
        server.stop()
