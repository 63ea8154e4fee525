"""Close codes as data: ``describe`` for known, application and unknown codes."""

from __future__ import annotations

import pytest

from loadkit.protocol.codes import CLOSE_CODE_NAMES, NO_CLOSE_FRAME, describe

#: The close table of guest-protocol.md: every code the gateway may send has its name.
GUEST_PROTOCOL_CODES = {
    1000: "normal closure",
    1001: "going away",
    1006: "abnormal closure (no close frame)",
    1007: "invalid payload",
    1009: "message too big",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    4001: "unauthorized",
    4003: "forbidden",
    4006: "session expired",
    4008: "auth timeout",
    4029: "rate limit",
}


@pytest.mark.parametrize(("code", "name"), GUEST_PROTOCOL_CODES.items())
def test_every_close_code_of_the_guest_protocol_is_described_by_name(code: int, name: str) -> None:
    assert describe(code) == f"{code} ({name})"


@pytest.mark.parametrize("code", sorted(CLOSE_CODE_NAMES))
def test_every_named_code_is_described_as_code_then_name(code: int) -> None:
    assert describe(code) == f"{code} ({CLOSE_CODE_NAMES[code]})"
    assert CLOSE_CODE_NAMES[code]


@pytest.mark.parametrize("code", [4000, 4002, 4400, 4999])
def test_an_unnamed_code_in_the_private_range_is_an_application_code(code: int) -> None:
    assert describe(code) == f"{code} (application code)"


@pytest.mark.parametrize("code", [0, 999, 1004, 1016, 2999, 3000, 3999, 5000, 65535])
def test_any_other_unnamed_code_is_unknown(code: int) -> None:
    assert describe(code) == f"{code} (unknown)"


def test_1006_stands_for_no_close_frame() -> None:
    assert NO_CLOSE_FRAME == 1006
    assert describe(NO_CLOSE_FRAME) == "1006 (abnormal closure (no close frame))"


def test_the_standard_names_follow_rfc_6455_and_its_registry() -> None:
    assert {c: CLOSE_CODE_NAMES[c] for c in (1000, 1001, 1002, 1003, 1008, 1010, 1011)} == {
        1000: "normal closure", 1001: "going away", 1002: "protocol error", 1003: "unsupported data",
        1008: "policy violation", 1010: "mandatory extension", 1011: "internal error"}
