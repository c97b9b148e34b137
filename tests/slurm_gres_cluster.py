"""A private Slurm cluster whose nodes declare GPUs (GRES), for what `sinfo` prints about them.

The same daemons as tests/slurm_cluster.py, with `GresTypes=gpu` and
`SlurmdParameters=config_overrides`, so slurmd takes the node's layout from slurm.conf (two
sockets of four cores) and its GPUs from gres.conf, where each GPU is an empty file standing in
for /dev/nvidiaN (no cgroups here: nothing opens them). Slurm schedules and counts them as
real ones:

- node1: `gpu:a100:4(S:0-1)`, two A100s on each socket; the only node of `debug`;
- node2: `gpu:a100:2(S:0),gpu:v100:2(S:1)`; `pair` has both nodes.

`gres_cluster` (module scope) starts one beside the session's `slurm_cluster`.
"""

from __future__ import annotations

import pytest
from slurm_cluster import NODES, SlurmCluster, find_programs
from sshd import missing

SOCKETS, CORES_PER_SOCKET = 2, 4
NODE_GPUS = {  # node -> [(type, count, socket)]
    "node1": [("a100", 2, 0), ("a100", 2, 1)],
    "node2": [("a100", 2, 0), ("v100", 2, 1)],
}


class GresCluster(SlurmCluster):
    def slurm_conf(self) -> str:
        conf = super().slurm_conf()
        self._write_gres_conf()
        conf = conf.replace("AuthType=", "GresTypes=gpu\nSlurmdParameters=config_overrides\n"
                            "AuthType=", 1)
        for node in NODES:
            gres = ",".join(f"gpu:{kind}:{total}" for kind, total in self.gpu_totals(node))
            conf = conf.replace(
                f"NodeName={node} NodeHostname=", f"NodeName={node} Gres={gres} "
                f"Sockets={SOCKETS} CoresPerSocket={CORES_PER_SOCKET} ThreadsPerCore=1 "
                "NodeHostname=")
        # The declared layout, not slurmd -C's two CPUs (config_overrides trusts it).
        return conf.replace(f" CPUs={self.cpus} ", " ")

    @staticmethod
    def gpu_totals(node: str) -> list[tuple[str, int]]:
        totals: dict[str, int] = {}
        for kind, count, _socket in NODE_GPUS[node]:
            totals[kind] = totals.get(kind, 0) + count
        return list(totals.items())

    def _write_gres_conf(self) -> None:
        devices = self.dir / "dev"
        devices.mkdir(exist_ok=True)
        lines = ["AutoDetect=off"]
        for node, groups in NODE_GPUS.items():
            index = 0
            for kind, count, socket in groups:
                files = []
                for _ in range(count):
                    path = devices / f"{node}-nvidia{index}"
                    path.write_text("")
                    files.append(str(path))
                    index += 1
                cores = f"{socket * CORES_PER_SOCKET}-{(socket + 1) * CORES_PER_SOCKET - 1}"
                lines += [f"NodeName={node} Name=gpu Type={kind} File={file} Cores={cores}"
                          for file in files]
        (self.dir / "gres.conf").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def gres_cluster(tmp_path_factory):
    import os

    programs = find_programs()
    if os.geteuid() != 0:
        missing("the test Slurm cluster runs its daemons as root (SlurmUser=root)")
    cluster = GresCluster(tmp_path_factory.mktemp("slurm-gres"), programs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
