"""The reference gateway over loopback: every rule of the contract, and ground truth.

Each test starts its own gateway process with short timers (``--set``), speaks
to it with websockets' sync client and urllib, and then checks that
``/_gateway/stats`` recorded exactly the close the client saw: code, reason,
who closed first, and the phase. A gateway that logs anything to stderr in a
test that expects silence fails the test: plain HTTP and closes must not
produce log noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from collections import Counter
from dataclasses import dataclass
from itertools import islice
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from loadkit.gateway import GatewayProcess, load_settings
from loadkit.gateway.faults import FaultPlan
from loadkit.gateway.tokens import TokenSigner

pytestmark = [pytest.mark.timeout(30), pytest.mark.slow]  # each test starts a gateway process

SECRET = "gateway-test-secret"
FAST = {"agent_think_s": "0.01,0.02", "secret": SECRET}


@pytest.fixture
def start() -> Iterator[Any]:
    """Start gateways with settings; stop them all afterwards and check they stayed quiet."""
    started: list[GatewayProcess] = []

    def _start(quiet: bool = True, seed: int = 1, **settings: Any) -> GatewayProcess:
        gw = GatewayProcess(settings={**FAST, **{k.replace("__", "."): v for k, v in settings.items()}}, seed=seed)
        gw.quiet = quiet  # type: ignore[attr-defined]
        started.append(gw)
        gw.start()
        return gw

    try:
        yield _start
    finally:
        for gw in started:
            gw.stop()
    for gw in started:
        assert gw.returncode == 0
        if gw.quiet:  # type: ignore[attr-defined]
            assert gw.stderr_text() == ""


def _shared(**settings: Any) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(settings={**FAST, **settings}, seed=1)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()
    assert gw.returncode == 0 and gw.stderr_text() == ""


@pytest.fixture(scope="module")
def default_gw() -> Iterator[GatewayProcess]:
    """One default gateway shared by the cases that check deltas of the stats."""
    yield from _shared()


@pytest.fixture(scope="module")
def explicit_gw() -> Iterator[GatewayProcess]:
    yield from _shared(auth_failure="explicit")


# --- client side helpers -----------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """How a connection ended, from the client's side."""

    code: int
    reason: str
    initiator: str
    frames: tuple[dict[str, Any], ...]


def ws(gw: GatewayProcess, **kwargs: Any) -> ClientConnection:
    """A client connection (``legacy=True``: usable with or without ``with``)."""
    return connect(gw.ws_url, compression=None, proxy=None, open_timeout=5, close_timeout=2,
                   max_size=None, legacy=True, **kwargs)


def send(conn: ClientConnection, frame: dict[str, Any]) -> None:
    conn.send(json.dumps(frame))


