"""Baseline 1, "the obvious recipe": a plain Locust user on websockets' threaded client.

What someone writes in an afternoon from the Locust and websockets docs:
``FastHttpUser`` for the token call, ``websockets.sync.client.connect``
(compression off, every other default kept: under Locust's monkey-patching
its background thread is a greenlet, plus a socketpair and a keepalive
thread), the stdlib ``json`` module, and ``events.request.fire`` for each
timing. It speaks the guest protocol of ``guest-protocol.md``; it is not
loadkit and shares no code with it.

Three user classes, chosen on the command line like any Locust user:

- ``IdleGuest``: authenticate, then ping every ``$KEEPALIVE_S`` seconds;
- ``ChurnGuest``: token → connect → auth → close, again and again;
- ``ChatGuest``: authenticate, then send a message and wait for its ack,
  again and again (agent replies and pongs are read and skipped).

Only the two ``_benchctl`` lines and the round-robin over ``$BENCH_HOSTS``
exist for ``bench/run.py``: it steers the user count and reads counts.
"""

import itertools
import json
import os
import time

from locust import FastHttpUser, between, constant, events, task
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import _benchctl
from _benchctl import FileShape  # noqa: F401  (bench: the user count follows $BENCH_CTL)

KEEPALIVE_S = float(os.environ.get("KEEPALIVE_S", "20"))
# think time between chat messages, MIN-MAX seconds ("0": as fast as acks come back)
CHAT_INTERVAL = [float(x) for x in os.environ.get("CHAT_INTERVAL", "0").split("-")]
AUTH_SAMPLES = _benchctl.samples.setdefault("auth_us", [])
counters = {"open": 0, "authenticated": 0, "ended": 0}
_seq = itertools.count(1)


def _fire(name, started, exc=None, length=0):
    events.request.fire(request_type="WS", name=name, response_time=(time.perf_counter() - started) * 1000.0,
                        response_length=length, exception=exc, context=None)


class Guest(FastHttpUser):
    abstract = True

    def __init__(self, environment):
        self.host = _benchctl.next_host() or self.host  # bench: spread over the gateways
        super().__init__(environment)
        self.ws = None

    def open_session(self):
        """Token, connect, auth. Returns True once authenticated."""
        with self.client.post("/api/v2/guests", json={"displayName": f"Load Guest {next(_seq)}"},
                              name="token", catch_response=True) as resp:
            if resp.status_code != 201:
                resp.failure(f"HTTP {resp.status_code}")
                return False
            grant = resp.json()
        url = self.host.replace("http", "ws", 1) + "/api/v2/guest/websocket"
        t0 = time.perf_counter()
        try:
            self.ws = connect(url, compression=None, open_timeout=10)
        except Exception as exc:
            _fire("connect", t0, exc)
            return False
        _fire("connect", t0)
        counters["open"] += 1
        t0 = time.perf_counter()
        try:
            self.ws.send(json.dumps({"type": "auth", "guestId": grant["guestId"], "token": grant["token"]}))
            reply = json.loads(self.ws.recv(timeout=15))
        except (ConnectionClosed, TimeoutError) as exc:
            _fire("auth", t0, exc)
            self.close_session()
            return False
        if reply.get("type") != "auth_ok":
            _fire("auth", t0, Exception(f"unexpected {reply.get('type')}"))
            self.close_session()
            return False
        AUTH_SAMPLES.append(int((time.perf_counter() - t0) * 1e6))
        _fire("auth", t0)
        counters["authenticated"] += 1
        return True

    def close_session(self):
        if self.ws is not None:
            t0 = time.perf_counter()
            self.ws.close()
            self.ws = None
            counters["open"] -= 1
            counters["ended"] += 1
            _fire("session", t0)

    def on_stop(self):
        self.close_session()


class ChurnGuest(Guest):
    wait_time = constant(0)

    @task
    def session(self):
        if self.open_session():
            self.close_session()


class IdleGuest(Guest):
    wait_time = constant(0)

    def on_start(self):
        self.open_session()
        self.ping_id = 0

    @task
    def keepalive(self):
        if self.ws is None:
            time.sleep(1)
            return
        try:
            self.ws.recv(timeout=KEEPALIVE_S)  # nothing is expected; wake up to ping
            return
        except TimeoutError:
            pass
        self.ping_id += 1
        t0 = time.perf_counter()
        self.ws.send(json.dumps({"type": "ping", "id": self.ping_id}))
        while True:
            frame = json.loads(self.ws.recv(timeout=10))
            if frame.get("type") == "pong" and frame.get("id") == self.ping_id:
                _fire("ping", t0)
                return


class ChatGuest(Guest):
    wait_time = between(CHAT_INTERVAL[0], CHAT_INTERVAL[-1]) if CHAT_INTERVAL[-1] > 0 else constant(0)

    def on_start(self):
        self.open_session()
        self.msg_id = 0

    @task
    def message(self):
        if self.ws is None:
            time.sleep(1)
            return
        self.msg_id += 1
        ref = f"c-{self.msg_id}"
        t0 = time.perf_counter()
        self.ws.send(json.dumps({"type": "message", "id": ref, "text": "hello from the obvious recipe"}))
        while True:
            frame = json.loads(self.ws.recv(timeout=10))
            if frame.get("type") == "ack" and frame.get("id") == ref:
                _fire("message", t0)
                return


_benchctl.status_hooks.append(lambda environment: dict(counters))
