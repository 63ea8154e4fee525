"""The fault plan: which sessions get which injected failure, decided up front.

Why a plan and not ``random.random()`` calls inside the server: a soak that
found a bug must be repeatable. Every decision here is a pure function of
``(seed, session sequence number, what is being decided)``, so session #4711
is dropped at the same moment with the same code in every run with the same
seed, whatever order the sessions arrived in and whatever other faults are
switched on. The server only asks; it never rolls dice itself.

Nothing here does I/O or reads a clock, so it is unit-tested apart from the
server (see tests/test_faults.py).
"""

from __future__ import annotations

import math
import random
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .anomalies import AnomalySettings

__all__ = ["Delay", "FaultSettings", "FaultPlan", "SessionPlan", "MessagePlan", "DROP_CODES"]

Z_99 = 2.326  # standard normal quantile of 0.99: p99 = median * exp(Z_99 * sigma)
_STANDARD_NORMAL = statistics.NormalDist()

DROP_REASONS = {
    1001: "going away",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
}
"""Close reason sent with each standard drop code (the contract's table)."""

DROP_CODES = "1001, 1011, 1012, 1013, 4000-4999 or reset"


def drop_reason(code: int) -> str:
    """Reason text for an injected drop; private codes get a generic one."""
    return DROP_REASONS.get(code, "injected fault")


@dataclass(frozen=True)
class Delay:
    """A delay distribution, in milliseconds: nothing, fixed, or lognormal.

    Lognormal because real latencies are skewed: most are near the median,
    a few are far out. It is given the way people talk about latency, by
    median and p99, and sigma is derived: ``sigma = ln(p99/median) / 2.326``.

    Written as text (TOML string or ``--set`` value): ``"0"``, ``"25"``,
    ``"fixed:25"``, ``"lognormal:40,400"`` or
    ``"lognormal:median_ms=40,p99_ms=400"``; or as a TOML table
    ``{fixed_ms = 25}`` / ``{median_ms = 40, p99_ms = 400}``.
    """

    kind: Literal["none", "fixed", "lognormal"] = "none"
    fixed_ms: float = 0.0
    median_ms: float = 0.0
    p99_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.kind == "fixed" and self.fixed_ms < 0:
            raise ValueError(f"a fixed delay must be >= 0 ms (got {self.fixed_ms})")
        if self.kind == "lognormal" and not 0 < self.median_ms <= self.p99_ms:
            raise ValueError(
                f"a lognormal delay needs 0 < median_ms <= p99_ms "
                f"(got median_ms={self.median_ms}, p99_ms={self.p99_ms})"
            )

    @property
    def enabled(self) -> bool:
        return self.kind == "lognormal" or (self.kind == "fixed" and self.fixed_ms > 0)

    @property
    def sigma(self) -> float:
        return math.log(self.p99_ms / self.median_ms) / Z_99 if self.kind == "lognormal" else 0.0

    def at(self, u: float) -> float:
        """The delay at quantile ``u`` of the distribution, in seconds.

        Taking a uniform number instead of a generator means every decision
        consumes exactly one draw, enabled or not, so switching one fault on
        never shifts the draws (and so the outcome) of another.
        """
        if self.kind == "fixed":
            return self.fixed_ms / 1000
        if self.kind == "lognormal":
            z = _STANDARD_NORMAL.inv_cdf(min(max(u, 1e-12), 1 - 1e-12))
            return self.median_ms * math.exp(self.sigma * z) / 1000
        return 0.0

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.fixed_ms:g}"
        if self.kind == "lognormal":
            return f"lognormal:median_ms={self.median_ms:g},p99_ms={self.p99_ms:g}"
        return "0"

    @classmethod
    def parse(cls, spec: Any) -> Delay:
        """Build a Delay from its text, number or table form; ValueError says what is wrong."""
        if isinstance(spec, Delay):
            return spec
        if isinstance(spec, bool):
            raise ValueError("expected a delay such as 25, 'fixed:25' or 'lognormal:40,400'")
        if isinstance(spec, (int, float)):
            return cls("fixed", float(spec)) if spec else cls()
        if isinstance(spec, dict):
            return cls._from_table(spec)
        if not isinstance(spec, str):
            raise ValueError("expected a delay such as 25, 'fixed:25' or 'lognormal:40,400'")
        text = spec.strip().lower()
        kind, _, rest = text.partition(":")
        if not rest:
            kind, rest = "fixed", text
        if kind not in ("fixed", "lognormal"):
            raise ValueError(f"unknown delay kind {kind!r}: use 'fixed:MS' or 'lognormal:MEDIAN,P99'")
        numbers = [re.sub(r"^\w+=", "", part.strip()).removesuffix("ms") for part in rest.split(",")]
        try:
            values = [float(n) for n in numbers]
        except ValueError:
            raise ValueError(f"delay {spec!r}: numbers of milliseconds expected") from None
        if kind == "fixed" and len(values) == 1:
            return cls("fixed", values[0]) if values[0] else cls()
        if kind == "lognormal" and len(values) == 2:
            return cls("lognormal", median_ms=values[0], p99_ms=values[1])
        raise ValueError(f"delay {spec!r}: use 'fixed:MS' or 'lognormal:MEDIAN_MS,P99_MS'")

    @classmethod
    def _from_table(cls, table: dict[str, Any]) -> Delay:
        keys = set(table)
        try:
            if keys == {"fixed_ms"}:
                return cls.parse(float(table["fixed_ms"]))
            if keys == {"median_ms", "p99_ms"}:
                return cls("lognormal", median_ms=float(table["median_ms"]), p99_ms=float(table["p99_ms"]))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"delay table {table!r}: {exc}") from None
        raise ValueError(f"delay table needs {{fixed_ms}} or {{median_ms, p99_ms}}, got {sorted(keys)}")


