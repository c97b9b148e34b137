"""The ssh backend as the front ends see it: one launch place per configured host."""

from __future__ import annotations

from ..declaration import Declaration


class SSHDeclaration(Declaration):
    name = "ssh"
    lists_hosts = True
    needs_target = ("ssh needs a host: --provider ssh:NAME (a [ssh.hosts.NAME] in the config, "
                    "or an alias from ~/.ssh/config)")

    log_url_scheme = "ssh://"
    nodes_place = "ssh:GROUP"

    @property
    def options(self):  # built on first use: `sessions` never asks
        from ...core.options import LAUNCH, Option

        return (Option("nodes", "--nodes", help="ssh: nodes of a group run, one host each "
                       "(--provider ssh:GROUP or ssh:a,b,c; default: every host)",
                       metavar="N|MIN:MAX", fills="spec", commands=(LAUNCH,), forms=()),)

    def configured(self, config) -> bool:
        return bool(config.ssh.hosts)

    def hosts(self, config) -> list[str]:
        return sorted(config.ssh.hosts)

    async def probe_hosts(self, config) -> list:
        from ...core import aio
        from ..remote.transport import resolve_target
        from .provider import probe_host

        hosts = config.ssh.hosts
        return list(await aio.gather(*(probe_host(resolve_target(name, hosts))
                                       for name in sorted(hosts))))

    def host_shell(self, config, name: str) -> list[str]:
        from ..remote.transport import resolve_target, ssh_command

        return ssh_command(resolve_target(name, config.ssh.hosts))

    def log_mirror(self, config, url: str):
        """ssh://[user@]host[:port]/path: refused in one line when malformed."""
        from .provider import mirror_for_url

        return mirror_for_url(url, config.ssh.hosts)

    def launch_places(self, config, rents: bool) -> list:
        from ...core.options import Place  # not at the top: `trainctl sessions` loads this

        hosts = config.ssh.hosts
        return [Place(f"{self.name}:{name}", describe_host(hosts[name])) for name in sorted(hosts)]


def describe_host(host) -> str:
    """'me@gpu-box:2222 · workdir ~/.trainctl · python3' for the launch form."""
    port = f":{host.port}" if host.port and host.port != 22 else ""
    user = f"{host.user}@" if host.user else ""
    return f"{user}{host.host}{port} · workdir {host.workdir} · {host.python}"
