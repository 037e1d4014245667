"""A TCP proxy between a worker and PostgreSQL that loses commit acknowledgements: it passes
every byte through, but for every ``every``-th ``COMMIT``, and for every COMMIT of a group
commit (one transaction writing the transitions of several executions), up to ``cuts``
times, it forwards the statement, waits for the server's answer (so the transaction is
committed), and then closes both sides instead of passing the answer on. The client sees
its connection die during COMMIT and cannot know whether the transaction committed; it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field

# The server's CommandComplete for a COMMIT: tag "COMMIT" and its NUL.
_COMMITTED = b"COMMIT\x00"
# A key of each execution's row in a transition's lease-fenced UPDATE
# (conveyor.store.transitions), sent as one JSON parameter: counted per transaction.
_TRANSITION = b'"lease_seconds":'


@dataclass(eq=False)
class _Link:
    """One client connection: whether the answer to a COMMIT it sent is to be withheld."""

    withhold: bool = False
    closed: bool = False
    transitions: int = 0  # in the transaction under way
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def close(self) -> None:
        self.closed = True
        for writer in self.writers:
            writer.close()


class CommitCutter:
    def __init__(self, target_port: int, *, every: int, cuts: int, port: int = 0) -> None:
        """``port``: where to listen (0: any free port); ``cuts`` 0 makes a plain proxy."""
        self.target_port = target_port
        self.every = every
        self.cuts = cuts
        self.commits = 0
        self.cut = 0  # acknowledgements withheld so far
        self.cut_groups = 0  # of which group commits
        self.port = port
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        listening = asyncio.start_server(self._handle, "127.0.0.1", self.port)
        server = self._loop.run_until_complete(listening)
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self._ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        for link in list(self._links):
            link.close()
        for link in list(self._links):
            for writer in link.writers:
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        link = _Link(writers=[writer, up_writer])
        self._links.add(link)
        try:
            await asyncio.gather(
                self._requests(reader, up_writer, link),
                self._answers(up_reader, writer, link),
                return_exceptions=True,
            )
        finally:
            link.close()
            self._links.discard(link)

    async def _requests(
        self, reader: asyncio.StreamReader, up: asyncio.StreamWriter, link: _Link
    ) -> None:
        while not link.closed and (data := await reader.read(65536)):
            link.transitions += data.count(_TRANSITION)
            if b"COMMIT" in data and self.cut < self.cuts:
                self.commits += 1
                group = link.transitions > 1
                link.withhold = group or self.commits % self.every == 0
                self.cut_groups += group
            if b"COMMIT" in data:
                link.transitions = 0
            up.write(data)
            await up.drain()
        link.close()

    async def _answers(
        self, up: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        while not link.closed and (data := await up.read(65536)):
            if link.withhold and _COMMITTED in data:
                self.cut += 1
                link.close()  # committed on the server; the client never hears of it
                return
            writer.write(data)
            await writer.drain()
        link.close()
