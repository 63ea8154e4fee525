"""Each test started from the web UI is its own run; RESET restarts the live figures.

Why: one web UI session can run many tests (START, STOP, START again).
Each must get what a headless run gets: its own report, its own summary
and its own comparison with the embedded gateway's record. The gateway
counts from the moment it started, so the comparison uses the *delta* of
its counters over the test (``gateway_delta``), and the second test's files
are numbered (``report.json``, then ``report-2.json``, ...) so the first
test's are kept.

RESET (Locust's "reset stats") restarts loadkit's figures at that instant,
as it does Locust's: counters start from zero, except that the sessions open
at the reset count as started, so ``started == ended + open`` still holds;
"authenticated" counts authentications after the reset, as does the
gateway's delta, which restarts with it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from loadkit.locust.listen import on

logger = logging.getLogger("loadkit")

#: Gateway figures that are gauges or configuration, not counters: kept as they are now.
_NOT_COUNTERS = frozenset({"open", "settings"})


def gateway_delta(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """What the gateway counted between two ``/_gateway/stats`` snapshots. Pure.

    Numbers are subtracted, except gauges (``open``) and settings; the
    ``closes`` list is subtracted row by row (code, reason, initiator, phase).
    """
    if before is None:
        return after
    delta: dict[str, Any] = _sub(before, after)
    return delta


def _sub(before: Any, after: Any, key: str = "") -> Any:
    if key in _NOT_COUNTERS:
        return after
    if isinstance(after, bool) or before is None:
        return after
    if isinstance(after, (int, float)) and isinstance(before, (int, float)):
        return after - before
    if isinstance(after, dict) and isinstance(before, dict):
        return {k: _sub(before.get(k), v, k) for k, v in after.items()}
    if key == "closes" and isinstance(after, list) and isinstance(before, list):
        def ident(row: dict[str, Any]) -> tuple[Any, ...]:
            return tuple(row.get(k) for k in ("code", "reason", "initiator", "phase"))
        was = {ident(r): r.get("count", 0) for r in before}
        rows = [{**r, "count": r.get("count", 0) - was.get(ident(r), 0)} for r in after]
        return [r for r in rows if r["count"]]
    return after


def numbered(path: str, test_no: int) -> str:
    """``report.json`` for the first test, ``report-2.json`` for the second, ..."""
    if not path or test_no <= 1:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}-{test_no}{p.suffix}"))


def outputs_of(opts: Any, test_no: int) -> Any:
    """``opts`` with the report paths of test number ``test_no``."""
    out = argparse.Namespace(**vars(opts))
    for name in ("loadkit_report", "loadkit_html", "loadkit_series", "loadkit_junit"):
        setattr(out, name, numbered(getattr(opts, name, "") or "", test_no))
    return out


def reset_live(rt: Any) -> None:
    """RESET: loadkit's figures start again now (see the module docstring)."""
    rt.collect_local()  # local: what users recorded so far belongs to before the reset
    carried = rt.open_sessions()  # no switch since the collect: one instant
    rt.figures.restart(rt.settings.survival_marks, carried, keep_steady=True)
    if rt.gateway is not None:
        try:
            rt.outputs.gateway_baseline = rt.gateway.stats()
        except (OSError, RuntimeError) as exc:  # the figures reset all the same
            logger.warning("loadkit: could not read the gateway's stats at the reset: %s", exc)
    logger.info("loadkit: figures reset (%d session(s) open carried over)", carried)


def install(environment: Any, rt: Any) -> None:
    """RESET, and in the web UI, one report per test (at its ``test_stop``)."""
    events = environment.events

    @on(events.reset_stats)
    def _on_reset(**_kw: Any) -> None:
        reset_live(rt)

    if getattr(environment.parsed_options, "headless", False) or environment.web_ui is None:
        return  # a headless run has one test; it ends at quitting

    @on(events.test_stop)
    def _on_test_stop(**_kw: Any) -> None:
        if rt.finished or rt.test_done:  # quitting is writing the report itself
            return
        rt.test_done = True
        if rt.is_master:
            from loadkit.locust import distributed

            distributed.await_final_reports(environment, rt)
        try:
            rt.last_code = rt.finish()
        except Exception:
            logger.exception("loadkit: could not finish the report")
            rt.last_code = 5
