"""Where a session runs, parsed once: the provider string "kind" or "kind:target" ("local",
"ssh:gpu-box", "aws:i-0abc…", "aws:a10g" for a template, "runpod:POD"). Every layer reads the
parts from here instead of splitting the string itself."""

from __future__ import annotations


class Placement:
    """The backend `kind`, its `target` (a host, an instance, a template; "" for none) and the
    `nodes` the run spans: one node, the target, until multi-node runs say otherwise."""

    __slots__ = ("kind", "target", "nodes")  # a plain class: dataclasses cost start-up time

    def __init__(self, kind: str, target: str = "", nodes: tuple[str, ...] | None = None):
        self.kind = kind
        self.target = target
        self.nodes = tuple(nodes) if nodes is not None else (target,)

    @classmethod
    def parse(cls, provider: str) -> Placement:
        kind, _, target = provider.partition(":")
        return cls(kind, target)

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind

    def __repr__(self) -> str:
        return f"Placement({self.kind!r}, {self.target!r}, nodes={self.nodes!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Placement) and \
            (self.kind, self.target, self.nodes) == (other.kind, other.target, other.nodes)

    def __hash__(self) -> int:
        return hash((self.kind, self.target, self.nodes))


def machine_of(session) -> str:
    """The machine a session runs on: its host, else the target of its provider string."""
    return session.host or Placement.parse(session.provider).target
