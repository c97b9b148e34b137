"""Running the service's coroutines from the command line without paying for asyncio.

Work on this machine (the store, status files, signals) never waits on a network, yet importing
asyncio (and ssl with it) costs more than a whole `trainctl sessions`. So the CLI drives such a
coroutine by hand (`run(..., local=True)`). Code on those paths waits with `sleep` and runs
side by side with `gather` from here: asyncio's when an event loop runs (the TUI, remote
work), a plain blocking wait and a sequence when none does.
"""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False  # as typing.TYPE_CHECKING; importing typing would slow start-up
if TYPE_CHECKING:
    from collections.abc import Awaitable, Coroutine
    from typing import Any, TypeVar

    T = TypeVar("T")


class _Sleep:
    """What a coroutine driven by `run` yields to ask for a blocking sleep."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __await__(self):
        yield self


def loop_running() -> bool:
    asyncio = sys.modules.get("asyncio")  # not imported: certainly no loop
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def sleep(seconds: float) -> None:
    if loop_running():
        import asyncio

        await asyncio.sleep(seconds)
    else:
        await _Sleep(seconds)


async def gather(*awaitables: Awaitable[Any]) -> list[Any]:
    if loop_running():
        import asyncio

        return list(await asyncio.gather(*awaitables))
    return [await awaitable for awaitable in awaitables]


def run(coroutine: Coroutine[Any, Any, T], *, local: bool = False) -> T:
    """The coroutine's result: under asyncio, or with `local` (nothing it does waits on a
    network) driven by hand, without importing asyncio."""
    if not local:
        import asyncio

        return asyncio.run(coroutine)
    try:
        while True:
            step = coroutine.send(None)
            if isinstance(step, _Sleep):
                time.sleep(step.seconds)
            elif step is not None:  # an asyncio future: a bug in what `local` promised
                coroutine.close()
                raise RuntimeError(f"{coroutine.__qualname__} waited on {step!r}, "
                                   "which needs an event loop")
    except StopIteration as done:
        return done.value


async def call_optional(obj, capability: str, *args):
    """`obj.capability(*args)` awaited when obj has it (an optional capability of a backend),
    else None."""
    method = getattr(obj, capability, None)
    return await method(*args) if method is not None else None
