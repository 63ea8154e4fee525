"""A real browser drives the web UI: Playwright (PyPI) with Debian's Chromium.

The web UI runs against the embedded gateway with a fault that drops
sessions. The test starts a run from the untouched form, opens the loadkit
tab, checks its figures against the gateway's record and that they change
over time, that the tab fits a 1280-pixel window and that the page logs no
error; then a bad value, whose one-line message must show in the UI.
The screenshot of the tab in the README comes from this test
(``LOADKIT_SCREENSHOT=docs/img/loadkit-tab.png``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import Any

import pytest

from tests.harness import ROOT
from tests.liveui import (WebUI, assert_authenticated_matches, gateway_stats, gateway_url, get_json,
                          settled_gateway_stats)

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--no-first-run", "--disable-component-update", "--disable-sync"]
# The fault plan's seed is fixed: with a random one, each session drew its drop with p = 0.3,
# and a busy machine's few sessions (6 to 12) showed none with a probability of 1-12 %. With
# seed 148 the gateway's sessions 0-3 are all planned to drop 0.2-0.8 s in (FaultPlan is
# keyed by (seed, session number), so this holds whatever order the guests come in).
FAST = ("--session-seconds", "1-3", "--keepalive-interval", "0.5", "--message-interval", "0.2-0.4",
        "--guest-pause", "0-0.2", "--series-interval", "1", "--threshold", "auth.p95 < 5000",
        "--gateway-set", "faults.drop_fraction=0.3", "--gateway-set", "faults.drop_after_s=0.2,0.8",
        "--gateway-set", "seed=148")


@pytest.fixture
def browser() -> Any:
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e '.[test]')")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _tab_rows(page: Any) -> dict[str, dict[str, str]]:
    """The loadkit tab's table: figure → {section, value, detail}."""
    rows = page.eval_on_selector_all(
        "table tbody tr", "trs => trs.map(tr => [...tr.querySelectorAll('td')].map(td => td.innerText))")
    return {r[1]: {"section": r[0], "value": r[2], "detail": r[3]} for r in rows if len(r) == 4}


def _wait_rows(page: Any, pred: Any, timeout: float = 30) -> dict[str, dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = _tab_rows(page)
        if pred(rows) or time.monotonic() > deadline:
            return rows
        page.wait_for_timeout(300)


def _pair(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text))


def test_a_browser_starts_a_run_from_the_untouched_form_and_watches_the_loadkit_tab(tmp_path, browser):
    with WebUI(tmp_path, "-u", "6", "-r", "6", *FAST) as ui:
        url = gateway_url(ui)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(ui.base + "/")
        page.get_by_role("button", name="Start").click()  # the form as it comes
        page.get_by_role("tab", name="loadkit").click()
        # every section once a session has ended (until then there is no outcome or close code to show;
        # guests start within a second of their spawn): waited for, bounded, then asserted
        expected = {"sessions", "drops", "close codes", "outcomes", "latency ms", "reconnects", "thresholds"}
        first = _wait_rows(page, lambda r: _pair(r.get("started / authenticated", {}).get("value", "0"))[-1] > 0
                           and expected <= {row["section"] for row in r.values()})
        assert first, "the loadkit tab shows no rows"
        sections = {r["section"] for r in first.values()}
        assert expected <= sections, sorted(sections)
        auth_row = first["auth p50 / p95 / p99"]["value"]
        assert re.fullmatch(r"\d+\.\d{3} / \d+\.\d{3} / \d+\.\d{3}", auth_row), auth_row  # µs resolution
        assert first["auth.p95 < 5000"]["detail"] in ("holding", "not measured yet")
        # the figures move while the run goes on, and the fault's drops show: waited for, bounded
        # (a fixed wait saw too little on a busy machine), the same assertions after the wait
        def moved(rows: dict[str, dict[str, str]]) -> bool:
            return (_pair(rows.get("started / authenticated", {}).get("value", "0"))
                    > _pair(first["started / authenticated"]["value"])
                    and rows.get("open over time", {}).get("value") != first["open over time"]["value"]
                    and int(rows.get("drops", {}).get("value", "0") or 0) > 0)
        later = _wait_rows(page, moved)
        assert _pair(later["started / authenticated"]["value"]) > _pair(first["started / authenticated"]["value"])
        assert later["open over time"]["value"] != first["open over time"]["value"]
        assert int(later["drops"]["value"]) > 0
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # fits the window
        shot = os.environ.get("LOADKIT_SCREENSHOT")
        page.screenshot(path=str(ROOT / shot) if shot else str(tmp_path / "tab.png"), full_page=True)

        # stop: the tab's final figures equal the gateway's record
        page.get_by_role("button", name="Stop").click()
        assert ui.wait_state("stopped") == "stopped"
        truth = settled_gateway_stats(url)
        live = get_json(ui.base + "/loadkit/report")
        page.reload()
        page.get_by_role("tab", name="loadkit").click()
        final = _wait_rows(page, lambda r: "started / authenticated" in r)
        started, authenticated = _pair(final["started / authenticated"]["value"])
        assert authenticated == live["sessions"]["authenticated"]
        assert_authenticated_matches(authenticated, truth["sessions"]["authenticated"], live)
        assert started == live["sessions"]["started"] == sum(live["sessions"]["outcomes"].values())
        shown = {}
        for figure, row in final.items():
            if row["section"] == "close codes":
                code = int(figure.split()[0])
                initiator = row["detail"].rsplit("closed by ", 1)[1]
                shown[(code, initiator)] = shown.get((code, initiator), 0) + int(row["value"])
        theirs: dict[tuple[int, str], int] = {}
        for c in truth["closes"]:
            theirs[(c["code"], c["initiator"])] = theirs.get((c["code"], c["initiator"]), 0) + c["count"]
        # the stop's own closes (1001 from us) can include guests the stop caught before they saw
        # the upgrade answer: the gateway got their close, they ended stopped_by_harness before_open
        caught = live["sessions"]["by_phase"].get("before_open", {}).get("stopped_by_harness", 0)
        ours_stop, gw_stop = shown.pop((1001, "client"), 0), theirs.pop((1001, "client"), 0)
        assert ours_stop <= gw_stop <= ours_stop + caught, (ours_stop, gw_stop, caught)
        assert shown == theirs
        # the fault's drops, as the gateway closed them (its fault counter also counts drops it had
        # planned for sessions the stop ended first)
        assert int(final["drops"]["value"]) > 0 and shown.get((1011, "server"), 0) > 0
        assert not problems, problems

        # a bad value: refused, its message shown, no user spawned
        issued = gateway_stats(url)["tokens"]["issued"]
        page.get_by_role("tab", name="Statistics").click()
        page.get_by_role("button", name="New").click()
        page.get_by_role("button", name=re.compile("Custom parameters", re.I)).click()
        page.fill("input[name=sessionSeconds]", "30-10")
        page.get_by_role("button", name="Start").click()
        message = "--session-seconds must be MIN-MAX with MIN <= MAX, got '30-10': write 10-30"
        page.get_by_text(message, exact=False).first.wait_for(timeout=10_000)
        time.sleep(1)
        assert gateway_stats(url)["tokens"]["issued"] == issued
        assert get_json(ui.base + "/stats/requests")["state"] == "stopped"
        page.close()


