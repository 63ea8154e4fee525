"""The verdict as JUnit XML (``--loadkit-junit PATH``), so CI systems show the gates natively.

GitLab, Jenkins and GitHub (through the usual test-report actions) all read
the JUnit XML that test runners write. Each threshold becomes one test case:
a breach is a ``<failure>`` whose message carries the value and the limit; a
gate that had nothing to measure is ``<skipped>`` (not a pass, not a
failure: the run's verdict says ``inconclusive``). Each validity check
(accounting, saturation, workers, interrupted, lag) is one more case in a
suite of its own; a failed one is a ``<failure>`` (``<error>`` for broken
accounting, which means the harness itself cannot be trusted).

Pure: a report dict in, a string out (``xml.etree`` builds and escapes it).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

__all__ = ["render_junit"]


def _case(suite: ET.Element, classname: str, name: str) -> ET.Element:
    return ET.SubElement(suite, "testcase", {"classname": classname, "name": name, "time": "0"})


def _fmt(value: Any) -> str:
    return "null" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def render_junit(report: dict[str, Any]) -> str:
    """JUnit XML for a finished report: thresholds, then the run's validity."""
    run = report.get("run") or {}
    root = ET.Element("testsuites", {"name": "loadkit"})
    verdict = str(report.get("verdict", "none"))
    props_for = {"verdict": verdict, "verdict_reason": str(report.get("verdict_reason") or ""),
                 "host": str(run.get("host") or ""), "profile": str(run.get("profile") or ""),
                 "duration_s": _fmt(run.get("duration_s")), "seed": _fmt(run.get("seed"))}

    gates = ET.SubElement(root, "testsuite", {"name": "loadkit.thresholds"})
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for row in report.get("thresholds") or []:
        if not isinstance(row, dict):
            continue
        counts["tests"] += 1
        case = _case(gates, "loadkit.thresholds", str(row.get("expr")))
        status = row.get("status") or ("pass" if row.get("passed") else "fail")
        value, limit = _fmt(row.get("value")), _fmt(row.get("limit"))
        if status == "fail":
            counts["failures"] += 1
            message = f"{row.get('metric')} = {value}, limit {row.get('op')} {limit}"
            ET.SubElement(case, "failure", {"message": message, "type": "threshold"}).text = (
                f"{row.get('expr')}: measured {value}; {row.get('note') or ''}".strip())
        elif status == "not_measured":
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", {"message": f"not measured: {row.get('note') or ''}".strip()})
        else:
            ET.SubElement(case, "system-out").text = (
                f"{row.get('metric')} = {value} ({row.get('note') or status})")
    gates.attrib.update({k: str(v) for k, v in counts.items()})

    checks = ET.SubElement(root, "testsuite", {"name": "loadkit.validity"})
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for check in (report.get("validity") or {}).get("checks") or []:
        if not isinstance(check, dict):
            continue
        counts["tests"] += 1
        case = _case(checks, "loadkit.validity", str(check.get("name")))
        detail = str(check.get("detail") or "")
        if not check.get("ok", True):
            tag = "error" if check.get("fails_as") == "error" else "failure"
            counts["errors" if tag == "error" else "failures"] += 1
            ET.SubElement(case, tag, {"message": detail, "type": str(check.get("fails_as", "invalid"))})
        else:
            ET.SubElement(case, "system-out").text = detail
    counts["tests"] += 1
    case = _case(checks, "loadkit.validity", "verdict")
    if verdict != "pass":
        counts["failures"] += 1
        ET.SubElement(case, "failure", {"message": f"verdict {verdict}: {props_for['verdict_reason']}",
                                        "type": verdict})
    checks.attrib.update({k: str(v) for k, v in counts.items()})

    props = ET.SubElement(gates, "properties")
    for key, value in props_for.items():
        ET.SubElement(props, "property", {"name": key, "value": value})
    gates.insert(0, gates[-1])  # properties first, as the schema wants
    del gates[-1]
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
