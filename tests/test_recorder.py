"""The Recorder: what one ended session adds, drops, detach, exact merges, wire forms."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from loadkit.lifecycle import (
    DROP_OUTCOMES,
    Cause,
    Ending,
    Lifecycle,
    Outcome,
    Phase,
    Result,
    State,
    Step,
)
from loadkit.metrics.histogram import Histogram
from loadkit.metrics.recorder import DEFAULT_SURVIVAL_MARKS, HARNESS_SERIES, LATENCY_PHASES, Recorder
from loadkit.metrics.wire import Unpacker, WireError

JUST_AFTER_AUTH_S = 5.0
SERVER_CLOSE = (1012, "service restart", "server")


def snapshot(rec: Recorder) -> dict[str, Any]:
    """Everything a Recorder holds, in a form that compares by value (zero counts dropped)."""

    def hist(h: Histogram) -> tuple[Any, ...]:
        return (h.counts, h.count, h.total, h.min, h.max)

    return {
        "marks": tuple(rec.marks),
        "started": rec.started,
        "authenticated": rec.authenticated,
        "ended": +rec.ended,
        "close_codes": +rec.close_codes,
        "latency": {k: hist(h) for k, h in rec.latency.items() if h},
        "recover": hist(rec.recover),
        "errors": +rec.errors,
        "bad_frames": +rec.bad_frames,
        "bad_sessions": rec.bad_sessions,
        "messages": (rec.messages_sent, rec.messages_answered, rec.agent_messages),
        "reconnect": (rec.reconnect_attempts, rec.reconnect_successes),
        "missed_pongs": rec.missed_pongs,
        "session_seconds": rec.session_seconds,
        "survived": hist(rec.survived),
        "dropped_at": hist(rec.dropped_at),
        "failures": +rec.failures,
        "expected": (+rec.expected_authenticated, +rec.expected_drops, +rec.expected_outcomes),
    }


def established(outcome: Outcome, phase: Phase = Phase.ESTABLISHED) -> Result:
    return Result(outcome, phase, authenticated=True)


def during_auth(outcome: Outcome) -> Result:
    return Result(outcome, Phase.DURING_AUTH, authenticated=False)


# -- session_ended ---------------------------------------------------------------


def test_an_ended_session_is_counted_by_outcome_and_phase() -> None:
    rec = Recorder()
    rec.session_ended(established(Outcome.DROPPED_BY_SERVER), 12.0, SERVER_CLOSE)
    rec.session_ended(established(Outcome.DROPPED_BY_SERVER), 13.0, SERVER_CLOSE)
    rec.session_ended(during_auth(Outcome.AUTH_REFUSED), 0.0, (1000, "", "server"))
    rec.session_ended(Result(Outcome.TOKEN_REFUSED, Phase.TOKEN, False), 0.0, None)
    assert rec.ended == {
        ("dropped_by_server", "established"): 2,
        ("auth_refused", "during_auth"): 1,
        ("token_refused", "token"): 1,
    }
    assert rec.ended_total == 4
    assert rec.outcomes() == {"auth_refused": 1, "dropped_by_server": 2, "token_refused": 1}
    assert list(rec.outcomes()) == sorted(rec.outcomes())


def test_a_close_is_counted_by_phase_code_reason_and_initiator() -> None:
    rec = Recorder()
    rec.session_ended(during_auth(Outcome.AUTH_REFUSED), 0.0, (1000, "", "server"))
    rec.session_ended(established(Outcome.DROPPED_BY_SERVER, Phase.JUST_AFTER_AUTH), 1.0, SERVER_CLOSE)
    rec.session_ended(established(Outcome.DROPPED_BY_SERVER, Phase.JUST_AFTER_AUTH), 2.0, SERVER_CLOSE)
    assert rec.close_codes == {
        ("during_auth", 1000, "", "server"): 1,
        ("just_after_auth", 1012, "service restart", "server"): 2,
    }


def test_a_session_ended_without_a_socket_counts_no_close_code() -> None:
    rec = Recorder()
    rec.session_ended(Result(Outcome.CONNECT_REFUSED, Phase.BEFORE_OPEN, False), 0.0, None)
    assert not rec.close_codes and rec.ended_total == 1


def test_only_authenticated_sessions_add_session_seconds() -> None:
    rec = Recorder()
    rec.session_ended(established(Outcome.CLOSED_NORMALLY), 30.5, None)
    rec.session_ended(established(Outcome.CONNECTION_LOST), 10.25, None)
    rec.session_ended(during_auth(Outcome.AUTH_TIMEOUT), 99.0, None)
    assert rec.session_seconds == 40.75


def test_an_authenticated_session_is_censored_at_its_age_unless_it_dropped() -> None:
    rec = Recorder(marks=(60, 300, 1800))
    rec.session_ended(established(Outcome.CLOSED_NORMALLY), 300.0, None)
    rec.session_ended(established(Outcome.DROPPED_BY_SERVER), 299.9, SERVER_CLOSE)
    assert (rec.survived.count, rec.survived.max) == (1, 300_000)
    assert (rec.dropped_at.count, rec.dropped_at.max) == (1, 299_900)


@pytest.mark.parametrize("outcome", sorted(set(Outcome) - DROP_OUTCOMES))
def test_a_session_that_ended_without_a_drop_is_censored(outcome: Outcome) -> None:
    rec = Recorder(marks=(60, 300))
    rec.session_ended(established(outcome), 120.0, None)
    assert rec.survived.count == 1 and rec.dropped_at.count == 0


@pytest.mark.parametrize("outcome", sorted(Outcome))
def test_a_session_that_never_authenticated_is_not_at_risk(outcome: Outcome) -> None:
    rec = Recorder(marks=(60,))
    rec.session_ended(during_auth(outcome), 0.0, None)
    rec.session_ended(during_auth(outcome), 100.0, None)  # even with a nonsense duration
    assert not rec.survived and not rec.dropped_at
    assert rec.drops() == 0


def test_failures_before_auth_keep_their_detail_bounded_per_outcome() -> None:
    rec = Recorder()
    for i in range(40):
        rec.session_ended(Result(Outcome.TOKEN_REFUSED, Phase.TOKEN, False), 0.0, None, f"HTTP {500 + i % 20}")
    rec.session_ended(Result(Outcome.STOPPED_BY_HARNESS, Phase.TOKEN, False), 0.0, None, "stopping")
    assert sum(rec.failures.values()) == 40
    assert rec.failures[("token_refused", "HTTP 500")] == 2
    assert len(rec.failures) == 17 and rec.failures[("token_refused", "other")] == 8
    other = Recorder()
    other.merge(rec)
    assert other.failures == rec.failures


# -- drops -------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", sorted(Outcome))
def test_drops_counts_drop_outcomes_of_authenticated_sessions_only(outcome: Outcome) -> None:
    rec = Recorder()
    rec.session_ended(established(outcome), 40.0, None)
    rec.session_ended(established(outcome, Phase.JUST_AFTER_AUTH), 1.0, None)
    rec.session_ended(during_auth(outcome), 0.0, None)
    rec.session_ended(Result(outcome, Phase.BEFORE_OPEN, False), 0.0, None)
    rec.session_ended(Result(outcome, Phase.TOKEN, False), 0.0, None)
    assert rec.drops() == (2 if outcome in DROP_OUTCOMES else 0)


def test_a_guest_meant_to_be_dropped_is_counted_apart_from_drops_rate_and_survival() -> None:
    rec = Recorder(marks=(30,))
    for _ in range(3):
        rec.session_authenticated()
    rec.session_authenticated("no_keepalive")
    rec.session_authenticated("no_keepalive")
    rec.session_ended(established(Outcome.DROPPED_BY_SERVER), 31.0, (1001, "idle timeout", "server"),
                      expected_drop="no_keepalive")
    rec.session_ended(established(Outcome.CLOSED_NORMALLY), 10.0, None, expected_drop="no_keepalive")
    rec.session_ended(established(Outcome.DROPPED_BY_SERVER), 40.0, SERVER_CLOSE)
    rec.session_ended(established(Outcome.CLOSED_NORMALLY), 50.0, None)
    # the close and the outcome are counted as any other: the gateway's record still matches
    assert rec.ended[(Outcome.DROPPED_BY_SERVER.value, Phase.ESTABLISHED.value)] == 2
    assert rec.close_codes[("established", 1001, "idle timeout", "server")] == 1
    assert rec.expected_drops == Counter({"no_keepalive": 1})
    assert rec.expected_authenticated == Counter({"no_keepalive": 2})
    assert rec.drops() == 1
    assert rec.at_risk_authenticated() == 3
    # neither the silent guest's drop nor its normal end is in survival or session time
    assert rec.dropped_at.count == 1 and rec.survived.count == 1
    assert rec.session_seconds == 90.0


def test_drops_equals_the_number_of_results_that_are_drops_for_random_sessions() -> None:
    rng = random.Random(11)
    rec = Recorder()
    results = [random_session(rng)[0] for _ in range(2000)]
    for result in results:
        rec.session_ended(result, 1.0, None)
    assert rec.drops() == sum(r.is_drop for r in results) > 0


# -- detach --------------------------------------------------------------------------


def test_detach_returns_everything_recorded_and_leaves_an_empty_recorder() -> None:
    rec = Recorder(marks=(30, 90))
    ops = random_ops(random.Random(3), 300)
    for op in ops:
        op(rec)
    reference = Recorder(marks=(30, 90))
    for op in ops:
        op(reference)
    detached = rec.detach()
    assert snapshot(detached) == snapshot(reference)
    assert snapshot(rec) == snapshot(Recorder(marks=(30, 90)))
    assert rec.is_empty() and rec.marks == (30, 90)


def test_what_is_recorded_after_a_detach_does_not_leak_into_the_detached_part() -> None:
    rec = Recorder()
    rec.session_started()
    rec.observe("auth", 1500)
    rec.errors["4029"] += 1
    detached = rec.detach()
    before = snapshot(detached)
    rec.session_started()
    rec.observe("auth", 2500)
    rec.errors["4029"] += 1
    rec.session_ended(established(Outcome.CONNECTION_LOST), 70.0, None)
    assert snapshot(detached) == before
    assert rec.started == 1 and rec.latency["auth"].count == 1 and rec.errors == {"4029": 1}


def test_a_fresh_recorder_is_empty_and_has_every_latency_phase() -> None:
    rec = Recorder()
    assert rec.is_empty()
    assert set(rec.latency) == {*LATENCY_PHASES, *HARNESS_SERIES}
    assert rec.marks == DEFAULT_SURVIVAL_MARKS


# -- merge ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_merge_of_recorders_equals_one_fed_every_event(seed: int) -> None:
    rng = random.Random(seed)
    ops = random_ops(rng, 600)
    parts = [Recorder() for _ in range(3)]
    whole = Recorder()
    for op in ops:
        op(rng.choice(parts))
        op(whole)
    merged = Recorder()
    for part in parts:
        merged.merge(part)
    assert snapshot(merged) == snapshot(whole)
    assert merged.drops() == whole.drops()


def test_merging_an_empty_recorder_changes_nothing() -> None:
    rec = Recorder()
    for op in random_ops(random.Random(5), 200):
        op(rec)
    before = snapshot(rec)
    rec.merge(Recorder())
    assert snapshot(rec) == before


# -- wire -------------------------------------------------------------------------------


CODECS: dict[str, Callable[[Any], Any]] = {
    "dict": lambda d: d,
    # what the master receives: Locust's msgpack options both ways
    "msgpack": lambda d: msgpack.unpackb(msgpack.packb(d, use_bin_type=True), raw=False, strict_map_key=False),
}


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("seed", [None, 0, 1, 2])
def test_to_wire_then_from_wire_gives_the_same_recorder(codec: str, seed: int | None) -> None:
    rec = Recorder(marks=(10, 60, 300))
    if seed is not None:
        for op in random_ops(random.Random(seed), 500):
            op(rec)
    back = Recorder.from_wire(CODECS[codec](rec.to_wire()))
    assert snapshot(back) == snapshot(rec)
    assert back.drops() == rec.drops() and back.outcomes() == rec.outcomes()


@pytest.mark.parametrize("codec", CODECS)
def test_worker_deltas_shipped_over_the_wire_add_up_to_the_whole_run(codec: str) -> None:
    rng = random.Random(99)
    worker, whole, master = Recorder(), Recorder(), Recorder()
    for _ in range(5):
        for op in random_ops(rng, 100):
            op(worker)
            op(whole)
        master.merge(Recorder.from_wire(CODECS[codec](worker.detach().to_wire())))
    assert snapshot(master) == snapshot(whole)


def test_every_field_of_the_recorder_crosses_the_wire_and_merges() -> None:
    # the encoding is generic over the fields: one that is set travels and adds up
    rng = random.Random(3)
    full = Recorder()
    for op in random_ops(rng, 2000):
        op(full)
    for name in Recorder.__slots__:  # what random sessions left empty, set by the field's type
        value = getattr(full, name)
        if name in Recorder.CONFIG_FIELDS or value:
            continue
        if isinstance(value, Histogram):
            value.record(rng.randrange(10**7))
        elif isinstance(value, Counter):
            value[rng.choice(["x", 4001, ("a", 2)])] += 2  # type: ignore[index]
        else:
            setattr(full, name, type(value)(3))
    wire = full.to_wire()
    blank = Recorder()
    fields = Unpacker(wire).fields  # the report's fields, deflated with its histograms
    for name in Recorder.__slots__:
        if name not in Recorder.CONFIG_FIELDS:
            assert name in fields, name
    twice = Recorder.from_wire(CODECS["msgpack"](wire))
    twice.merge(Recorder.from_wire(wire))
    doubled = Recorder()
    doubled.merge(full)
    doubled.merge(full)
    assert snapshot(twice) == snapshot(doubled)
    assert blank.is_empty() and not full.is_empty()


def test_a_report_from_another_version_is_refused_with_what_to_do() -> None:
    rec = Recorder()
    rec.session_started()
    wire = rec.to_wire()
    legacy = {k: v for k, v in wire.items() if k != "v"}  # before versions: no "v"
    with pytest.raises(WireError, match="version 1, this loadkit reads version 4: run the same loadkit"):
        Recorder.from_wire(legacy)
    for other in (2, 3, 5):  # 2: a deflated stream per histogram; 3: deflated parts; 5: the future
        with pytest.raises(WireError, match=f"version {other}, this loadkit reads version 4"):
            Recorder.from_wire({**wire, "v": other})


# -- helpers: random but realistic sessions and events ----------------------------------


_CLOSES = [(1000, "", "server"), (4001, "unauthorized", "server"), (4003, "forbidden", "server"),
           (4008, "auth timeout", "server"), (1001, "idle timeout", "server"),
           (1012, "service restart", "server"), (1011, "internal error", "server"),
           (1013, "try again later", "server"), (4006, "session expired", "server"),
           (4029, "rate limit", "server"), (1006, "", "none"), (1000, "", "client")]


def random_session(rng: random.Random) -> tuple[Result, float, tuple[int, str, str] | None]:
    """Walk a Lifecycle a random way through the table and end it a random way."""
    lc = Lifecycle(0.0)
    now = 0.0
    path = rng.choice([[], [Step.BEGIN], [Step.BEGIN, Step.TOKEN_OK], [Step.RESUME, Step.OPENED],
                       [Step.BEGIN, Step.TOKEN_OK, Step.OPENED, Step.AUTH_OK],
                       [Step.RESUME, Step.OPENED, Step.AUTH_OK, Step.CLOSE_SENT]])
    for step in path or [Step.BEGIN]:
        now += rng.randrange(1, 40) / 4
        lc.step(step, now)
    now += rng.randrange(0, 4000) / 4
    socket_open = lc.state in (State.AUTHENTICATING, State.ESTABLISHED, State.CLOSING)
    close = rng.choice(_CLOSES) if socket_open else None
    cause = Cause.CLOSED if close and rng.random() < 0.7 else rng.choice(list(Cause))
    ending = Ending(cause, *(close or ()), expired=rng.random() < 0.05)
    result = lc.end(ending, now, JUST_AFTER_AUTH_S)
    return result, lc.established_s(now), close


def random_ops(rng: random.Random, n: int) -> list[Callable[[Recorder], None]]:
    """``n`` recorder updates, as the session driver makes them."""
    ops: list[Callable[[Recorder], None]] = []

    def add(op: Callable[[Recorder], None]) -> None:
        ops.append(op)

    for _ in range(n):
        kind = rng.randrange(8)
        if kind == 0:
            add(lambda r: r.session_started())
        elif kind == 1:
            add(lambda r: r.session_authenticated())
        elif kind == 2:
            phase, value = rng.choice(LATENCY_PHASES), int(rng.lognormvariate(8, 2))
            add(lambda r, phase=phase, value=value: r.observe(phase, value))
        elif kind == 3:
            result, est, close = random_session(rng)
            apart = rng.choice([None, None, None, "no_keepalive"])
            meant = rng.random() < 0.2
            add(lambda r, a=(result, est, close), apart=apart, meant=meant:
                r.session_ended(*a, expected_drop=apart, expected=meant))
        elif kind == 4:
            code = rng.choice(["4029", "4011", "4400", "4001"])
            add(lambda r, code=code: r.errors.update([code]))
        elif kind == 5:
            what = (rng.choice(["not_json", "unmatched_answer", "binary_frame"]),
                    rng.choice(["during_auth", "established"]))

            def bad(r: Recorder, what: tuple[str, str] = what) -> None:
                r.bad_frames.update([what])
                r.bad_sessions += 1
                r.messages_sent += 2
                r.messages_answered += 1
                r.agent_messages += 1
            add(bad)
        elif kind == 6:
            value = rng.randrange(1, 10**8)

            def reconnected(r: Recorder, value: int = value) -> None:
                r.reconnect_attempts += 1
                r.reconnect_successes += 1
                r.recover.record(value)
            add(reconnected)
        else:
            def missed(r: Recorder) -> None:
                r.missed_pongs += 1
                r.reconnect_attempts += 1
            add(missed)
    return ops
