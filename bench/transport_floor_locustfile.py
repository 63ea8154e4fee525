"""loadkit's transport under Locust with the least loop on top: the floor of bench (c).

What a round trip costs loadkit splits in two: the transport and gevent
under Locust (the socket, the waits, the frames in and out, the parse), and
the session's own work on top (pacing, the pending tables, classification,
the latency and lag histograms, Locust's statistics, keepalive). This
harness measures the first alone, in the same run and against the same
gateways as the others: the same token call, connect and auth, the same
``WebSocket`` and waits, then a paced loop that sends a message, reads
frames until the ack with its id (parsed with orjson, like raw asyncio's
loop) and counts it. It times nothing, classifies nothing and records
nothing, so it is not a harness anyone should run: ``loadkit − floor`` is
what the session's bookkeeping costs per round trip, and ``floor : raw``
is the most a gevent harness on this transport could reach (docs/capacity.md).

Counted in the status file as ``message`` (the name the bench counts for
(c)); the user count follows ``$BENCH_CTL`` like every bench harness.
"""

import locust  # noqa: F401  (first: gevent patches before anything else)

import itertools
import os
import random

import orjson
from locust import User, task

import _benchctl
from _benchctl import FileShape  # noqa: F401  (the user count follows $BENCH_CTL)
from loadkit.protocol.guest import GuestProfile
from loadkit.transport.gevent_transport import GeventTransport

_INTERVAL = os.environ.get("CHAT_INTERVAL", "0.02-0.03").split("-")
_LO, _HI = float(_INTERVAL[0]), float(_INTERVAL[-1])  # MIN-MAX seconds between one guest's messages
_profile = GuestProfile()
_transport = GeventTransport()
_numbers = itertools.count()
_acks = [0]
_failed = [0]


def _status(environment):
    return {"counts": {"message": [_acks[0], _failed[0]]}}


_benchctl.status_hooks.append(_status)


class FloorGuest(User):
    @task
    def chat(self):
        host = _benchctl.next_host() or self.environment.host
        number = next(_numbers)
        answer = _transport.http(_profile.token_request(host, number))
        grant = _profile.token_grant(answer.status, answer.body, number)
        ws = _transport.connect(_profile.websocket_url(host, grant))
        try:
            ws.send(_profile.auth_frame(grant))
            if ws.recv(15) is None:
                raise TimeoutError("no auth answer")
            now = _transport.now
            next_at = now()
            n = 0
            while True:
                next_at += random.uniform(_LO, _HI)
                while True:  # wait for the next send, reading whatever comes meanwhile
                    left = next_at - now()
                    if left <= 0:
                        break
                    ws.recv(left)
                n += 1
                ref = f"c-{n}"
                ws.send(b'{"type":"message","id":"%s","text":"hello from the floor"}' % ref.encode())
                while True:
                    data = ws.recv(10)
                    if data is None:
                        raise TimeoutError("no ack")
                    frame = orjson.loads(data)
                    if frame.get("type") == "ack" and frame.get("id") == ref:
                        _acks[0] += 1
                        break
        except Exception:
            _failed[0] += 1
            raise
        finally:
            ws.close(1000, "", wait=False)
