"""Ground-truth counters: who closed first, with what, and the JSON they make."""

from __future__ import annotations

from dataclasses import dataclass

from loadkit.gateway.stats import CloseRecord, GatewayStats, close_record


@dataclass(frozen=True)
class Close:
    """Stands in for websockets.frames.Close: only code and reason are read."""

    code: int
    reason: str = ""


def test_no_close_frame_either_way_is_1006_by_nobody() -> None:
    assert close_record(None, None, None, "authenticated") == CloseRecord(1006, "", "none", "authenticated")


def test_server_close_answered_by_the_client_is_the_servers() -> None:
    sent, echo = Close(4008, "auth timeout"), Close(4008, "auth timeout")
    assert close_record(sent, echo, False, "pre_auth") == CloseRecord(4008, "auth timeout", "server", "pre_auth")


def test_server_close_never_answered_is_still_the_servers() -> None:
    assert close_record(Close(1009, "message too big"), None, None, "authenticated").initiator == "server"


def test_client_close_echoed_by_the_server_is_the_clients() -> None:
    rcvd = Close(1000, "bye")
    assert close_record(rcvd, rcvd, True, "authenticated") == CloseRecord(1000, "bye", "client", "authenticated")


def test_client_close_the_server_could_not_echo_is_the_clients() -> None:
    assert close_record(None, Close(1001), None, "pre_auth") == CloseRecord(1001, "", "client", "pre_auth")


def test_snapshot_groups_closes_most_frequent_first_and_keeps_the_invariant() -> None:
    stats = GatewayStats()
    for _ in range(3):
        stats.session_opened()
    stats.session_closed(CloseRecord(1000, "", "client", "authenticated"))
    stats.session_closed(CloseRecord(4029, "rate limit", "server", "authenticated"))
    stats.session_closed(CloseRecord(4029, "rate limit", "server", "authenticated"))
    stats.session_opened()
    snap = stats.snapshot({"seed": 1})
    assert snap["closes"] == [
        {"code": 4029, "reason": "rate limit", "initiator": "server", "phase": "authenticated", "count": 2},
        {"code": 1000, "reason": "", "initiator": "client", "phase": "authenticated", "count": 1},
    ]
    sessions = snap["sessions"]
    assert sessions["opened"] == sessions["closed"] + sessions["open"] == 4
    assert snap["settings"] == {"seed": 1}


def test_frames_are_classified_by_their_exact_type() -> None:
    stats = GatewayStats()
    for kind in ("auth", "Auth", "AUTH", None, "ping", "typing", "message", "hello"):
        stats.frame_received(kind)
    stats.frame_sent("error", 4400)
    stats.frame_sent("ack")
    snap = stats.snapshot({})
    assert snap["frames_received"] == {"auth": 1, "ping": 1, "message": 1, "typing": 1, "other": 4}
    assert snap["frames_sent"]["error"] == 1 and snap["errors_sent"]["4400"] == 1 and snap["frames_sent"]["ack"] == 1


def test_snapshot_has_the_documented_keys_with_zeros() -> None:
    snap = GatewayStats().snapshot({})
    assert snap["tokens"] == {"issued": 0, "refused": {"429": 0, "503": 0, "400": 0}}
    assert snap["upgrades"] == {"accepted": 0, "refused": {"503": 0, "429": 0}}
    assert snap["faults"]["drop"] == {"1011": 0, "reset": 0}
    assert snap["faults"]["upgrade_refused"] == {"429": 0, "503": 0}
    assert snap["closes"] == []


def _snapshot_of(records: list[CloseRecord], tokens: int = 0, drops: int = 0) -> dict[str, object]:
    stats = GatewayStats()
    stats.tokens_issued = tokens
    stats.drops["1011"] = drops
    stats.faults["restarts"] = 1
    for record in records:
        stats.session_opened()
        stats.session_closed(record)
    stats.session_opened()  # one still open
    return stats.snapshot({"seed": 1, "processes": 2})


def test_merged_snapshots_are_the_exact_sum_of_each_process_record() -> None:
    from loadkit.gateway.stats import merge_snapshots

    client = CloseRecord(1000, "", "client", "authenticated")
    dropped = CloseRecord(1011, "internal error", "server", "authenticated")
    early = CloseRecord(1000, "", "client", "pre_auth")
    a = _snapshot_of([client, client, dropped], tokens=4, drops=1)
    b = _snapshot_of([client, early, dropped, dropped], tokens=5, drops=2)
    merged = merge_snapshots([a, b])
    whole = _snapshot_of([client, client, dropped, client, early, dropped, dropped], tokens=9, drops=3)
    whole["sessions"]["opened"] += 1  # two processes: two sessions still open  # type: ignore[index]
    whole["sessions"]["open"] += 1  # type: ignore[index]
    whole["faults"]["restarts"] = 2  # type: ignore[index]
    assert merged == whole
    assert list(merged) == list(a)  # the same document, key for key
    assert merged["closes"][0] == {"code": 1000, "reason": "", "initiator": "client", "phase": "authenticated",
                                   "count": 3}
    assert merged["settings"] == {"seed": 1, "processes": 2}


def test_a_key_only_one_process_has_is_kept_and_one_process_is_itself() -> None:
    from loadkit.gateway.stats import merge_snapshots

    a = {"faults": {"drop": {"1011": 1}}, "sessions": {"active": 2}}
    b = {"faults": {"drop": {"1011": 2, "4000": 5}}, "sessions": {"active": 1}}
    assert merge_snapshots([a, b]) == {"faults": {"drop": {"1011": 3, "4000": 5}}, "sessions": {"active": 3}}
    single = _snapshot_of([CloseRecord(1006, "", "none", "pre_auth")])
    assert merge_snapshots([single]) == single
