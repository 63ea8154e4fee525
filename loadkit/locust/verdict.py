"""``Verdict``: how one run is judged, live and at the end. No file I/O, no Locust.

Why a job of its own: the thresholds, the breach checks of
``--abort-on-breach``, the saturation check on the harness's CPU and the
rules for "the run stopped early" decide whether the figures
(``loadkit.locust.aggregation``) can be trusted and whether the target
passed; none of them adds anything up or writes anything.

The run's own end is decided by Locust: when a breach should stop the run,
``check_breach`` says why and the plugin asks Locust to quit.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from loadkit.report import thresholds as threshold_rules
from loadkit.report.build import verdict_of, verdict_reason
from loadkit.report.model import ThresholdRow

__all__ = ["PLANNED_SLACK_S", "Verdict", "iso"]

logger = logging.getLogger("loadkit")

#: A run that ends this close to its planned -t ran as planned. The time is counted from
#: the plugin's ``init`` (``timer_floor_mono``), which Locust runs before it starts its -t
#: timer: the timer cannot fire earlier than ``init + -t``, however long the spawn or our
#: test_start listener took (seen: 3 s on a busy CI machine, which made a -t stop look
#: like a quit and the verdict "interrupted").
PLANNED_SLACK_S = 1.0


class Verdict:
    """The thresholds, the breach checks, saturation and the "stopped early" rules of one run."""

    def __init__(self, options: Any, thresholds: list[Any], opts: Any) -> None:
        self.configure(options, thresholds, opts)
        #: threshold expression -> when its current unbroken breach began (monotonic)
        self.breach_since: dict[str, float] = {}
        #: why the run stopped before its planned run time, if it did: {"by", "why"}
        self.aborted: dict[str, Any] | None = None
        #: monotonic time the run began to stop; the signal that stopped it, if one did
        self.stopped_mono: float | None = None
        self.signalled: str | None = None
        #: no -t stop can come before this + -t: the plugin's init for the first test (Locust
        #: starts the -t timer after it), each later test's own start in the web UI
        self.timer_floor_mono = time.monotonic()

    def configure(self, options: Any, thresholds: list[Any], opts: Any) -> None:
        """The options of this test (the web UI may change them between tests)."""
        self.options = options
        self.thresholds = thresholds
        self.opts = opts

    def restart(self, started_mono: float, first_test: bool) -> None:
        """A new test: no breach, no abort, not stopping; a later web UI test's -t counts from its start."""
        self.breach_since = {}
        self.aborted = None
        self.stopped_mono = None
        if not first_test:
            self.timer_floor_mono = started_mono

    # -- validity: the harness's own CPU ------------------------------------------

    def saturation(self, cpu_samples: list[float]) -> dict[str, Any]:
        samples = cpu_samples[1:]  # Locust's first sample is always 0
        high = self.options.saturation_cpu
        above = sum(1 for c in samples if c > high)
        share = above / len(samples) if samples else 0.0
        return {
            "max_cpu_percent": max(samples) if samples else None,
            "samples": len(samples),
            "cpu_limit_percent": high,
            "share_saturated": round(share, 4),
            "limit": self.options.saturation_limit,
            "valid": share <= self.options.saturation_limit,
        }

    # -- live: --abort-on-breach --------------------------------------------------

    def wants_breach_checks(self) -> bool:
        return bool(self.options.abort_on_breach and self.thresholds) and not self.aborted

    def check_breach(self, live: dict[str, Any], started_mono: float) -> str | None:
        """Why the run must stop now (a breach that counts), or None. Records the abort."""
        rows = threshold_rules.evaluate_partial(self.thresholds, live)
        for r in rows:  # a breach that came back under its limit starts its grace again
            if r["passed"] is not False:
                self.breach_since.pop(r["expr"], None)
        if time.monotonic() - started_mono < self.options.breach_grace:
            rows = [r for r in rows if r.get("settled")]
        breached = [r for r in rows if r["passed"] is False and self._breach_counts(r)]
        if not breached:
            return None
        why = "; ".join(f"{r['expr']} (value {r['value']:.4g})" for r in breached)
        self.aborted = {"by": "breach", "why": f"--abort-on-breach: {why}", "at_mono": time.monotonic()}
        logger.error("loadkit: threshold breached, stopping the run: %s", why)
        return why

    def _breach_counts(self, row: ThresholdRow) -> bool:
        """A settled breach stops the run at once; an unsettled one once it has lasted the grace time.

        docs/thresholds.md: a count that only grows cannot come back under its
        limit (settled); a rate or a percentile may, so it must be breached
        in every check for ``--breach-grace`` seconds (sustained) first.
        """
        now = time.monotonic()
        since = self.breach_since.setdefault(row["expr"], now)
        if row.get("settled"):
            return True
        return bool(now - since >= self.options.breach_grace)

    # -- the end --------------------------------------------------------------------

    def planned_s(self) -> float | None:
        """The planned run time (``-t``), or None (a web UI run stopped by a person)."""
        value = getattr(self.opts, "run_time", None)
        return float(value) if value else None

    def aborted_info(self, started_mono: float | None, ended_wall: float) -> dict[str, Any] | None:
        """``run.aborted``: when and why a run stopped before its planned time, or None.

        Locust's ``-t`` ends the run at the planned time. A SIGINT (Ctrl-C) or
        SIGTERM before that interrupted it; so did any other quit that came
        before Locust's -t timer could have fired (``timer_floor_mono`` + -t,
        less the slack). One-sided on purpose: a slow start never turns a -t
        stop into "interrupted". A run with no ``-t`` has no planned end, so
        a person stopping it did not interrupt it.
        """
        planned = self.planned_s()
        stopped = self.stopped_mono or time.monotonic()
        after = None if started_mono is None else round(stopped - started_mono, 3)
        info = dict(self.aborted) if self.aborted else None
        if info is None and planned and self.signalled:
            info = {"by": "signal", "why": self.signalled}
        elif info is None and planned and started_mono is not None and \
                stopped - self.timer_floor_mono < planned - PLANNED_SLACK_S:
            info = {"by": "stop", "why": "stopped before the planned run time (a quit, not -t)"}
        if info is None:
            return None
        info.pop("at_mono", None)
        info.update(when=iso(ended_wall), after_s=after, planned_s=planned)
        return info

    def judge(self, report: dict[str, Any]) -> None:
        """The final report's thresholds, verdict and the verdict's reason, in place."""
        report["thresholds"] = threshold_rules.evaluate(self.thresholds, report)
        report["verdict"] = verdict_of(report)
        report["verdict_reason"] = verdict_reason(report, report["verdict"])


def iso(ts: float) -> str:
    """A wall-clock time as the report writes it: UTC, to the second, with ``Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