def recv(conn: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    return json.loads(conn.recv(timeout=timeout))  # type: ignore[no-any-return]


def until_closed(conn: ClientConnection, timeout: float = 5) -> Seen:
    """Read until the connection ends; what frames came first, and what close."""
    frames = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            frames.append(json.loads(conn.recv(timeout=max(0.01, deadline - time.monotonic()))))
    except ConnectionClosed as exc:
        if exc.rcvd is None and exc.sent is None:
            return Seen(1006, "", "none", tuple(frames))
        if exc.rcvd is not None and exc.rcvd_then_sent is not False:
            return Seen(exc.rcvd.code, exc.rcvd.reason, "server", tuple(frames))
        assert exc.sent is not None
        return Seen(exc.sent.code, exc.sent.reason, "client", tuple(frames))


def login(gw: GatewayProcess, conn: ClientConnection) -> dict[str, Any]:
    guest = gw.token()
    send(conn, {"type": "auth", "guestId": guest["guestId"], "token": guest["token"]})
    ok = recv(conn)
    assert ok["type"] == "auth_ok" and ok["guestId"] == guest["guestId"]
    return ok


def stats_after(gw: GatewayProcess, closed: int, timeout: float = 5) -> dict[str, Any]:
    """Stats once ``closed`` sessions were recorded (the server records just after the client sees it)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = gw.stats()
        if stats["sessions"]["closed"] >= closed or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


def close_counts(stats: dict[str, Any] | None) -> Counter[tuple[Any, ...]]:
    if stats is None:
        return Counter()
    return Counter({(c["code"], c["reason"], c["initiator"], c["phase"]): c["count"] for c in stats["closes"]})


def assert_recorded(gw: GatewayProcess, seen: Seen, phase: str, before: dict[str, Any] | None = None) -> dict[str, Any]:
    """The gateway counted exactly the close this client saw, and nothing else (since ``before``)."""
    closed_before = before["sessions"]["closed"] if before else 0
    stats = stats_after(gw, closed_before + 1)
    new = close_counts(stats) - close_counts(before)
    assert new == Counter({(seen.code, seen.reason, seen.initiator, phase): 1})
    sessions = stats["sessions"]
    assert sessions["opened"] == sessions["closed"] + sessions["open"]
    assert sessions["closed"] == closed_before + 1
    return stats


def forge(guest_id: str, expires_in: float = 60, scopes: tuple[str, ...] = ("guest:chat",), secret: str = SECRET) -> str:
    return TokenSigner(secret).issue(guest_id, time.time() + expires_in, list(scopes))


# --- HTTP -----------------------------------------------------------------------------


def tokens_since(gw: GatewayProcess, before: dict[str, Any]) -> dict[str, Any]:
    """The gateway's token counts since ``before`` (its ``tokens`` then): what this test did on a shared gateway."""
    now = gw.stats()["tokens"]
    return {"issued": now["issued"] - before["issued"],
            "refused": {status: n - before["refused"][status] for status, n in now["refused"].items()}}


def test_token_endpoint_issues_signed_tokens_and_counts_them(default_gw: GatewayProcess) -> None:
    gw, before = default_gw, default_gw.stats()["tokens"]
    status, body = gw.request("POST", "/api/v2/guests", {"displayName": "Load Guest 17"})
    assert status == 201 and set(body) == {"guestId", "token", "expiresAt", "scopes"}
    assert body["scopes"] == ["guest:chat"] and abs(body["expiresAt"] - (time.time() + 3600)) < 5
    assert TokenSigner(SECRET).verify(body["token"], body["guestId"], time.time()).ok
    assert gw.request("POST", "/api/v2/guests")[0] == 201  # body is optional
    assert tokens_since(gw, before) == {"issued": 2, "refused": {"429": 0, "503": 0, "400": 0}}


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"displayName": 17}'])
def test_malformed_token_body_is_400_with_error_and_message(default_gw: GatewayProcess, body: bytes) -> None:
    import urllib.request

    gw, before = default_gw, default_gw.stats()["tokens"]
    req = urllib.request.Request(gw.url + "/api/v2/guests", data=body, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(req, timeout=5)
    assert info.value.code == 400
    assert set(json.loads(info.value.read())) == {"error", "message"}
    assert tokens_since(gw, before) == {"issued": 0, "refused": {"429": 0, "503": 0, "400": 1}}


def test_token_rate_limit_answers_429_with_retry_after(start: Any) -> None:
    import urllib.request

    gw = start(token_rate_limit_per_s=2)
    assert [gw.request("POST", "/api/v2/guests")[0] for _ in range(2)] == [201, 201]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(urllib.request.Request(gw.url + "/api/v2/guests", method="POST"), timeout=5)
    assert info.value.code == 429 and info.value.headers["Retry-After"] == "1"
    assert gw.stats()["tokens"] == {"issued": 2, "refused": {"429": 1, "503": 0, "400": 0}}


def raw_http(gw: GatewayProcess, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as bytes, read until the gateway closes; (status, headers, body)."""
    host, port = gw._base().rsplit("//", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(request)
        wire = b""
        while chunk := raw.recv(65536):
            wire += chunk
    head, _, body = wire.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split(" ")[1]), headers, body


def test_a_chunked_token_request_is_issued_a_token(default_gw: GatewayProcess) -> None:
    gw, before = default_gw, default_gw.stats()["tokens"]
    body = json.dumps({"displayName": "Chunked Guest"}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:])) + b"0\r\n\r\n"
    status, headers, answer = raw_http(gw, b"POST /api/v2/guests HTTP/1.1\r\nHost: gw\r\n"
                                       b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    assert status == 201 and headers["content-type"] == "application/json"
    grant = json.loads(answer)
    assert TokenSigner(SECRET).verify(grant["token"], grant["guestId"], time.time()).ok
    bad = b'{"displayName": 17}'
    status, _, answer = raw_http(gw, b"POST /api/v2/guests HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"%x\r\n%s\r\n0\r\n\r\n" % (len(bad), bad))
    assert status == 400 and set(json.loads(answer)) == {"error", "message"}
    assert tokens_since(gw, before) == {"issued": 1, "refused": {"429": 0, "503": 0, "400": 1}}


def test_oversized_heads_and_bodies_and_malformed_requests_are_refused(default_gw: GatewayProcess) -> None:
    gw, before = default_gw, default_gw.stats()["tokens"]
    huge_head = b"GET /_gateway/health HTTP/1.1\r\nHost: gw\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n"
    assert raw_http(gw, huge_head)[0] == 431
    big = b"x" * (64 * 1024 + 1)
    assert raw_http(gw, b"POST /api/v2/guests HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n" % len(big))[0] == 413
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)
    assert raw_http(gw, b"POST /api/v2/guests HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)[0] == 413
    assert raw_http(gw, b"POST /api/v2/guests HTTP/1.1\r\nHost: gw\r\nContent-Length: nope\r\n\r\n")[0] == 400
    assert tokens_since(gw, before)["issued"] == 0


def test_health_404_and_the_exact_stats_shape(start: Any) -> None:
    gw = start()
    assert gw.request("GET", "/_gateway/health") == (200, {"status": "ok"})
    assert gw.request("GET", "/nope")[0] == 404
    assert gw.request("GET", "/api/v2/guest/websocket")[0] == 426
    stats = gw.stats()
    assert list(stats) == ["tokens", "upgrades", "sessions", "closes", "frames_received", "frames_sent",
                           "errors_sent", "faults", "session_ages", "settings"]
    assert stats["upgrades"] == {"accepted": 0, "refused": {"503": 0, "429": 0}}
    assert stats["sessions"] == {"opened": 0, "authenticated": 0, "open": 0, "closed": 0}
    assert stats["frames_received"] == {"auth": 0, "ping": 0, "message": 0, "typing": 0, "other": 0}
    assert set(stats["frames_sent"]) == {"auth_ok", "pong", "ack", "message", "error", "session_expired"}
    assert {"4011", "4029", "4400", "4001"} <= set(stats["errors_sent"])
    assert {"drop", "silent_close_after_auth", "upgrade_refused", "stalled_handshakes", "restarts"} <= set(stats["faults"])
    assert "secret" not in stats["settings"] and stats["settings"]["seed"] == 1
    with pytest.raises(InvalidStatus) as info:
        ws_wrong = connect(gw.url.replace("http", "ws") + "/elsewhere", proxy=None, open_timeout=5)
        ws_wrong.close()
    assert info.value.response.status_code == 404


# --- the happy path -------------------------------------------------------------------


def test_auth_ping_message_ack_agent_reply_and_client_close(start: Any) -> None:
    gw = start()
    with ws(gw) as conn:
        ok = login(gw, conn)
        assert ok["idleTimeout"] == 30 and ok["sessionId"]
        send(conn, {"type": "ping", "id": 7})
        assert recv(conn) == {"type": "pong", "id": 7}
        send(conn, {"type": "typing"})
        before = time.time() * 1000
        send(conn, {"type": "message", "id": "c-17-3", "text": "hello"})
        ack = recv(conn)
        assert ack["type"] == "ack" and ack["id"] == "c-17-3" and abs(ack["ts"] - before) < 1000
        reply = recv(conn)
        assert reply["type"] == "message" and reply["from"] == "agent" and reply["replyTo"] == "c-17-3"
    seen = Seen(1000, "", "client", ())
    stats = assert_recorded(gw, seen, "authenticated")
    assert stats["frames_received"] == {"auth": 1, "ping": 1, "message": 1, "typing": 1, "other": 0}
    assert stats["frames_sent"] == {"auth_ok": 1, "pong": 1, "ack": 1, "message": 1, "error": 0, "session_expired": 0}
    assert stats["sessions"]["authenticated"] == 1 and stats["upgrades"]["accepted"] == 1


# --- auth: silent and explicit ----------------------------------------------------------

BAD_FIRST_FRAMES = {
    "wrong case": {"type": "Auth", "guestId": "g", "token": "t"},
    "upper case": {"type": "AUTH", "guestId": "g", "token": "t"},
    "command instead of type": {"command": "auth", "guestId": "g", "token": "t", "version": "1.0"},
    "missing token": {"type": "auth", "guestId": "g"},
    "missing guestId": {"type": "auth", "token": "t"},
    "ping before auth": {"type": "ping", "id": 1},
}


@pytest.mark.parametrize("name", BAD_FIRST_FRAMES)
def test_silent_mode_closes_a_malformed_auth_with_bare_1000(default_gw: GatewayProcess, name: str) -> None:
    gw, before = default_gw, default_gw.stats()
    with ws(gw) as conn:
        send(conn, BAD_FIRST_FRAMES[name])
        seen = until_closed(conn)
    assert seen == Seen(1000, "", "server", ())  # no error frame: the seed thread's symptom
    assert_recorded(gw, seen, "pre_auth", before)


@pytest.mark.parametrize("problem", ["forged", "other guest", "expired"])
def test_silent_mode_closes_a_bad_token_with_bare_1000(default_gw: GatewayProcess, problem: str) -> None:
    gw, before = default_gw, default_gw.stats()
    guest = gw.token()
    token = {"forged": forge(guest["guestId"], secret="wrong"),
             "other guest": gw.token()["token"],
             "expired": forge(guest["guestId"], expires_in=-1)}[problem]
    with ws(gw) as conn:
        send(conn, {"type": "auth", "guestId": guest["guestId"], "token": token})
        seen = until_closed(conn)
    assert seen == Seen(1000, "", "server", ())
    stats = assert_recorded(gw, seen, "pre_auth", before)
    assert stats["frames_sent"]["error"] == before["frames_sent"]["error"]  # no error frame at all


@pytest.mark.parametrize("frame", [BAD_FIRST_FRAMES["wrong case"], BAD_FIRST_FRAMES["command instead of type"], None])
def test_explicit_mode_sends_error_4001_then_closes_4001(explicit_gw: GatewayProcess, frame: dict[str, Any] | None) -> None:
    gw, before = explicit_gw, explicit_gw.stats()
    with ws(gw) as conn:
        send(conn, frame or {"type": "auth", "guestId": "g", "token": forge("someone-else")})
        seen = until_closed(conn)
    assert seen.code == 4001 and seen.reason == "unauthorized" and seen.initiator == "server"
    assert [f["type"] for f in seen.frames] == ["error"] and seen.frames[0]["code"] == 4001
    stats = assert_recorded(gw, seen, "pre_auth", before)
    assert stats["errors_sent"]["4001"] == before["errors_sent"]["4001"] + 1
    assert stats["frames_sent"]["error"] == before["frames_sent"]["error"] + 1


@pytest.mark.parametrize("mode, frames", [("silent", []), ("explicit", [4003])])
def test_a_token_without_guest_chat_scope_closes_4003(start: Any, mode: str, frames: list[int]) -> None:
    gw = start(auth_failure=mode, token_scopes="guest:api:read")
    with ws(gw) as conn:
        guest = gw.token()
        send(conn, {"type": "auth", "guestId": guest["guestId"], "token": guest["token"]})
        seen = until_closed(conn)
    assert (seen.code, seen.reason) == (4003, "forbidden")
    assert [f["code"] for f in seen.frames] == frames
    assert_recorded(gw, seen, "pre_auth")


def test_no_auth_frame_within_the_deadline_closes_4008(start: Any) -> None:
    gw = start(auth_deadline_s=0.3)
    with ws(gw) as conn:
        began = time.monotonic()
        seen = until_closed(conn)
    assert seen == Seen(4008, "auth timeout", "server", ())
    assert 0.25 < time.monotonic() - began < 2
    assert_recorded(gw, seen, "pre_auth")


# --- after auth -----------------------------------------------------------------------


def test_idle_session_closes_1001_idle_timeout_and_pings_keep_it_alive(start: Any) -> None:
    gw = start(idle_timeout_s=0.4)
    with ws(gw) as conn:
        assert login(gw, conn)["idleTimeout"] == 0.4
        for i in range(5):  # 1 s of pings every 0.2 s: longer than the idle timeout
            time.sleep(0.2)
            send(conn, {"type": "ping", "id": i})
            assert recv(conn)["id"] == i
        began = time.monotonic()
        seen = until_closed(conn)
    assert seen == Seen(1001, "idle timeout", "server", ())
    assert 0.3 < time.monotonic() - began < 2
    assert_recorded(gw, seen, "authenticated")


def test_rate_limit_errors_4029_then_closes_after_three_strikes(start: Any) -> None:
    gw = start(rate_limit_per_s=2, agent_replies=False)
    with ws(gw) as conn:
        login(gw, conn)
        for i in range(5):
            send(conn, {"type": "message", "id": f"c-{i}", "text": "spam"})
        seen = until_closed(conn)
    assert [f["type"] for f in seen.frames] == ["ack", "ack", "error", "error", "error"]
    assert all(f["code"] == 4029 and f["retryAfter"] == 1 for f in seen.frames[2:])
    assert (seen.code, seen.reason, seen.initiator) == (4029, "rate limit", "server")
    stats = assert_recorded(gw, seen, "authenticated")
    assert stats["errors_sent"]["4029"] == 3


def test_an_accepted_message_resets_the_strikes(start: Any) -> None:
    gw = start(rate_limit_per_s=1, agent_replies=False)
    with ws(gw) as conn:
        login(gw, conn)
        for burst in range(2):
            for i in range(3):  # one ack, two refusals: never three in a row
                send(conn, {"type": "message", "id": f"c-{burst}-{i}", "text": "x"})
            assert [recv(conn)["type"] for _ in range(3)] == ["ack", "error", "error"]
            time.sleep(1.05)
        send(conn, {"type": "ping", "id": 1})
        assert recv(conn)["type"] == "pong"


def test_too_long_text_gets_4011_and_the_socket_stays_open(start: Any) -> None:
    gw = start(max_text_length=10)
    with ws(gw) as conn:
        login(gw, conn)
        send(conn, {"type": "message", "id": "c-1", "text": "x" * 11})
        error = recv(conn)
        assert error["type"] == "error" and error["code"] == 4011
        send(conn, {"type": "ping", "id": 2})
        assert recv(conn) == {"type": "pong", "id": 2}
    assert gw.stats()["errors_sent"]["4011"] == 1


@pytest.mark.parametrize("frame", [{"type": "hello"}, {"id": 3}, {"type": "message", "text": "no id"}, [1, 2]])
def test_unknown_or_malformed_frames_after_auth_get_4400(default_gw: GatewayProcess, frame: Any) -> None:
    gw, before = default_gw, default_gw.stats()
    with ws(gw) as conn:
        login(gw, conn)
        conn.send(json.dumps(frame))
        error = recv(conn)
        assert error["type"] == "error" and error["code"] == 4400
        send(conn, {"type": "ping", "id": 1})
        assert recv(conn)["type"] == "pong"
    assert gw.stats()["errors_sent"]["4400"] == before["errors_sent"]["4400"] + 1


def test_a_frame_over_max_frame_bytes_closes_1009(start: Any) -> None:
    gw = start(max_frame_bytes=1024)
    with ws(gw) as conn:
        login(gw, conn)
        send(conn, {"type": "message", "id": "big", "text": "x" * 2000})
        seen = until_closed(conn)
    assert seen == Seen(1009, "message too big", "server", ())
    assert_recorded(gw, seen, "authenticated")


@pytest.mark.parametrize("payload, authed", [
    ("not json", False), ("not json", True), (b"\x00binary", True), (b"\xff\xfe", True),
])
def test_non_json_binary_or_non_utf8_frames_close_1007(default_gw: GatewayProcess, payload: str | bytes,
                                                        authed: bool) -> None:
    gw, before = default_gw, default_gw.stats()
    with ws(gw) as conn:
        if authed:
            login(gw, conn)
        if payload == b"\xff\xfe":
            conn.send(payload, text=True)  # a text frame that is not UTF-8
        else:
            conn.send(payload)
        seen = until_closed(conn)
    assert seen == Seen(1007, "invalid payload", "server", ())
    stats = assert_recorded(gw, seen, "authenticated" if authed else "pre_auth", before)
    assert stats["frames_received"]["other"] == before["frames_received"]["other"] + 1


def test_token_expiry_during_a_session_sends_session_expired_then_4006(start: Any) -> None:
    gw = start(token_ttl_s=0.5)
    with ws(gw) as conn:
        login(gw, conn)
        seen = until_closed(conn)
    assert seen == Seen(4006, "session expired", "server", ({"type": "session_expired"},))
    stats = assert_recorded(gw, seen, "authenticated")
    assert stats["frames_sent"]["session_expired"] == 1 and stats["faults"]["sessions_expired"] == 1


# --- faults ----------------------------------------------------------------------------


def test_drop_reset_ends_tcp_without_a_close_frame(start: Any) -> None:
    gw = start(faults__drop_fraction=1, faults__drop_code="reset", faults__drop_after_s="0.1,0.2")
    with ws(gw) as conn:
        login(gw, conn)
        seen = until_closed(conn)
    assert seen == Seen(1006, "", "none", ())
    stats = assert_recorded(gw, seen, "authenticated")
    assert stats["faults"]["drop"]["reset"] == 1


@pytest.mark.parametrize("code, reason", [(1013, "try again later"), (1011, "internal error"), (4100, "injected fault")])
def test_drop_with_a_close_code(start: Any, code: int, reason: str) -> None:
    gw = start(faults__drop_fraction=1, faults__drop_code=code, faults__drop_after_s="0.1,0.2")
    with ws(gw) as conn:
        login(gw, conn)
        began = time.monotonic()
        seen = until_closed(conn)
    assert seen == Seen(code, reason, "server", ())
    assert 0.05 < time.monotonic() - began < 1.5
    stats = assert_recorded(gw, seen, "authenticated")
    assert stats["faults"]["drop"][str(code)] == 1


def test_silent_close_after_a_valid_auth(start: Any) -> None:
    gw = start(faults__silent_close_after_auth=1)
    with ws(gw) as conn:
        guest = gw.token()
        send(conn, {"type": "auth", "guestId": guest["guestId"], "token": guest["token"]})
        seen = until_closed(conn)
    assert seen == Seen(1000, "", "server", ())
    stats = assert_recorded(gw, seen, "pre_auth")
    assert stats["faults"]["silent_close_after_auth"] == 1


def test_rolling_restart_closes_1012_refuses_upgrades_during_the_pause(start: Any) -> None:
    gw = start()
    conns = [ws(gw) for _ in range(3)]
    try:
        for conn in conns[:2]:
            login(gw, conn)  # two authenticated, one still pre-auth
        assert gw.restart(pause_s=0.6) == {"restarting": 3, "pause_s": 0.6}
        seen = [until_closed(conn) for conn in conns]
    finally:
        for conn in conns:
            conn.close()
    assert {s for s in seen} == {Seen(1012, "service restart", "server", ())}
    with pytest.raises(InvalidStatus) as info:
        ws(gw).close()
    assert info.value.response.status_code == 503
    time.sleep(0.7)
    with ws(gw) as conn:
        login(gw, conn)
    stats = stats_after(gw, 4)
    assert {(c["code"], c["phase"], c["count"]) for c in stats["closes"]} == {
        (1012, "authenticated", 2), (1012, "pre_auth", 1), (1000, "authenticated", 1)}
    assert stats["faults"]["restarts"] == 1 and stats["upgrades"]["refused"]["503"] == 1


def test_scheduled_rolling_restart(start: Any) -> None:
    gw = start(faults__restart_at_s=0.5, faults__restart_pause_s=0)
    with ws(gw) as conn:
        login(gw, conn)
        seen = until_closed(conn)
    assert seen == Seen(1012, "service restart", "server", ())
    assert_recorded(gw, seen, "authenticated")


def test_refused_upgrades_answer_the_planned_status(start: Any) -> None:
    gw = start(faults__refuse_upgrades_fraction=1, faults__refuse_upgrades_status=429)
    with pytest.raises(InvalidStatus) as info:
        ws(gw).close()
    assert info.value.response.status_code == 429
    stats = gw.stats()
    assert stats["upgrades"]["refused"]["429"] == 1 and stats["faults"]["upgrade_refused"]["429"] == 1
    assert stats["sessions"]["opened"] == 0


def test_max_connections_refuses_upgrades_over_the_cap_with_503(start: Any) -> None:
    gw = start(max_connections=1)
    with ws(gw) as first:
        login(gw, first)
        with pytest.raises(InvalidStatus) as info:
            ws(gw).close()
        assert info.value.response.status_code == 503
    stats_after(gw, 1)
    with ws(gw) as again:  # the slot is free again once the first session ended
        login(gw, again)
    assert gw.stats()["upgrades"]["refused"]["503"] == 1


def test_stalled_handshake_is_never_answered(start: Any) -> None:
    gw = start(faults__stall_handshake_fraction=1, open_timeout_s=1)
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        connect(gw.ws_url, proxy=None, open_timeout=0.4).close()
    assert time.monotonic() - began >= 0.35
    assert gw.stats()["faults"]["stalled_handshakes"] == 1


def test_slow_handshake_and_auth_latency_delay_the_answers(start: Any) -> None:
    gw = start(faults__slow_handshake="fixed:300", faults__auth_latency="fixed:300")
    began = time.monotonic()
    with ws(gw) as conn:
        assert time.monotonic() - began >= 0.29
        began = time.monotonic()
        login(gw, conn)
        assert time.monotonic() - began >= 0.29
    faults = gw.stats()["faults"]
    assert faults["slow_handshakes"] == 1 and faults["auth_delayed"] == 1


def test_out_of_order_acks_follow_the_seeded_plan(start: Any) -> None:
    settings = {"agent_replies": "false", "rate_limit_per_s": "0", "faults.out_of_order": "0.5",
                "faults.out_of_order_delay": "fixed:150"}
    gw = start(seed=42, **{k.replace(".", "__"): v for k, v in settings.items()})
    expected_plan = FaultPlan(load_settings(None, [f"{k}={v}" for k, v in settings.items()]).faults, 42)
    late = [m.out_of_order for m in islice(expected_plan.messages(0), 8)]
    assert any(late) and not all(late)
    with ws(gw) as conn:
        login(gw, conn)
        for i in range(8):
            send(conn, {"type": "message", "id": i, "text": "x"})
        order = [recv(conn)["id"] for _ in range(8)]
    assert order == [i for i in range(8) if not late[i]] + [i for i in range(8) if late[i]]
    assert gw.stats()["faults"]["acks_out_of_order"] == sum(late)


# --- ground truth under churn ---------------------------------------------------------


def test_opened_equals_closed_plus_open_under_churn(start: Any) -> None:
    gw = start()
    conns = [ws(gw) for _ in range(12)]
    for conn in conns[:8]:
        login(gw, conn)
    for conn in conns[:5]:
        conn.close()
    stats = stats_after(gw, 5)
    sessions = stats["sessions"]
    assert sessions == {"opened": 12, "authenticated": 8, "open": 7, "closed": 5}
    for conn in conns[5:]:
        conn.close()
    stats = stats_after(gw, 12)
    assert stats["sessions"] == {"opened": 12, "authenticated": 8, "open": 0, "closed": 12}
    assert {(c["code"], c["initiator"], c["phase"], c["count"]) for c in stats["closes"]} == {
        (1000, "client", "authenticated", 8), (1000, "client", "pre_auth", 4)}


# --- in process: planted bugs, leaks, log noise --------------------------------------


@contextlib.contextmanager
def in_process(*assignments: str) -> Iterator[Any]:
    """A Gateway on its own event loop in a thread of this process, so tests can look inside."""
    from loadkit.gateway.server import Gateway

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def run() -> None:
        gateway = box["gateway"] = Gateway(load_settings(None, [f"secret={SECRET}", *assignments], seed=1))
        port = await gateway.start("127.0.0.1", 0)
        gateway.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
        ready.set()
        await gateway.stopping.wait()
        await gateway.shutdown()

    thread = threading.Thread(target=lambda: loop.run_until_complete(run()), daemon=True)
    thread.start()
    try:
        assert ready.wait(5)
        yield box["gateway"]
    finally:
        loop.call_soon_threadsafe(box["gateway"].request_stop)
        thread.join(10)
        loop.close()


def wait_for(predicate: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_a_handler_bug_closes_1011_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from loadkit.gateway.guest import GuestSession

    async def broken(self: GuestSession, frame: dict[str, Any]) -> bool:
        raise RuntimeError("planted bug")

    monkeypatch.setattr(GuestSession, "on_message", broken)
    with in_process() as gateway:
        url = gateway.url.replace("http", "ws") + "/api/v2/guest/websocket"
        with connect(url, proxy=None, compression=None, open_timeout=5) as conn:
            send(conn, {"type": "auth", "guestId": "g", "token": forge("g")})
            assert recv(conn)["type"] == "auth_ok"
            send(conn, {"type": "message", "id": "c-1", "text": "boom"})
            seen = until_closed(conn)
        assert seen == Seen(1011, "internal error", "server", ())
        wait_for(lambda: gateway.stats.closed == 1)
        assert gateway.stats.snapshot({})["closes"] == [
            {"code": 1011, "reason": "internal error", "initiator": "server", "phase": "authenticated", "count": 1}]


def test_plain_http_leaves_no_tasks_connections_or_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    caplog.set_level(logging.DEBUG)
    with in_process() as gateway:
        for _ in range(50):
            opener.open(urllib.request.Request(gateway.url + "/api/v2/guests", method="POST"), timeout=5).read()
            opener.open(gateway.url + "/_gateway/stats", timeout=5).read()
        with socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]))) as raw:
            raw.sendall(b"garbage\r\n\r\n")  # malformed: 400, then closed
            assert raw.recv(100).startswith(b"HTTP/1.1 400 ")
        server = gateway.server
        wait_for(lambda: not server.handler_tasks)
        assert gateway.stats.tokens_issued == 50 and not server.all_connections
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
