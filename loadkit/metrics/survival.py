"""Session survival as a censored estimate (Kaplan-Meier), with Greenwood's variance.

Why an estimator and not a share: a run ends, and most sessions end
normally, long before a 30-minute mark. A session that closed normally at
40 s says nothing about whether it would have survived 30 minutes; counting
it as "did not reach 30m" (or leaving it out while counting every drop)
biases the figure. Kaplan-Meier treats a drop as an *event* and every other
end (a normal close, a harness stop, still open at the end) as *censored* at
the session's age: the session was observed alive up to then, no further.

Ages are kept in two mergeable :class:`~loadkit.metrics.histogram.Histogram`
objects (milliseconds, buckets of 11 significant bits), so workers ship them
and the master adds them exactly. Each age is rounded down to its bucket
(relative error < 0.1 %): the estimate is the exact Kaplan-Meier estimate of
those rounded ages, so a drop within 0.1 % of a mark may count on either side
of it. Ties: at one age, events come before censorings (the usual rule).

Confidence interval (95 %): Greenwood's variance on the log-log scale
(Kalbfleisch-Prentice), which stays inside [0, 1] and is sensible near 1,
where soak gates live. With no drop before a mark, Greenwood's variance is 0
and would claim certainty; there the lower bound is the exact binomial one
for "0 drops among the n sessions at risk", ``0.025 ** (1/n)``, so 40
sessions without a drop give a lower bound of 0.912, not 1.

A mark at which nobody was at risk is *not measured* (``estimate: None``),
unless the estimate already reached 0 (every observed session dropped), which
is then a measured 0. Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from loadkit.metrics.histogram import Histogram

__all__ = ["Z95", "MarkEstimate", "curve", "estimate_at", "steps"]

#: Two-sided 95 % normal quantile.
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Step:
    """The estimate just after one distinct age at which something happened."""

    age_ms: int
    at_risk: int
    events: int
    censored: int
    survival: float
    greenwood: float  # sum of d / (n (n - d)) up to here


@dataclass(frozen=True)
class MarkEstimate:
    """S(mark) with its 95 % interval, and what it rests on."""

    mark_s: int
    estimate: float | None
    lower: float | None
    upper: float | None
    at_risk: int   #: sessions still observed at the mark (age >= mark)
    events: int    #: drops before or at the mark
    censored: int  #: sessions censored before the mark

    def as_dict(self) -> dict[str, float | int | None]:
        return {"estimate": _round(self.estimate), "lower": _round(self.lower), "upper": _round(self.upper),
                "at_risk": self.at_risk, "events": self.events, "censored": self.censored,
                "rate": _round(self.estimate)}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 6)


def steps(events: Histogram, censored: Histogram) -> list[Step]:
    """The Kaplan-Meier steps over every distinct (rounded) age, in order."""
    n = events.count + censored.count
    s, gw = 1.0, 0.0
    out: list[Step] = []
    for age in sorted({*events.counts, *censored.counts}):
        d = events.counts.get(age, 0)
        c = censored.counts.get(age, 0)
        if d:
            s *= 1.0 - d / n
            gw = gw + d / (n * (n - d)) if n > d else math.inf
        out.append(Step(age, n, d, c, s, gw))
        n -= d + c
    return out


def estimate_at(mark_s: int, events: Histogram, censored: Histogram,
                table: list[Step] | None = None) -> MarkEstimate:
    """S(mark_s), its 95 % interval, the number at risk at the mark."""
    table = steps(events, censored) if table is None else table
    mark_ms = mark_s * 1000
    s, gw, d_sum, c_sum = 1.0, 0.0, 0, 0
    at_risk = events.count + censored.count
    last_n = at_risk
    for st in table:
        if st.age_ms >= mark_ms:
            at_risk = st.at_risk
            if st.age_ms == mark_ms and st.events:  # a drop exactly at the mark did not survive it
                s, gw, d_sum = st.survival, st.greenwood, d_sum + st.events
            break
        s, gw = st.survival, st.greenwood
        d_sum += st.events
        c_sum += st.censored
        if st.events:
            last_n = st.at_risk
    else:
        at_risk = 0
    if at_risk == 0 and s > 0:
        return MarkEstimate(mark_s, None, None, None, 0, d_sum, c_sum)
    lower, upper = _interval(s, gw, at_risk, last_n)
    return MarkEstimate(mark_s, s, lower, upper, at_risk, d_sum, c_sum)


def _interval(s: float, gw: float, at_risk: int, last_n: int) -> tuple[float, float]:
    if s >= 1.0:
        return (0.025 ** (1.0 / at_risk) if at_risk else 0.0), 1.0
    if s <= 0.0:
        return 0.0, (1.0 - 0.025 ** (1.0 / last_n)) if last_n else 1.0
    log_s = math.log(s)
    se = math.sqrt(gw) / abs(log_s)
    return s ** math.exp(Z95 * se), s ** math.exp(-Z95 * se)


def curve(events: Histogram, censored: Histogram, max_points: int = 240) -> list[list[float]]:
    """``[[age_s, S], ...]``: the step function at its drops, thinned to ``max_points``.

    Starts at ``[0, 1]`` and ends at the last observed age, so a chart shows
    how far the observation reached. Thinning keeps the lowest value of each
    stretch, so a chart never shows survival higher than it was.
    """
    table = steps(events, censored)
    if not table:
        return []
    points: list[list[float]] = [[0.0, 1.0]]
    drops = [st for st in table if st.events]
    stride = max(1, math.ceil(len(drops) / max_points))
    for i in range(0, len(drops), stride):
        chunk = drops[i:i + stride]
        points.append([round(chunk[0].age_ms / 1000.0, 3), round(chunk[-1].survival, 6)])
    last = table[-1]
    points.append([round(last.age_ms / 1000.0, 3), round(last.survival, 6)])
    return points


def estimates(marks: Iterable[int], events: Histogram, censored: Histogram) -> list[MarkEstimate]:
    table = steps(events, censored)
    return [estimate_at(m, events, censored, table) for m in marks]
