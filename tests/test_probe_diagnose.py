"""The probe's pure parts: auth frame diff, redaction, diagnosis from hand-written traces."""

from __future__ import annotations

import json
from typing import Any

from loadkit.probe.authdiff import diff_auth, grant_paths, schema_problems
from loadkit.probe.diagnose import CAUSES, FOLKLORE, diagnose
from loadkit.probe.render import Renderer, diagnosis_lines
from loadkit.probe.trace import Redactor, TraceRecorder

EXPECTED = {"type": "auth", "guestId": "g-1", "token": "<grant token>"}
PATHS = {"guestId", "token"}


def problems(sent: Any) -> list[tuple[str, str]]:
    return [(d.path, d.problem) for d in diff_auth(sent, EXPECTED, PATHS)]


def test_the_diff_names_each_kind_of_difference():
    assert problems(EXPECTED) == []
    assert problems({"type": "AUTH", "guestId": "g-1", "token": "<grant token>"}) == [("type", "value_case")]
    assert problems({"Type": "auth", "guestId": "g-1", "token": "<grant token>"}) == [("Type", "key_case")]
    assert problems({"command": "auth", "guestId": "g-1", "token": "<grant token>", "version": "1.0"}) == [
        ("command", "renamed"), ("version", "extra")]
    assert problems({"type": "auth", "token": "<grant token>"}) == [("guestId", "missing")]
    assert problems({"type": "login", "guestId": "g-1", "token": "<grant token>"}) == [("type", "value")]
    assert problems({"type": "auth", "guestId": 7, "token": "<x>"}) == [("guestId", "credential"),
                                                                       ("token", "credential")]
    assert problems({"type": ["auth"], "guestId": "g-1", "token": "<grant token>"}) == [("type", "json_type")]
    assert schema_problems(diff_auth({"type": "auth", "guestId": "x", "token": "<grant token>"}, EXPECTED,
                                     PATHS)) == []


def test_nested_frames_diff_by_dotted_path_and_grant_fields_are_found():
    expected = {"action": "configureSession", "journeyContext": {"customer": {"id": "g-1", "idType": "cookie"}},
                "token": "<grant token>"}
    paths = grant_paths(expected, "g-1", "<grant token>")
    assert paths == {"journeyContext.customer.id", "token"}
    sent = {"action": "configureSession", "journeyContext": {"customer": {"id": "other", "idtype": "cookie"}},
            "token": "<grant token>"}
    assert [(d.path, d.problem) for d in diff_auth(sent, expected, paths)] == [
        ("journeyContext.customer.id", "credential"), ("journeyContext.customer.idtype", "key_case")]


def test_redaction_labels_known_secrets_and_hashes_unknown_ones():
    r = Redactor()
    r.add("s3cr3t-token-value", "grant token")
    assert r.value({"token": "s3cr3t-token-value"}) == {"token": "<grant token>"}
    assert r.text("url?t=s3cr3t-token-value") == "url?t=<grant token>"
    other = r.value({"accessToken": "abc-def-ghi"})["accessToken"]
    assert other.startswith("<redacted: 11 chars, sha256 ") and "abc" not in other
    assert r.value({"token": "abc-def-ghi"})["token"] == r.value({"jwt": "abc-def-ghi"})["jwt"]  # comparable, not shown
    assert r.headers([("Authorization", "Bearer x"), ("Host", "h")])[0][1].startswith("<redacted")
    assert r.value({"idleTimeout": 30, "type": "auth"}) == {"idleTimeout": 30, "type": "auth"}


def test_the_recorder_redacts_every_way_out():
    lines: list[str] = []
    rec = TraceRecorder(sink=lambda i, ev: lines.append(json.dumps(ev)))
    rec.redactor.add("tok-123456", "grant token")
    rec.expect("auth")
    rec.transport_hook("frame_sent", {"opcode": "text", "data": b'{"type":"auth","t":"tok-123456"}', "fin": True})
    exported = rec.exported()
    assert exported[0]["role"] == "auth" and exported[0]["json"] == {"type": "auth", "t": "<grant token>"}
    assert "tok-123456" not in json.dumps(exported) + "".join(lines)
    text = "\n".join(Renderer().event(exported[0]))
    assert "tok-123456" not in text and '"type": "auth"' in text


