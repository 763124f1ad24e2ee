"""The kept-alive connections to the one upstream endpoint: at most ``limit`` at once, the
requests beyond that waiting for a free one; a connection idle for ``idle_timeout`` is closed,
and one the upstream closed is never handed out."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from s3proxy.upstream.connection import Connection
from s3proxy.upstream.httperrors import UpstreamError, UpstreamTimeout

# Opens a connection with the protocol the factory makes (upstream/dial.py).
Dial = Callable[[Callable[[], Connection]], Awaitable[Connection]]


@dataclass(frozen=True)
class PoolLimits:
    """How many connections, and how long each wait may last (seconds)."""

    limit: int = 256  # connections open at once
    idle_timeout: float = 15.0  # a kept-alive connection unused
    connect_timeout: float = 30.0  # the wait for a free connection plus opening one
    dial_timeout: float = 10.0  # opening one (TCP, a proxy's tunnel, TLS)
    read_timeout: float = 300.0  # the upstream's silence while an answer is awaited or read


DEFAULT_LIMITS = PoolLimits()


class Pool:
    """Connections to one endpoint. ``connect_timeout`` bounds the wait for a free one plus
    opening one; ``dial_timeout`` the opening alone (TCP, a proxy's tunnel, TLS)."""

    def __init__(self, dial: Dial, limits: PoolLimits = DEFAULT_LIMITS) -> None:
        self._dial = dial
        self._limit = limits.limit
        self._idle_timeout = limits.idle_timeout
        self._connect_timeout = limits.connect_timeout
        self._dial_timeout = limits.dial_timeout
        self._read_timeout = limits.read_timeout
        self._idle: list[Connection] = []  # the most recently used last
        self._all: set[Connection] = set()  # every open connection (each holds a place)
        self._opening = 0  # places held by connections being opened
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def size(self) -> int:
        """Connections open or being opened."""
        return len(self._all) + self._opening

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def acquire(self, fresh: bool = False) -> Connection:
        """A connection for one request: an idle one (unless ``fresh``), else a new one, else
        the next one freed."""
        idle = self._idle
        while idle and not fresh:
            conn = idle.pop()
            if conn.usable:
                return conn
            conn.close()
        if self._closed:
            raise RuntimeError("the upstream client is closed")
        try:
            async with asyncio.timeout(self._connect_timeout):
                return await self._new_or_freed(fresh)
        except UpstreamError:
            raise
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"No upstream connection in {self._connect_timeout:g} s "
                f"({self.size} of {self._limit} open)."
            ) from exc

    async def _new_or_freed(self, fresh: bool) -> Connection:
        while True:
            if self.size < self._limit:
                self._opening += 1
                return await self._open()
            waiter: asyncio.Future[Connection | None]
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                got = await waiter
            except BaseException:
                self._give_back(waiter)
                raise
            if got is None:  # a place, handed over
                return await self._open()
            if got.usable and not fresh:
                return got
            got.close()

    async def _open(self) -> Connection:
        """A new connection in the place held in ``_opening``."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._dial_timeout):
                conn = await self._dial(lambda: Connection(self, loop, self._read_timeout))
        except TimeoutError as exc:
            self._opened(None)
            if isinstance(exc, UpstreamError):
                raise
            raise UpstreamTimeout(
                f"Connecting to the upstream took more than {self._dial_timeout:g} s."
            ) from exc
        except BaseException:
            self._opened(None)
            raise
        self._opened(conn)
        return conn

    def _opened(self, conn: Connection | None) -> None:
        self._opening -= 1
        if conn is not None and not conn.closed:
            self._all.add(conn)
        else:
            self._free_place()

    def _give_back(self, waiter: asyncio.Future[Connection | None]) -> None:
        """A waiter gave up (timeout, cancelled): what it was handed goes to the next."""
        if not waiter.done():
            waiter.cancel()
            self._waiters.remove(waiter)
        elif not waiter.cancelled():
            got = waiter.result()
            if got is None:
                self._opening -= 1
                self._free_place()
            else:
                self.put(got)

    # -- the connections' side -------------------------------------------------------------

    def put(self, conn: Connection) -> None:
        if self._closed or not conn.usable:
            conn.close()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        loop = conn.loop
        conn.idle_since = loop.time()
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = loop.call_at(conn.idle_since + self._idle_timeout, self._close_idle)

    def forget(self, conn: Connection) -> None:
        if conn in self._all:
            self._all.discard(conn)
            if conn in self._idle:
                self._idle.remove(conn)
            self._free_place()

    def _free_place(self) -> None:
        """A place is free: handed to the first waiter (who opens a connection in it)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._opening += 1
                waiter.set_result(None)
                return

    def _close_idle(self) -> None:
        """Close the connections idle for ``idle_timeout``; the timer moves on to the next."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        limit = loop.time() - self._idle_timeout
        idle = self._idle
        while idle and idle[0].idle_since <= limit:
            idle[0].close()  # (forget takes it off the list)
            if idle and idle[0].closed:
                idle.pop(0)
        if idle:
            self._sweep = loop.call_at(idle[0].idle_since + self._idle_timeout, self._close_idle)

    async def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._all):
            conn.abort()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.cancel()
