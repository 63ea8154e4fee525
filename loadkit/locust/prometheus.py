"""loadkit's figures for Prometheus: ``/metrics`` on the web UI's port, or its own port.

Why: a soak runs for hours; people watch it in Grafana, not in a terminal.
Every scrape reads the same merged figures the report is built from (the
run's ``Recorder`` total: on a master, the sum of its workers' deltas), so
a Prometheus counter equals the report's count at the instant of the scrape.

Names and labels are a contract (README, "Watching a run live"); every label
value comes from the report catalogue's vocabularies (outcomes, session
phases, bad-frame kinds; ``other`` for anything else), the initiators and
the thresholds the user gave, never from text the target chose: a close
reason is left out, and a close code outside 1000-4999 is ``other``.
Counters restart from zero when a new test starts in the web UI or RESET
is pressed; Prometheus' ``rate()`` and ``increase()`` handle that as a
counter reset.

Latency histograms: the phase histograms are loadkit's own (µs, 11
significant bits); a Prometheus bucket ``le=B`` counts every loadkit bucket
whose lowest value is at most B, so a bucket count can be off by the
samples within 0.1 % above a bound.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from loadkit.errors import ConfigError
from loadkit.metrics.histogram import Histogram
from loadkit.metrics.recorder import HARNESS_LAG, HARNESS_SERIES, HARNESS_WAIT
from loadkit.report.catalogue import BAD_FRAME_KINDS, OUTCOMES, SESSION_PHASES

logger = logging.getLogger("loadkit")

#: Bucket bounds in seconds, for chat: sub-millisecond loopback to a 30-second stall.
BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Who sent the first close frame (``none``: the connection just ended).
INITIATORS = ("server", "client", "none")
#: loadkit_threshold_state values.
HOLDING, BREACHED, NOT_MEASURED = 1.0, 0.0, -1.0

#: Every metric loadkit exposes, name → help. Counters without their ``_total``.
METRICS: dict[str, str] = {
    "loadkit_sessions_started": "Sessions started (a guest's connection attempt, reconnects included).",
    "loadkit_sessions_authenticated": "Sessions that got their auth answer.",
    "loadkit_sessions_open": "Sessions started and not yet ended.",
    "loadkit_session_outcomes": "Ended sessions by outcome and by the phase they ended in.",
    "loadkit_close_codes": "Close codes by session phase and by who closed first (server, client, none).",
    "loadkit_drops": "Authenticated sessions that ended without the guest or the harness asking.",
    "loadkit_session_seconds": "Authenticated seconds of ended sessions (drops per session-hour: "
                               "3600 * rate(drops) / rate(session_seconds)).",
    "loadkit_reconnects": "Reconnect attempts after a drop (result=attempted) and those that "
                          "authenticated again (result=succeeded).",
    "loadkit_bad_frames": "Frames from the target loadkit could not use, by kind.",
    "loadkit_messages": "Guest messages: sent, and each one's end (answered, unanswered in 60 s, refused, "
                        "in_flight when its session ended): sent = the other four once no session is open.",
    "loadkit_phase_latency_seconds": "Latency of each lifecycle phase (token, connect, auth, message, ...).",
    "loadkit_recover_seconds": "Time from a drop to authenticated again.",
    "loadkit_threshold_state": "Each --threshold now: 1 holding, 0 breached, -1 not measured yet.",
    "loadkit_harness_lag_seconds": "Generator lag: how late the harness's timers woke (a harness effect).",
    "loadkit_harness_wait_seconds": "Time a token call waited inside the harness before it went on the wire.",
    "loadkit_workers": "Workers of a distributed run by state (master only).",
}


def _code_label(code: int) -> str:
    return str(code) if 1000 <= code <= 4999 else "other"


def _known(value: str, vocabulary: tuple[str, ...]) -> str:
    """A label value from the report catalogue's vocabulary, else ``other``: labels stay bounded."""
    return value if value in vocabulary else "other"


def _histogram(name: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, METRICS[name], labels=labels)


def _add(family: HistogramMetricFamily, values: list[str], hist: Histogram) -> None:
    keys = sorted(hist.counts)
    buckets: list[tuple[str, float]] = []
    i = seen = 0
    for bound in BUCKETS_S:
        limit = bound * 1_000_000
        while i < len(keys) and keys[i] <= limit:
            seen += hist.counts[keys[i]]
            i += 1
        buckets.append((repr(bound), float(seen)))
    buckets.append(("+Inf", float(hist.count)))
    family.add_metric(values, buckets, sum_value=hist.total / 1_000_000)


