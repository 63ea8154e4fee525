"""Name resolution with a short cache: numeric hosts never reach a resolver."""

from __future__ import annotations

import _socket
import errno
import time
from typing import Any

import gevent
from gevent import socket as gsocket

#: How long a name's addresses are reused before asking the resolver again.
RESOLVE_TTL_S = 10.0

#: (address family, socket address) as ``socket.connect`` takes it
Address = tuple[int, Any]


def numeric_family(host: str) -> int | None:
    """The address family of a numeric host, or None for a name."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
            return family
        except OSError:
            continue
    return None


class Resolver:
    """Addresses per (host, port): numeric hosts never reach a resolver; names
    go through gevent's (a thread pool round trip each) once per TTL.

    A harness connects to the same few hosts thousands of times a second;
    asking the resolver each time cost about 100 µs of CPU and up to seconds
    of queueing in the resolver's thread pool during a spawn.
    """

    def __init__(self, ttl: float = RESOLVE_TTL_S) -> None:
        self.ttl = ttl
        self._cache: dict[tuple[str, int], tuple[float, list[Address]]] = {}

    def addresses(self, host: str, port: int, timeout: float | None = None) -> list[Address]:
        """The addresses of ``host``; ``TimeoutError`` when the resolver takes over ``timeout``."""
        family = numeric_family(host)
        if family is not None:
            return [(family, (host, port))]
        key = (host, port)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        with gevent.Timeout(timeout, TimeoutError(errno.ETIMEDOUT, "name resolution timed out")):
            infos = gsocket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM)
        addrs = [(fam, sockaddr) for fam, _type, _proto, _canon, sockaddr in infos
                 if fam in (_socket.AF_INET, _socket.AF_INET6)]
        if not addrs:
            raise OSError(errno.EADDRNOTAVAIL, "no address for host")
        self._cache[key] = (now + self.ttl, addrs)
        return addrs