class T:
    """A hand-written trace: events at given times."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, t: float, event: str, **fields: Any) -> T:
        self.events.append({"t": t, "epoch": 1000.0 + t, "event": event, **fields})
        return self


def opened(trace: T, expires: float = 5000.0, scopes: list[str] | None = None) -> T:
    return (trace.add(0.0, "token_request", method="POST", url="http://x/api/v2/guests")
            .add(0.01, "token_response", status=201)
            .add(0.01, "grant", guestId="g-1", token="<grant token>", expiresAt=expires, scopes=scopes)
            .add(0.02, "connect", url="ws://x").add(0.03, "upgrade_request", path="/")
            .add(0.04, "upgrade_response", status=101, headers=[]))


def test_a_grant_already_expired_when_used_is_named_with_the_times():
    trace = opened(T(), expires=1000.0)
    trace.add(0.05, "frame_sent", opcode="text", role="auth", json=EXPECTED)
    trace.add(0.06, "frame_received", opcode="close", code=1000, reason="")
    trace.add(0.06, "ended", code=1000, reason="", initiator="server")
    result = diagnose(trace.events, {"auth_frame": EXPECTED, "grant_paths": sorted(PATHS)})
    assert result.names == ["token_expired", "auth_refused_silently"]
    assert "0.050 s after that" in result.causes[0].evidence[0]
    assert result.causes[1].details["consistent_with"] == ["token_expired"]
    assert not result.completed


def test_an_unanswered_pong_and_an_unanswered_close():
    trace = opened(T())
    trace.add(0.05, "frame_sent", opcode="text", role="auth", json=EXPECTED)
    trace.add(0.06, "frame_received", opcode="text", kind="auth_ok", json={"type": "auth_ok"})
    trace.add(0.07, "frame_sent", opcode="text", role="keepalive", json={"type": "ping"})
    trace.add(10.07, "timeout", waiting_for="pong", after_s=10)
    trace.add(10.08, "ended", code=1000, reason="", initiator="client", answered=False)
    result = diagnose(trace.events, {"auth_frame": EXPECTED})
    assert result.names == ["keepalive_unanswered", "close_unanswered"] and not result.completed


def test_a_lost_connection_during_auth_and_every_name_is_documented():
    trace = opened(T())
    trace.add(0.05, "frame_sent", opcode="text", role="auth", json=EXPECTED)
    trace.add(0.06, "ended", code=1006, reason="", initiator="none")
    result = diagnose(trace.events, {"auth_frame": EXPECTED})
    assert result.names == ["connection_lost"]
    lines = diagnosis_lines(result)
    assert "diagnosis: NOT completed" in lines and "  connection_lost" in lines
    assert set(FOLKLORE) >= {c["claim"] for c in result.folklore}
    assert all(name in CAUSES for name in result.names)


def test_docs_list_every_cause_and_claim():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "probe.md").read_text()
    for name in list(CAUSES) + list(FOLKLORE):
        assert f"`{name}`" in doc, name


def test_send_auth_is_replayed_byte_for_byte_with_only_the_placeholders_replaced():
    from loadkit.probe.driver import substitute
    from loadkit.protocol.base import TokenGrant

    text = '{ "type" : "auth", "n": 1.50, "guestId":"$GUEST_ID", "token":"Bearer $TOKEN" }'
    sent = substitute(text, TokenGrant('g"1', "t/k+1"))
    assert sent == b'{ "type" : "auth", "n": 1.50, "guestId":"g\\"1", "token":"Bearer t/k+1" }'
    assert json.loads(sent)["guestId"] == 'g"1'