DropCode = int | Literal["reset"]


@dataclass(frozen=True)
class FaultSettings:
    """The ``[faults]`` table. Every fault is off by default.

    Fractions are of sessions (or of acks, for ``out_of_order``), 0..1.
    """

    drop_fraction: float = 0.0
    """Fraction of authenticated sessions dropped by the server."""
    drop_after_s: tuple[float, float] = (1.0, 10.0)
    """A dropped session is dropped uniformly within this range after auth_ok."""
    drop_code: DropCode = 1011
    """Close code of a drop, or "reset": abort TCP with no close frame (client sees 1006)."""
    silent_close_after_auth: float = 0.0
    """Fraction of sessions closed 1000 right after a valid auth frame, no error frame."""
    auth_latency: Delay = field(default_factory=Delay)
    """Delay between a valid auth frame and auth_ok."""
    ack_delay: Delay = field(default_factory=Delay)
    """Delay before each ack."""
    agent_delay: Delay = field(default_factory=Delay)
    """Extra delay before an agent reply, added to agent_think_s."""
    out_of_order: float = 0.0
    """Fraction of acks held back by out_of_order_delay, so later acks overtake them."""
    out_of_order_delay: Delay = field(default_factory=lambda: Delay("fixed", 100.0))
    refuse_upgrades_fraction: float = 0.0
    """Fraction of upgrade requests refused with refuse_upgrades_status."""
    refuse_upgrades_status: Literal[429, 503] = 503
    slow_handshake: Delay = field(default_factory=Delay)
    """Delay before answering an upgrade request."""
    stall_handshake_fraction: float = 0.0
    """Fraction of upgrade requests never answered (until open_timeout_s)."""
    restart_at_s: float = 0.0
    """Rolling restart this long after start (0 = never): close all with 1012."""
    restart_pause_s: float = 5.0
    """How long upgrades are refused with 503 after a restart."""
    degrade_at_s: float = 0.0
    """From this long after start (0 = never), auth latency is degraded_auth_latency: a gateway
    that gets worse during a soak, for drift gates."""
    degraded_auth_latency: Delay = field(default_factory=Delay)
    """Auth latency once degraded (it replaces auth_latency)."""
    goodbye_unanswered: float = 0.0
    """Web messaging: fraction of sessions whose goodbye requests (Presence Clear, closeSession) are
    received and ignored: no answer, and the session is not ended."""
    goodbye_delay: Delay = field(default_factory=Delay)
    """Web messaging: delay before a goodbye request's answer (SessionClearedEvent to the socket that
    cleared, SessionResponse connected:false)."""
    goodbye_refused: float = 0.0
    """Web messaging: fraction of sessions whose Presence Clear is refused with 429 (retryAfter
    goodbye_retry_after_s) goodbye_refusals times before one is accepted."""
    goodbye_refusals: int = 1
    goodbye_retry_after_s: int = 1
    anomalies: AnomalySettings = field(default_factory=AnomalySettings)
    """The ``[faults.anomalies]`` table: frames a broken target sends (``anomalies.py``)."""

    def __post_init__(self) -> None:
        for name in ("drop_fraction", "silent_close_after_auth", "out_of_order",
                     "refuse_upgrades_fraction", "stall_handshake_fraction", "goodbye_unanswered",
                     "goodbye_refused"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"faults.{name} must be a fraction between 0 and 1 (got {value})")
        low, high = self.drop_after_s
        if not 0 <= low <= high:
            raise ValueError(f"faults.drop_after_s must be [min, max] with 0 <= min <= max (got {self.drop_after_s})")
        code = self.drop_code
        if code != "reset" and not (code in DROP_REASONS or 4000 <= code <= 4999):
            raise ValueError(f"faults.drop_code must be {DROP_CODES} (got {code!r})")
        if self.refuse_upgrades_status not in (429, 503):
            raise ValueError(f"faults.refuse_upgrades_status must be 429 or 503 (got {self.refuse_upgrades_status})")
        for name in ("goodbye_refusals", "goodbye_retry_after_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"faults.{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("restart_at_s", "restart_pause_s", "degrade_at_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"faults.{name} must be >= 0 seconds (got {getattr(self, name)})")


@dataclass(frozen=True)
class SessionPlan:
    """Everything decided for one connection, from its upgrade request on."""

    seq: int
    refuse_status: int | None = None
    stall: bool = False
    handshake_delay_s: float = 0.0
    silent_close: bool = False
    auth_delay_s: float = 0.0
    #: the auth delay once the gateway has degraded (same draw: no other decision moves)
    degraded_auth_delay_s: float = 0.0
    drop_after_s: float | None = None
    drop_code: DropCode = 1011
    #: web messaging: the goodbye's requests go unanswered
    goodbye_unanswered: bool = False
    #: web messaging: delay before a goodbye request's answer
    goodbye_delay_s: float = 0.0
    #: web messaging: how many Presence Clears are refused (429) before one is accepted
    goodbye_refusals: int = 0
    goodbye_retry_after_s: int = 1
    #: the anomalous frame written with auth_ok (one of ``anomalies.ANOMALY_KINDS``), if any
    anomaly: str | None = None
    #: RFC 6455 pings written just before auth_ok, in the same write (0: none)
    ping_flood: int = 0


@dataclass(frozen=True)
class MessagePlan:
    """Delays for one accepted client message: before its ack, before the agent's reply."""

    ack_delay_s: float = 0.0
    out_of_order: bool = False
    agent_delay_s: float = 0.0


class FaultPlan:
    """Answers "what happens to session N" and "to the next message of session N".

    Session N gets its own ``random.Random`` seeded from ``(seed, N)``, so its
    fate does not depend on arrival order. Each decision consumes exactly one
    draw, in a fixed order, whether its fault is enabled or not: switching on
    ``slow_handshake`` does not change which sessions are dropped.
    """

    #: New draws go at the end: the draws before them, and so every earlier fault, stay as they were.
    SESSION_DRAWS = ("refuse", "stall", "handshake", "silent", "auth", "drop", "drop_at",
                     "goodbye_unanswered", "goodbye_delay", "goodbye_refused", "anomaly", "flood")
    MESSAGE_DRAWS = ("ack", "late", "late_delay", "think", "agent")

    def __init__(self, faults: FaultSettings, seed: int, agent_think_s: tuple[float, float] = (0.0, 0.0)) -> None:
        self.faults = faults
        self.seed = seed
        self.agent_think_s = agent_think_s

    def rng(self, seq: int, stream: str) -> random.Random:
        # A str seed is hashed with SHA-512 by random.Random: stable across runs
        # and processes (unlike hash()), and well mixed for adjacent seqs.
        return random.Random(f"loadkit-gateway:{self.seed}:{seq}:{stream}")

    def session(self, seq: int) -> SessionPlan:
        f = self.faults
        rng = self.rng(seq, "session")
        u = dict(zip(self.SESSION_DRAWS, (rng.random() for _ in self.SESSION_DRAWS), strict=True))
        refuse = u["refuse"] < f.refuse_upgrades_fraction
        low, high = f.drop_after_s
        a = f.anomalies
        return SessionPlan(
            seq=seq,
            refuse_status=f.refuse_upgrades_status if refuse else None,
            stall=not refuse and u["stall"] < f.stall_handshake_fraction,
            handshake_delay_s=f.slow_handshake.at(u["handshake"]),
            silent_close=u["silent"] < f.silent_close_after_auth,
            auth_delay_s=f.auth_latency.at(u["auth"]),
            degraded_auth_delay_s=f.degraded_auth_latency.at(u["auth"]),
            drop_after_s=low + (high - low) * u["drop_at"] if u["drop"] < f.drop_fraction else None,
            drop_code=f.drop_code,
            goodbye_unanswered=u["goodbye_unanswered"] < f.goodbye_unanswered,
            goodbye_delay_s=f.goodbye_delay.at(u["goodbye_delay"]),
            goodbye_refusals=f.goodbye_refusals if u["goodbye_refused"] < f.goodbye_refused else 0,
            goodbye_retry_after_s=f.goodbye_retry_after_s,
            anomaly=a.pick(u["anomaly"]),
            ping_flood=a.ping_flood_size if u["flood"] < a.ping_flood else 0,
        )

    def messages(self, seq: int) -> Iterator[MessagePlan]:
        """Plans for the accepted messages of session ``seq``, in order (endless)."""
        f = self.faults
        rng = self.rng(seq, "messages")
        low, high = self.agent_think_s
        while True:
            u = dict(zip(self.MESSAGE_DRAWS, (rng.random() for _ in self.MESSAGE_DRAWS), strict=True))
            late = u["late"] < f.out_of_order
            ack = f.ack_delay.at(u["ack"]) + (f.out_of_order_delay.at(u["late_delay"]) if late else 0.0)
            think = low + (high - low) * u["think"] + f.agent_delay.at(u["agent"])
            yield MessagePlan(ack_delay_s=ack, out_of_order=late, agent_delay_s=think)
