"""Drift: each phase's latency over the run's first series windows and over its last. Pure.

Why spans of windows and not one window each: a drift gate
(``drift.message.p95 < 1.5``) is there to catch a target that gets slower
over hours, and a single series window (a minute, in a soak) cannot tell
that from one minute's noise. A 60-minute run of ``config/soak.toml``
against the healthy reference gateway, on a quiet machine, failed
``drift.auth.p95 < 1.5`` that way (1.55: the p95 of the last minute's 55
auths against the spawn's first minute), and its message p95 moved between
1.2 and 7.5 ms from one minute to the next.

So the gates compare the run's first ``SPAN`` windows with its last
``SPAN``, each span's histograms merged (exact percentiles of all its
samples, not an average of per-window percentiles). A short run uses
fewer: at most a third of its windows a side, so the sides never share a
window. The spans are positions in the run, not "the windows in which the
phase was seen": a phase with no samples in the last span (auth in a soak
shorter than its sessions: every auth happened in the spawn) has no last
side, and its drift is not measured rather than the spawn's first minute
against its second. What it keeps is bounded: ``2 × SPAN`` windows'
histograms.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from loadkit.metrics.histogram import Histogram

__all__ = ["SPAN", "Drift"]

#: Series windows in each span, at most (five minutes at a soak's 60 s windows).
SPAN = 5
_STATS = (50, 95, 99)


class Drift:
    """The first and the last ``SPAN`` series windows' latency histograms, by phase."""

    __slots__ = ("_head", "_tail", "windows", "_cached")

    def __init__(self) -> None:
        self._head: list[Mapping[str, Histogram]] = []
        self._tail: deque[Mapping[str, Histogram]] = deque(maxlen=SPAN)
        #: series windows added so far
        self.windows = 0
        self._cached: dict[str, Any] | None = None

    def add_window(self, latency: Mapping[str, Histogram]) -> None:
        """One closed window's histograms, by phase (only phases with samples); they must not change afterwards."""
        if len(self._head) < SPAN:
            self._head.append(latency)
        self._tail.append(latency)
        self.windows += 1
        self._cached = None

    def spans(self) -> dict[str, Any]:
        """``{"span_windows": n, "first": {phase: {p50, p95, p99}}, "last": {...}}``, in ms.

        A phase is in ``first`` (``last``) only if it has samples in the first (last) ``n`` windows.
        """
        if self._cached is not None:
            return self._cached
        n = max(1, min(SPAN, self.windows // 3))
        out = {"span_windows": n, "first": _merged(self._head[:n]), "last": _merged(list(self._tail)[-n:])}
        self._cached = out
        return out


def _merged(windows: list[Mapping[str, Histogram]]) -> dict[str, dict[str, Any]]:
    """Each phase's percentiles over ``windows``, its samples merged."""
    by_phase: dict[str, list[Histogram]] = {}
    for latency in windows:
        for phase, hist in latency.items():
            by_phase.setdefault(phase, []).append(hist)
    out: dict[str, dict[str, Any]] = {}
    for phase, hists in by_phase.items():
        if len(hists) == 1:
            merged = hists[0]
        else:
            merged = Histogram()
            for hist in hists:
                merged.merge(hist)
        summary = merged.summary_ms(_STATS)
        out[phase] = {f"p{p}": summary[f"p{p}"] for p in _STATS}
    return out
