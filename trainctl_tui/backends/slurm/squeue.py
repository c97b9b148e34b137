"""The user's queue from `squeue`: job, state, time, limit, nodes, partition, reason and name
per line. The name comes last, so a '|' in it stays part of it."""

from __future__ import annotations

from ...core.clusters import QueuedJob

SQUEUE_FORMAT = "%i|%T|%M|%l|%D|%P|%r|%j"
SQUEUE_ARGV = ["squeue", "-h", "-o", SQUEUE_FORMAT]  # then -u USER


def parse_squeue(text: str) -> list[QueuedJob]:
    jobs = []
    for line in text.splitlines():
        fields = line.split("|", 7)
        if len(fields) < 8 or not fields[0].strip():
            continue
        job, state, used, limit, nodes, partition, reason, name = (f.strip() for f in fields)
        jobs.append(QueuedJob(id=job, name=name, state=state,
                              reason="" if reason == "None" else reason, time=used,
                              time_limit=limit, nodes=int(nodes) if nodes.isdigit() else 0,
                              partition=partition))
    return jobs
