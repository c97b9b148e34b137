"""Service calls off the event loop: one Service (and SQLite connection) per worker thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from ..app.service import Service


class Backend:
    def __init__(self, factory: Callable[[], Service] = Service):
        self._factory = factory
        self._local = threading.local()

    def service(self) -> Service:
        service = getattr(self._local, "service", None)
        if service is None:
            service = self._local.service = self._factory()
        return service

    async def call(self, name: str, *args, **kwargs):
        """Await `Service.<name>(*args)` in a thread; coroutines run on that thread's own loop."""
        return await asyncio.to_thread(self._call_sync, name, args, kwargs)

    def _call_sync(self, name: str, args, kwargs):
        result = getattr(self.service(), name)(*args, **kwargs)
        if asyncio.iscoroutine(result):
            return asyncio.run(result)
        return result

    async def run(self, function: Callable, *args):
        """Run a plain blocking function in a thread, given this thread's Service first."""
        return await asyncio.to_thread(lambda: function(self.service(), *args))
