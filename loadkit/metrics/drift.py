"""Drift: each phase's latency early in the run's steady state against its last series windows. Pure.

Why spans of windows and not one window each: a drift gate
(``drift.message.p95 < 1.5``) is there to catch a target that gets slower
over hours, and a single series window (a minute, in a soak) cannot tell
that from one minute's noise. A 60-minute run of ``config/soak.toml``
against the healthy reference gateway, on a quiet machine, failed
``drift.auth.p95 < 1.5`` that way (1.55: the p95 of the last minute's 55
auths against the spawn's first minute), and its message p95 moved between
1.2 and 7.5 ms from one minute to the next. So each side merges up to
``SPAN`` windows' histograms (exact percentiles of all its samples, not an
average of per-window percentiles); a short run uses fewer, at most a third
of its windows a side, so the sides never share a window.

Why the first side skips the spawn: while users are being spawned the
target does every guest's token call, upgrade and auth at once, on top of
the sessions already open. In 4-minute runs of ``config/soak.toml`` the
spawn's windows read message p95 5.5 ms against 3.4 in the steady windows
after it: a first side taken there makes a later slowdown look smaller
(a gateway whose latency grows with the number of open sessions would
look worse instead). The caller marks each window steady or not (its
Locust glue: a window that began once the spawn had completed); the first
side is taken from steady windows only.

Why the first side is "the first steady windows in which the phase was
seen" and the last side is "the run's last windows": a phase may have no
samples early in the steady state (auth in a soak whose sessions last 30–65
minutes: every auth is in the spawn, then the re-auths begin at 30 minutes);
its first side is then its first steady auths, not the spawn's. At the end,
a phase with no samples in the last windows (a soak shorter than its
sessions) has no last side, and its drift is not measured rather than two
of the spawn's minutes judged against each other.

What it keeps is bounded: ``SPAN`` windows' histograms per phase for the
first side and the last ``SPAN`` windows for the last.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from loadkit.metrics.histogram import Histogram

__all__ = ["SPAN", "Drift"]

#: Series windows in each span, at most (five minutes at a soak's 60 s windows).
SPAN = 5
#: the percentiles each side reports (with count, min, mean and max: every statistic a drift gate may name)
_PERCENTILES = (50, 90, 95, 99)


class Drift:
    """Each phase's first ``SPAN`` steady windows with samples, and the run's last ``SPAN`` windows."""

    __slots__ = ("_head", "_tail", "windows", "steady_from", "_cached")

    def __init__(self) -> None:
        #: phase -> [(window index, histogram)]: its first SPAN steady windows with samples
        self._head: dict[str, list[tuple[int, Histogram]]] = {}
        self._tail: deque[Mapping[str, Histogram]] = deque(maxlen=SPAN)
        #: series windows added so far
        self.windows = 0
        #: index of the first steady window, None while there is none
        self.steady_from: int | None = None
        self._cached: dict[str, Any] | None = None

    def add_window(self, latency: Mapping[str, Histogram], steady: bool = True) -> None:
        """One closed window's histograms, by phase (only phases with samples); they must not change afterwards.

        ``steady``: the window may be a first side (it began after the spawn).
        """
        index = self.windows
        if steady:
            if self.steady_from is None:
                self.steady_from = index
            for phase, hist in latency.items():
                kept = self._head.setdefault(phase, [])
                if len(kept) < SPAN:
                    kept.append((index, hist))
        self._tail.append(latency)
        self.windows = index + 1
        self._cached = None

    def spans(self) -> dict[str, Any]:
        """``{"span_windows": n, "steady_from_window": k, "first": {phase: stats}, "last": {...}}``, in ms.

        ``stats`` is the merged histogram's ``summary_ms`` (count, min, mean,
        p50, p90, p95, p99, max) and ``from_window``, the side's first window. A phase is in
        ``first`` if it has samples in a steady window before the last ``n``
        (its first ``n`` such windows merged), in ``last`` if it has samples
        in the last ``n`` windows.
        """
        if self._cached is not None:
            return self._cached
        n = max(1, min(SPAN, self.windows // 3))
        before_last = self.windows - n
        first: dict[str, dict[str, Any]] = {}
        for phase, kept in self._head.items():
            early = [(i, h) for i, h in kept if i < before_last][:n]
            if early:
                first[phase] = _stats([h for _i, h in early], early[0][0])
        last_windows = list(self._tail)[-n:]
        last: dict[str, dict[str, Any]] = {}
        for phase in {p for w in last_windows for p in w}:
            hists = [w[phase] for w in last_windows if phase in w]
            last[phase] = _stats(hists, before_last + next(i for i, w in enumerate(last_windows) if phase in w))
        out = {"span_windows": n, "steady_from_window": self.steady_from, "first": first,
               "last": dict(sorted(last.items()))}
        self._cached = out
        return out


def _stats(hists: list[Histogram], from_window: int) -> dict[str, Any]:
    """One side of one phase: ``hists`` merged; its percentiles, sample count and first window."""
    if len(hists) == 1:
        merged = hists[0]
    else:
        merged = Histogram()
        for hist in hists:
            merged.merge(hist)
    out: dict[str, Any] = merged.summary_ms(_PERCENTILES)
    out["from_window"] = from_window
    return out