class LoadkitCollector:
    """Reads the run's figures at each scrape (``rt`` is the plugin's Runtime)."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        from loadkit.report import thresholds

        rt = self.rt
        rt.collect_local()  # a master has nothing local: its total is the workers' merge
        total = rt.total
        open_now = rt.open_sessions()  # the same instant as the counts (no switch in between)

        def counter(name: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, METRICS[name], value=value)

        yield counter("loadkit_sessions_started", total.started)
        yield counter("loadkit_sessions_authenticated", total.authenticated)
        yield GaugeMetricFamily("loadkit_sessions_open", METRICS["loadkit_sessions_open"], value=open_now)
        outcomes = CounterMetricFamily("loadkit_session_outcomes", METRICS["loadkit_session_outcomes"],
                                       labels=["outcome", "phase"])
        ended: dict[tuple[str, str], int] = {}
        for (outcome, phase), n in total.ended.items():
            key = (_known(outcome, OUTCOMES), _known(phase, SESSION_PHASES))
            ended[key] = ended.get(key, 0) + n
        for key, n in sorted(ended.items()):
            outcomes.add_metric(list(key), n)
        yield outcomes
        codes: dict[tuple[str, str, str], int] = {}
        for (phase, code, _reason, initiator), n in total.close_codes.items():
            code_key = (_code_label(code), _known(phase, SESSION_PHASES), _known(initiator, INITIATORS))
            codes[code_key] = codes.get(code_key, 0) + n
        closes = CounterMetricFamily("loadkit_close_codes", METRICS["loadkit_close_codes"],
                                     labels=["code", "phase", "initiator"])
        for code_key, n in sorted(codes.items()):
            closes.add_metric(list(code_key), n)
        yield closes
        yield counter("loadkit_drops", total.drops())
        yield counter("loadkit_session_seconds", total.session_seconds)
        reconnects = CounterMetricFamily("loadkit_reconnects", METRICS["loadkit_reconnects"], labels=["result"])
        reconnects.add_metric(["attempted"], total.reconnect_attempts)
        reconnects.add_metric(["succeeded"], total.reconnect_successes)
        yield reconnects
        bad = CounterMetricFamily("loadkit_bad_frames", METRICS["loadkit_bad_frames"], labels=["kind"])
        kinds: dict[str, int] = {}
        for (kind, _phase), n in total.bad_frames.items():  # loadkit's kinds (BAD_FRAME_KINDS)
            kinds[_known(kind, BAD_FRAME_KINDS)] = kinds.get(_known(kind, BAD_FRAME_KINDS), 0) + n
        for kind, n in sorted(kinds.items()):
            bad.add_metric([kind], n)
        yield bad
        messages = CounterMetricFamily("loadkit_messages", METRICS["loadkit_messages"], labels=["result"])
        for result, n in (("sent", total.messages_sent), ("answered", total.messages_answered),
                          ("unanswered", total.messages_unanswered), ("refused", total.messages_refused),
                          ("in_flight", total.messages_in_flight)):
            messages.add_metric([result], n)
        yield messages
        latency = _histogram("loadkit_phase_latency_seconds", ["phase"])
        for phase, hist in total.latency.items():
            if phase not in HARNESS_SERIES:
                _add(latency, [phase], hist)
        yield latency
        recover = _histogram("loadkit_recover_seconds", [])
        _add(recover, [], total.recover)
        yield recover
        for name, series in (("loadkit_harness_lag_seconds", HARNESS_LAG),
                             ("loadkit_harness_wait_seconds", HARNESS_WAIT)):
            family = _histogram(name, [])
            _add(family, [], total.latency.get(series) or Histogram())
            yield family
        state = GaugeMetricFamily("loadkit_threshold_state", METRICS["loadkit_threshold_state"],
                                  labels=["threshold"])
        if rt.thresholds:
            for row in thresholds.evaluate_partial(rt.thresholds, rt.build(final=False)):
                passed = row["passed"]
                state.add_metric([row["expr"]], NOT_MEASURED if passed is None else
                                 HOLDING if passed else BREACHED)
        yield state
        if rt.is_master:
            workers = GaugeMetricFamily("loadkit_workers", METRICS["loadkit_workers"], labels=["state"])
            states: dict[str, int] = {}
            for node in rt.environment.runner.clients.values():
                states[str(node.state)] = states.get(str(node.state), 0) + 1
            for name, n in sorted(states.items()):
                workers.add_metric([name], n)
            yield workers


def registry_for(rt: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoadkitCollector(rt))
    return registry


def install_route(web_ui: Any, rt: Any) -> None:
    """``GET /metrics`` on Locust's web UI (behind its login when one is set)."""
    from flask import Response

    registry = registry_for(rt)

    def _metrics() -> Any:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    web_ui.app.add_url_rule("/metrics", view_func=web_ui.auth_required_if_enabled(_metrics))


def serve(rt: Any, host: str, port: int) -> Any:
    """``/metrics`` on its own port (``--loadkit-metrics-port``), in this gevent process."""
    from gevent.pywsgi import WSGIServer
    from prometheus_client import make_wsgi_app

    server = WSGIServer((host, port), make_wsgi_app(registry_for(rt)), log=None, error_log=logger)
    try:
        server.start()
    except OSError as exc:
        raise ConfigError(f"--loadkit-metrics-port {port}: cannot listen on {host}:{port} "
                          f"({exc.strerror or exc}); choose a free port") from None
    logger.info("loadkit: Prometheus metrics at http://%s:%d/metrics", host, server.server_port)
    return server


def install(environment: Any, rt: Any) -> None:
    """``/metrics`` on the web UI, and on ``--loadkit-metrics-port`` when given (never on a worker)."""
    if rt.is_worker:
        return
    if getattr(environment, "web_ui", None) is not None:
        install_route(environment.web_ui, rt)
    port = str(getattr(rt.opts, "loadkit_metrics_port", "") or "").strip()
    if port:
        host = str(getattr(rt.opts, "loadkit_metrics_host", "") or "127.0.0.1")
        rt.metrics_server = serve(rt, host, int(port))
