"""Host name look-ups for new upstream connections, kept for a minute (as aiohttp's
``ttl_dns_cache=60`` did) and shared by the connections opened meanwhile, so a burst of new
connections asks the resolver once."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

Address = tuple[int, str]  # (address family, address)


class Addresses:
    """The addresses of host names, each looked up at most once per ``ttl`` seconds."""

    def __init__(self, ttl: float = 60.0) -> None:
        self._ttl = ttl
        self._found: dict[tuple[str, int], tuple[float, list[Address]]] = {}
        self._pending: dict[tuple[str, int], asyncio.Future[list[Address]]] = {}

    async def of(self, host: str, port: int) -> list[Address]:
        """``host``'s addresses, in the resolver's order (an IP address: itself)."""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            return [(family, host)]
        loop = asyncio.get_running_loop()
        key = (host, port)
        found = self._found.get(key)
        if found is not None and found[0] > loop.time():
            return found[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = self._pending[key] = loop.create_future()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses: list[Address] = list(
                dict.fromkeys((int(info[0]), str(info[4][0])) for info in infos)
            )
            self._found[key] = (loop.time() + self._ttl, addresses)
            pending.set_result(addresses)
            return addresses
        except Exception as exc:
            pending.set_exception(exc)
            pending.exception()  # (retrieved: the waiters, if any, get it too)
            raise
        except BaseException:  # (cancelled: those waiting for it try again themselves)
            pending.set_exception(OSError(f"the look-up of {host} was given up"))
            pending.exception()
            raise
        finally:
            del self._pending[key]
