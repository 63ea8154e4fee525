"""Synthetic worker reports with realistic figures: what bench/master_merge.py and the wire tests send.

No Locust here (tests import it; importing Locust monkey-patches a process):
``worker_delta`` fills a Recorder as one worker's 3 seconds would, and feeds
Locust's statistics through a callback when given one.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from loadkit.lifecycle import Outcome, Phase, Result
from loadkit.metrics.recorder import LATENCY_PHASES, Recorder

#: phase -> (samples per report, a draw in µs)
Profile = dict[str, tuple[int, Callable[[random.Random], float]]]
#: The profile whose reports are the largest (tests/test_wire.py bounds its size)
WIDE = "remote gateway, wide spread"

#: One worker's 3 s at the guests-per-worker figure of docs/capacity.md
#: (4,400 guests, default timings: 0.26 messages and 0.046 new sessions per
#: guest and second, a ping every 20 s, agent replies after 0.5–2 s). Each
#: phase: (samples per report, a draw in µs). Log-normal spreads are those
#: of a loaded gateway (p99 about 6× the median), wider than loopback's.
PROFILES: dict[str, Profile] = {
    "chatty worker (4,400 guests)": {
        "token": (600, lambda r: r.lognormvariate(8.5, 0.8)),      # ~5 ms
        "connect": (600, lambda r: r.lognormvariate(7.6, 0.8)),    # ~2 ms
        "auth": (600, lambda r: r.lognormvariate(8.0, 0.8)),       # ~3 ms
        "message": (3400, lambda r: r.lognormvariate(7.3, 0.8)),   # ~1.5 ms
        "ping": (660, lambda r: r.lognormvariate(7.2, 0.8)),
        "reply": (3400, lambda r: r.uniform(500_000, 2_000_000) + r.lognormvariate(7.3, 0.8)),
        "harness_wait": (600, lambda r: r.lognormvariate(4.5, 1.0)),  # the token call's wait inside the harness
        # generator lag: every guest's timer wake-up (messages, pings) and the 20 ms probe
        "harness_lag": (4200, lambda r: r.lognormvariate(6.0, 1.2)),
        "recover": (20, lambda r: r.lognormvariate(12, 1.0)),
        "silence": (5, lambda r: r.uniform(20e6, 60e6)),
    },
    # A remote gateway: ten times the latency and twice the spread; every
    # histogram spans more buckets (the worst case for the report's size).
    "remote gateway, wide spread": {
        "token": (600, lambda r: r.lognormvariate(11, 1.6)),
        "connect": (600, lambda r: r.lognormvariate(10.5, 1.6)),
        "auth": (600, lambda r: r.lognormvariate(10.8, 1.6)),
        "message": (3400, lambda r: r.lognormvariate(10.5, 1.6)),
        "ping": (660, lambda r: r.lognormvariate(10.4, 1.6)),
        "reply": (3400, lambda r: r.uniform(1e6, 30e6) + r.lognormvariate(10.5, 1.6)),
        "harness_wait": (600, lambda r: r.lognormvariate(4.5, 1.5)),
        "harness_lag": (4200, lambda r: r.lognormvariate(6.0, 1.5)),
        "recover": (20, lambda r: r.lognormvariate(13, 1.5)),
        "silence": (5, lambda r: r.uniform(20e6, 60e6)),
    },
}

_OUTCOMES = [  # (outcome, phase, close) and weight
    ((Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED, (1000, "", "client")), 520),
    ((Outcome.DROPPED_BY_SERVER, Phase.ESTABLISHED, (1012, "service restart", "server")), 20),
    ((Outcome.DROPPED_BY_SERVER, Phase.ESTABLISHED, (1011, "internal error", "server")), 5),
    ((Outcome.DROPPED_BY_SERVER, Phase.JUST_AFTER_AUTH, (1001, "idle timeout", "server")), 3),
    ((Outcome.AUTH_REFUSED, Phase.DURING_AUTH, (4001, "unauthorized", "server")), 12),
    ((Outcome.AUTH_TIMEOUT, Phase.DURING_AUTH, (4008, "auth timeout", "server")), 4),
    ((Outcome.TOKEN_REFUSED, Phase.TOKEN, None), 10),
    ((Outcome.CONNECT_FAILED, Phase.BEFORE_OPEN, None), 3),
    ((Outcome.CONNECTION_LOST, Phase.ESTABLISHED, (1006, "", "none")), 10),
    ((Outcome.STOPPED_BY_HARNESS, Phase.ESTABLISHED, (1000, "", "client")), 13),
]


def worker_delta(rng: random.Random, name: str,
                 log_request: Callable[[str, float], None] | None = None) -> Recorder:
    """One worker's 3 s of profile ``name``: a Recorder, and Locust's statistics fed alike (``log_request(phase, ms)``).

    The wide profile also has what a troubled run adds: many close codes and
    reasons, failure details, expected outcomes (every table a report has, full).
    """
    profile = PROFILES[name]
    rec = Recorder()
    for phase, (n, draw) in profile.items():
        hist = rec.latency[phase] if phase in rec.latency else getattr(rec, phase)
        for _ in range(n):
            value = int(draw(rng))
            hist.record(value)
            if log_request is not None and phase in LATENCY_PHASES:
                log_request(phase, value / 1000.0)
    kinds = [k for k, _ in _OUTCOMES]
    weights = [w for _, w in _OUTCOMES]
    for outcome, phase, close in rng.choices(kinds, weights, k=600):
        rec.session_started()
        authenticated = phase in (Phase.ESTABLISHED, Phase.JUST_AFTER_AUTH)
        if authenticated:
            rec.session_authenticated()
        rec.session_ended(Result(outcome, phase, authenticated), rng.uniform(1, 4000) if authenticated else 0.0,
                          close)
    rec.errors.update({"4029": rng.randrange(5), "4003": rng.randrange(3)})
    rec.bad_frames.update({("not_json", "established"): rng.randrange(1, 3), ("unknown_type", "during_auth"): 1})
    rec.bad_sessions = 2
    rec.messages_sent, rec.messages_answered, rec.agent_messages = 3400, 3398, 3400
    rec.reconnect_attempts, rec.reconnect_successes, rec.missed_pongs = 20, 18, 3
    if name == WIDE:
        for code in range(4000, 4024):  # a gateway with many application close codes
            rec.close_codes[("established", code, f"application error {code}", "server")] += rng.randrange(1, 4)
        for i in range(16):
            rec.failures[("token_refused", f"HTTP {500 + i}")] += rng.randrange(1, 3)
            rec.failures[("connect_failed", f"connection refused by 127.0.0.{i}")] += 1
        for i in range(40):
            rec.note_detail(f"upstream said: error number {i} while handling the request", rng.randrange(1, 3))
        rec.expected_authenticated.update({"no_keepalive": 30, "fast_messages": 20, "silent": 10})
        rec.expected_drops.update({"no_keepalive": 28, "fast_messages": 19})
        rec.expected_outcomes.update({"auth_refused": 12, "dropped_by_server": 47})
        rec.messages_unanswered, rec.not_resumed = 2, 1
    return rec
