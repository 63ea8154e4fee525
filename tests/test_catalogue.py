"""The metric catalogue: one list, and the docs are that list."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loadkit.report import catalogue
from loadkit.report.catalogue import CATALOGUE, Kind, NoData
from loadkit.report.thresholds import ThresholdError, parse

ROOT = Path(__file__).resolve().parent.parent


def test_docs_thresholds_metric_table_is_the_catalogue() -> None:
    text = (ROOT / "docs" / "thresholds.md").read_text()
    match = re.search(r"<!-- catalogue:begin[^>]*-->\n(.*?)\n<!-- catalogue:end -->", text, re.S)
    assert match, "docs/thresholds.md lost its catalogue markers"
    assert match.group(1) == catalogue.markdown_table(), (
        "docs/thresholds.md's metric table differs from the catalogue: "
        "paste the output of `python -m loadkit.report.catalogue`")


def test_names_are_unique_and_every_entry_is_complete() -> None:
    names = [e.name for e in CATALOGUE]
    assert len(names) == len(set(names))
    for e in CATALOGUE:
        assert e.unit and e.path and e.description and e.example
        assert isinstance(e.kind, Kind) and isinstance(e.no_data, NoData) and e.worse in (-1, 0, 1)


@pytest.mark.parametrize("e", CATALOGUE, ids=lambda e: e.name)
def test_every_example_parses_to_its_own_family(e: catalogue.Entry) -> None:
    threshold = parse(e.example)
    assert threshold.metric.family == e.name
    assert threshold.metric.entry is e
    assert threshold.metric.direction == e.worse or e.name.startswith(("outcome.", "close.", "survival.MARK."))


def test_only_the_reconnect_family_holds_vacuously() -> None:
    vacuous = {e.name for e in CATALOGUE if e.no_data is NoData.VACUOUS}
    assert vacuous == {"reconnect.success_rate", "reconnect.STAT"}


def test_a_metric_outside_the_catalogue_is_refused() -> None:
    with pytest.raises(ThresholdError):
        parse("messages.lost > 0")
