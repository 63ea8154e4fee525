"""The token call measures the target, not the harness's own queue.

A real HTTP server on loopback (gevent's ``StreamServer``, no patching of
this process) that answers every token request after a known delay and
records how long it held each one: that is the ground truth the token
latency must match. With a connection pool of one and a burst of requests,
the requests queue inside the harness; that wait must show up as harness
wait, never as token latency.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import gevent
import orjson
import pytest
from gevent.server import StreamServer

from loadkit.errors import ConnectFailed, ConnectRefused, HttpStatusError
from loadkit.lifecycle import Lifecycle
from loadkit.metrics.recorder import HARNESS_WAIT, Recorder
from loadkit.protocol import get_profile
from loadkit.protocol.base import TokenRequest
from loadkit.session import LiveSessions, SessionDriver
from loadkit.settings import HarnessSettings
from loadkit.transport import GeventTransport, HarnessBusy, HttpAnswer

DELAY_S = 0.05


class SlowTokenServer:
    """HTTP/1.1 keep-alive, one grant per request, each answered DELAY_S after it arrived."""

    def __init__(self, delay: float = DELAY_S, answer: bool = True) -> None:
        self.delay = delay
        self.answer = answer
        self.held: list[float] = []  # per request: arrival of the whole request → answer sent
        self.connections = 0
        self.server = StreamServer(("127.0.0.1", 0), self._handle)

    def __enter__(self) -> SlowTokenServer:
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(timeout=1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/token"

    def _handle(self, sock: Any, _addr: Any) -> None:
        self.connections += 1
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += sock.recv(65536)
                buf = buf[length:]
                arrived = time.perf_counter()
                if not self.answer:
                    gevent.sleep(30)
                    return
                gevent.sleep(self.delay)
                body = orjson.dumps({"guestId": "g1", "token": "t1", "expiresAt": int(time.time()) + 600})
                sock.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                self.held.append(time.perf_counter() - arrived)
        finally:
            sock.close()


@pytest.fixture
def transport() -> Iterator[GeventTransport]:
    t = GeventTransport(open_timeout=5, http_timeout=2, http_pool=1)
    try:
        yield t
    finally:
        t.close()


def request(url: str) -> TokenRequest:
    return TokenRequest("POST", url, b'{"displayName":"x"}', (("Content-Type", "application/json"),))


def test_with_a_tiny_pool_and_a_burst_token_latency_is_the_servers_and_the_queue_is_harness_wait(
        transport: GeventTransport) -> None:
    with SlowTokenServer() as server:
        answers: list[HttpAnswer] = []
        jobs = [gevent.spawn(lambda: answers.append(transport.http(request(server.url)))) for _ in range(10)]
        gevent.joinall(jobs, timeout=10, raise_error=True)

    assert len(answers) == 10 and all(a.status == 201 for a in answers)
    assert server.connections == 1  # one kept-alive connection served the burst in turn
    assert len(server.held) == 10
    # on the wire: what the server held each request, plus loopback (a few ms at most)
    for a in answers:
        assert DELAY_S * 0.9 <= a.wire_s < max(server.held) + 0.03, (a.wire_s, server.held)
    waits = sorted(a.waited_s for a in answers)
    assert waits[0] < 0.01  # the first found the connection free
    assert waits[-1] >= 8 * DELAY_S  # the last waited for nine answers before it
    # together they account for the burst: nothing is lost between the two figures
    assert max(a.waited_s + a.wire_s for a in answers) >= 10 * DELAY_S * 0.95


def test_the_driver_records_wire_time_as_token_latency_and_the_queue_as_harness_wait() -> None:
    class Fake:
        now = staticmethod(time.perf_counter)

        def http(self, _req: TokenRequest) -> HttpAnswer:
            body = orjson.dumps({"guestId": "g1", "token": "t1", "expiresAt": int(time.time()) + 600})
            return HttpAnswer(201, body, 0.012, 0.750)

    rec = Recorder()
    driver = SessionDriver(Fake(), get_profile("guest"), rec, HarnessSettings(), "http://127.0.0.1:1",
                           LiveSessions(), rng=random.Random(1))
    driver._token(Lifecycle(time.perf_counter()), None, 1)
    assert rec.latency["token"].count == 1 and 11_900 <= rec.latency["token"].max <= 12_000
    assert rec.latency[HARNESS_WAIT].count == 1 and rec.latency[HARNESS_WAIT].max == 750_000


def test_a_refusal_is_the_targets_and_keeps_its_status(transport: GeventTransport) -> None:
    class Refuse(SlowTokenServer):
        def _handle(self, sock: Any, _addr: Any) -> None:
            sock.recv(65536)
            sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
            sock.close()

    with Refuse() as server:
        answer = transport.http(request(server.url))
    assert (answer.status, answer.body) == (503, b"busy")

    class Fake:
        now = staticmethod(time.perf_counter)

        def http(self, _req: TokenRequest) -> HttpAnswer:
            return answer

    driver = SessionDriver(Fake(), get_profile("guest"), Recorder(), HarnessSettings(), "http://127.0.0.1:1",
                           LiveSessions(), rng=random.Random(1))
    with pytest.raises(HttpStatusError) as info:
        driver._token(Lifecycle(time.perf_counter()), None, 1)
    assert info.value.status == 503


def test_a_token_endpoint_that_never_answers_fails_within_the_http_timeout() -> None:
    transport = GeventTransport(open_timeout=5, http_timeout=0.5, http_pool=1)
    try:
        with SlowTokenServer(answer=False) as server:
            t0 = time.monotonic()
            with pytest.raises(ConnectFailed, match="timeout"):
                transport.http(request(server.url))
            assert 0.45 <= time.monotonic() - t0 < 3.0  # http_timeout=0.5 (open_timeout, 5 s, is not what ended it)
    finally:
        transport.close()


def test_a_wait_for_the_pool_beyond_the_connect_timeout_is_the_harnesss_not_the_targets() -> None:
    t = GeventTransport(open_timeout=0.3, http_timeout=5, http_pool=1)
    try:
        with SlowTokenServer(delay=1.0) as server:
            first = gevent.spawn(t.http, request(server.url))
            gevent.sleep(0.05)
            with pytest.raises(HarnessBusy, match="pool of 1"):
                t.http(request(server.url))
            assert first.get(timeout=5).status == 201
    finally:
        t.close()


def test_nothing_listening_is_a_refused_connection(transport: GeventTransport) -> None:
    with SlowTokenServer() as server:
        url = server.url
    with pytest.raises(ConnectRefused):
        transport.http(request(url))


def test_a_kept_alive_connection_the_server_closed_is_replaced_without_a_failure(
        transport: GeventTransport) -> None:
    class OneShot(SlowTokenServer):
        """Answers with keep-alive, then closes the connection anyway (as idle timeouts do)."""

        def _handle(self, sock: Any, addr: Any) -> None:
            self.connections += 1
            sock.recv(65536)
            body = b'{"guestId":"g","token":"t","expiresAt":9999999999}'
            sock.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            gevent.sleep(0.05)
            sock.close()

    with OneShot() as server:
        assert transport.http(request(server.url)).status == 201
        gevent.sleep(0.2)
        assert transport.http(request(server.url)).status == 201
    assert server.connections == 2
