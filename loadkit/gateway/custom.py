"""Variants of the guest endpoint's auth frame, for the ``custom`` profile's tests.

The seed thread's reply suggests ``{"command":"auth","guestId":…,"token":…,
"version":"1.0"}``. The contract refuses it (silently, with 1000), which is
the thread's symptom; with ``auth_frame = "command"`` the gateway expects
exactly that variant instead, so a ``custom`` profile written for it can be
run end to end. Everything after auth is unchanged. Each mode is strict: in
``command`` mode a ``{"type":"auth"}`` frame is refused like any other
wrong frame.
"""

from __future__ import annotations

from typing import Any

__all__ = ["auth_credentials", "expected_auth"]

_EXPECTED = {
    "type": '{"type":"auth","guestId":...,"token":...}',
    "command": '{"command":"auth","guestId":...,"token":...,"version":"1.0"}',
}


def auth_credentials(frame: Any, mode: str) -> tuple[str, str] | None:
    """``(guestId, token)`` when ``frame`` is the auth frame ``mode`` expects, else None."""
    if not isinstance(frame, dict):
        return None
    if mode == "command":
        if frame.get("command") != "auth" or frame.get("version", "1.0") != "1.0":
            return None
    elif frame.get("type") != "auth":
        return None
    guest_id, token = frame.get("guestId"), frame.get("token")
    if isinstance(guest_id, str) and guest_id and isinstance(token, str) and token:
        return guest_id, token
    return None


def expected_auth(mode: str) -> str:
    """What the first frame must look like, for the explicit-mode error message."""
    return "first frame must be " + _EXPECTED[mode]
