"""Drift: each phase's latency over the run's first series windows and over its last. Pure.

Why spans of windows and not one window each: a drift gate
(``drift.message.p95 < 1.5``) is there to catch a target that gets slower
over hours, and a single series window (a minute, in a soak) cannot tell
that from one minute's noise. On loopback against the reference gateway,
on a quiet machine, message p95 moved between 1.2 and 7.5 ms from one 60 s
window to the next, so a 4-hour soak whose last minute was judged against
its first could breach 1.5× on a healthy target by chance (or pass a
degraded one because its last minute happened to be quick).

So the gates compare the first ``SPAN`` windows with the last ``SPAN``,
each span's histograms merged (exact percentiles of all its samples, not
an average of per-window percentiles). A short run uses fewer: at most a
third of its windows each, and for a phase seen in only some windows (auth
after the spawn, say) at most half of those, so the two spans never share a
window. What it keeps is bounded: ``2 × SPAN`` histograms per phase.
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
    """The first and last ``SPAN`` windows' latency histograms of every phase."""

    __slots__ = ("_head", "_tail", "_seen", "_cached")

    def __init__(self) -> None:
        self._head: dict[str, list[Histogram]] = {}
        self._tail: dict[str, deque[Histogram]] = {}
        #: phase -> windows that had samples of it
        self._seen: dict[str, int] = {}
        self._cached: tuple[int, dict[str, Any]] | None = None

    def add_window(self, latency: Mapping[str, Histogram]) -> None:
        """One closed window's histograms (each with samples); they must not change afterwards."""
        for phase, hist in latency.items():
            head = self._head.setdefault(phase, [])
            if len(head) < SPAN:
                head.append(hist)
            tail = self._tail.get(phase)
            if tail is None:
                tail = self._tail[phase] = deque(maxlen=SPAN)
            tail.append(hist)
            self._seen[phase] = self._seen.get(phase, 0) + 1
        self._cached = None

    def spans(self, windows: int) -> dict[str, Any]:
        """``{"span_windows": {phase: n}, "first": {phase: {p50, p95, p99}}, "last": {...}}`` in ms.

        ``windows`` is how many series windows the run has closed: each span
        is at most a third of them.
        """
        if self._cached is not None and self._cached[0] == windows:
            return self._cached[1]
        most = max(1, min(SPAN, windows // 3))
        used: dict[str, int] = {}
        first: dict[str, dict[str, Any]] = {}
        last: dict[str, dict[str, Any]] = {}
        for phase, head in self._head.items():
            n = max(1, min(most, self._seen[phase] // 2))
            used[phase] = n
            first[phase] = _percentiles(head[:n])
            last[phase] = _percentiles(list(self._tail[phase])[-n:])
        out = {"span_windows": used, "first": first, "last": last}
        self._cached = (windows, out)
        return out


def _percentiles(hists: list[Histogram]) -> dict[str, Any]:
    if len(hists) == 1:
        merged = hists[0]
    else:
        merged = Histogram()
        for hist in hists:
            merged.merge(hist)
    summary = merged.summary_ms(_STATS)
    return {f"p{p}": summary[f"p{p}"] for p in _STATS}
