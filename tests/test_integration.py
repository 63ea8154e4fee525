"""The harness against the real reference gateway: counts equal ground truth."""

from __future__ import annotations

import pytest

from tests.harness import assert_auth_answers_timed, assert_matches_gateway, codes_by, run_locust, settled_stats

pytestmark = pytest.mark.slow

FAST = ("--session-seconds", "1-2", "--keepalive-interval", "0.5", "--message-interval", "0.2-0.4",
        "--guest-pause", "0-0.2")


def test_harness_counts_equal_the_gateways_ground_truth(tmp_path, gateway):
    run = run_locust(tmp_path, "--host", gateway.url, *FAST, users=12, run_time="5s")
    assert run.returncode == 0, run.stderr[-2000:]
    report = run.report
    # -t means what it says: gevent's timer is armed on a fresh clock, not one as old as the imports
    assert report["run"]["duration_s"] >= 5 - 0.5, report["run"]
    stats = settled_stats(gateway)
    assert_matches_gateway(report, stats)
    s = report["sessions"]
    assert s["authenticated"] >= 12
    assert s["outcomes"]["closed_normally"] >= 12
    assert set(s["outcomes"]) <= {"closed_normally", "stopped_by_harness"}
    assert report["drops"] == 0
    # every session the gateway opened is one the harness got past the upgrade, or one
    # the stop caught after the request went out but before the 101 was read (the
    # gateway opened it; the harness never saw it open): only stopped ones may differ
    never_opened = sum(sum(s["by_phase"].get(p, {}).values()) for p in ("token", "before_open"))
    caught = s["by_phase"].get("before_open", {}).get("stopped_by_harness", 0)
    assert 0 <= stats["sessions"]["opened"] - (s["started"] - never_opened) <= caught, (stats["sessions"], s)
    # the phase latencies were measured, at sub-millisecond resolution
    lat = report["latency_ms"]
    for phase in ("token", "connect", "auth", "message", "ping"):
        assert lat[phase]["count"] > 0, phase
        assert lat[phase]["p50"] <= lat[phase]["p95"] <= lat[phase]["p99"] <= lat[phase]["max"]
    assert lat["message"]["count"] <= stats["frames_sent"]["ack"]
    assert lat["ping"]["count"] <= stats["frames_sent"]["pong"]
    # every answered message is timed or counted untimed (read once the run was stopping), and every
    # one of them is an ack the gateway sent; so is every pong
    untimed = report["harness"]["untimed_at_stop"]
    assert lat["message"]["count"] + untimed.get("message", 0) == report["messages"]["answered"]
    assert report["messages"]["answered"] <= stats["frames_sent"]["ack"]
    assert lat["ping"]["count"] + untimed.get("ping", 0) <= stats["frames_sent"]["pong"]
    assert_auth_answers_timed(report, stats["frames_sent"]["auth_ok"])
    # the time series has one row per window, counts adding up to the total
    assert run.series, "no time-series rows"
    assert sum(r["started"] for r in run.series) == s["started"]
    assert "loadkit summary" in run.stdout


@pytest.mark.parametrize(
    ("behaviour", "gateway_settings", "code", "reason", "outcome", "phase"),
    [
        ("wrong_case", {}, 1000, "", "auth_refused", "during_auth"),
        ("command_auth", {}, 1000, "", "auth_refused", "during_auth"),
        ("bad_token", {}, 1000, "", "auth_refused", "during_auth"),
        ("bad_token", {"auth_failure": "explicit"}, 4001, "unauthorized", "auth_refused", "during_auth"),
        ("normal", {"token_scopes": ""}, 4003, "forbidden", "auth_refused", "during_auth"),
        ("no_auth", {"auth_deadline_s": 0.5}, 4008, "auth timeout", "auth_timeout", "during_auth"),
        ("no_keepalive", {"idle_timeout_s": 1}, 1001, "idle timeout", "dropped_by_server", "just_after_auth"),
    ],
)
def test_each_failure_of_the_seed_thread_shows_under_its_phase_and_code(
        tmp_path, gateway_factory, behaviour, gateway_settings, code, reason, outcome, phase):
    gw = gateway_factory(**gateway_settings)
    run = run_locust(tmp_path, "--host", gw.url, *FAST, "--guest-mix", f"{behaviour}=1",
                     "--reconnect-max-attempts", "0", users=4, run_time="4s")
    report = run.report
    assert report is not None, run.stderr[-2000:]
    stats = settled_stats(gw)
    assert_matches_gateway(report, stats)
    rows = codes_by(report["close_codes"], "phase", "code", "reason", "initiator")
    assert rows.get((phase, code, reason, "server"), 0) >= 1, rows
    assert report["sessions"]["by_phase"][phase][outcome] == rows[(phase, code, reason, "server")], \
        (report["sessions"]["by_phase"], rows)
    if outcome != "dropped_by_server":
        assert report["sessions"]["authenticated"] == 0
        assert report["drops"] == 0
    else:
        # a silent guest's idle-timeout close is the gateway doing its job: an expected
        # drop, counted apart by behaviour and never in drops or the drop rate
        dropped = report["sessions"]["by_phase"][phase][outcome]
        assert report["expected_drops"]["count"] == dropped
        assert report["expected_drops"]["by_behaviour"][behaviour]["dropped"] == dropped
        assert report["expected_drops"]["by_behaviour"][behaviour]["authenticated"] == \
            report["sessions"]["authenticated"]
        assert report["drops"] == 0
        assert report["drop_rate"] is None  # nobody expected to stay up authenticated


def test_error_frames_are_counted_like_the_gateway_sent_them(tmp_path, gateway_factory):
    gw = gateway_factory(rate_limit_per_s=2)
    run = run_locust(tmp_path, "--host", gw.url, *FAST, "--guest-mix", "fast_messages=1",
                     "--reconnect-max-attempts", "0", users=3, run_time="4s")
    stats = settled_stats(gw)
    assert_matches_gateway(run.report, stats)
    assert run.report["errors"].get("4029", 0) == stats["errors_sent"]["4029"] > 0
    # each refusal the gateway sent refused one message (or ping) the harness counts as refused; one read
    # while its session was closing is counted as an error frame, its message as in flight
    refused = run.report["messages"]["refused"] + run.report["keepalive"]["refused"]
    assert 0 < refused <= stats["errors_sent"]["4029"], (refused, stats["errors_sent"])
    rows = codes_by(run.report["close_codes"], "code", "reason")
    assert rows[(4029, "rate limit")] == codes_by(stats["closes"], "code", "reason")[(4029, "rate limit")]
