"""docs/report-schema.md is what the harness writes: every documented key is written, and nothing else.

The schema page is the contract CI scripts and ``loadkit compare`` are written
against, so a key added to the report and not to the page (or documented and
never written) is a defect. The page's JSON examples are read for their keys
(they hold ``...`` placeholders, so they are not parsed as JSON): the report's
top-level keys, and the keys of a time-series row.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from loadkit.report.model import Report
from tests.harness import ROOT, run_locust

SCHEMA = (ROOT / "docs" / "report-schema.md").read_text()
#: a series row key the page describes in prose: only in a window where a lost worker spoke again
SERIES_OCCASIONAL = {"revived"}


def documented_report_keys() -> list[str]:
    block = re.search(r"^## Report\b.*?```json\n(.*?)\n```", SCHEMA, re.S | re.M)
    assert block, "docs/report-schema.md lost its report example"
    return re.findall(r'^  "(\w+)":', block.group(1), re.M)


def documented_series_keys() -> set[str]:
    block = re.search(r"^## Time series\b.*?```json\n(.*?)\n```", SCHEMA, re.S | re.M)
    assert block, "docs/report-schema.md lost its time-series example"
    depth, keys = 0, set()
    # top-level keys of the row: those at brace depth 1
    for match in re.finditer(r'[{}]|"(\w+)":', block.group(1)):
        token = match.group(0)
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
        elif depth == 1:
            keys.add(match.group(1))
    return keys


def test_the_documented_report_keys_are_the_report_models_fields() -> None:
    fields = {f.name for f in dataclasses.fields(Report)}
    documented = documented_report_keys()
    assert len(documented) == len(set(documented)), "a key is documented twice"
    assert set(documented) == fields, (
        f"docs/report-schema.md's report example and loadkit/report/model.py's Report differ: "
        f"not documented {sorted(fields - set(documented))}, not in the model {sorted(set(documented) - fields)}")


def test_the_example_readers_see_is_not_empty() -> None:
    assert {"sessions", "latency_ms", "verdict"} <= set(documented_report_keys())
    assert {"open", "latency_ms", "cpu_percent"} <= documented_series_keys()


@pytest.mark.slow
def test_a_real_run_writes_every_documented_key_and_no_other(tmp_path: Path) -> None:
    """A short run against the embedded gateway (so ``gateway`` is there too), with a threshold."""
    run = run_locust(tmp_path, "--session-seconds", "1-2", "--threshold", "auth.p95 < 5000",
                     "--loadkit-html", str(tmp_path / "report.html"), users=3, run_time="2s")
    assert run.report is not None, run.stderr[-2000:]
    written = list(run.report)
    documented = documented_report_keys()
    assert set(written) == set(documented), (
        f"written, not documented: {sorted(set(written) - set(documented))}; "
        f"documented, not written: {sorted(set(documented) - set(written))}")
    assert run.series, "the run wrote no series rows"
    expected = documented_series_keys()
    for row in run.series:
        assert expected <= set(row) <= expected | SERIES_OCCASIONAL, sorted(set(row) ^ expected)
