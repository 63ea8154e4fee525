"""Guest tokens: signed, self-contained, verifiable without storage.

Why signed instead of stored: a load test issues tens of thousands of tokens,
and the gateway must refuse a forged, expired, foreign or out-of-scope one
exactly as a production gateway would. An HMAC over the claims lets it check
all four from the token alone, with no table that grows for the whole soak.

The format is opaque to clients on purpose (the contract says so)::

    base64url(json claims) "." base64url(hmac_sha256(secret, claims))

This module is pure: no clock, no sockets. Callers pass ``now``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

__all__ = ["Claims", "TokenError", "TokenSigner", "Verdict", "CHAT_SCOPE"]

CHAT_SCOPE = "guest:chat"
"""The scope a token needs to open a chat session."""


class TokenError(enum.Enum):
    """Why a token was refused; the gateway maps each to a close code."""

    FORGED = "forged"  # bad signature or not a token at all
    EXPIRED = "expired"
    GUEST_MISMATCH = "guest_mismatch"  # token issued to another guestId
    MISSING_SCOPE = "missing_scope"  # valid, but lacks guest:chat


@dataclass(frozen=True)
class Claims:
    """What a token asserts.

    ``expires_at`` is in epoch seconds with millisecond precision (it is
    signed as integer milliseconds), so tests can use sub-second lifetimes.
    """

    guest_id: str
    expires_at: float
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class Verdict:
    """Result of :meth:`TokenSigner.verify`: claims when readable, and an error or None."""

    claims: Claims | None
    error: TokenError | None

    @property
    def ok(self) -> bool:
        return self.error is None


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and verifies tokens with one secret.

    A gateway process makes one signer; without a configured secret it draws a
    random one, so tokens from another gateway process (or a restarted one)
    are refused as forged, as they would be by a real deployment that rotated
    its key.
    """

    def __init__(self, secret: bytes | str | None = None) -> None:
        if secret is None or secret == b"" or secret == "":
            secret = secrets.token_bytes(32)
        self._secret = secret.encode() if isinstance(secret, str) else bytes(secret)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def issue(self, guest_id: str, expires_at: float, scopes: tuple[str, ...] | list[str]) -> str:
        """Return an opaque token for ``guest_id`` valid until ``expires_at`` (epoch s)."""
        claims = {"g": guest_id, "e": round(expires_at * 1000), "s": list(scopes)}
        payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def decode(self, token: str) -> Claims | None:
        """Return the claims of an authentic token, or None if it is forged or garbage."""
        if not isinstance(token, str) or token.count(".") != 1:
            return None
        body, _, signature = token.partition(".")
        try:
            payload = _b64decode(body)
            mac = _b64decode(signature)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            raw = json.loads(payload)
            guest_id, expires_at, scopes = raw["g"], raw["e"], raw["s"]
        except (ValueError, TypeError, KeyError):
            return None
        if not (isinstance(guest_id, str) and isinstance(expires_at, int) and isinstance(scopes, list)):
            return None
        return Claims(guest_id, expires_at / 1000, tuple(str(s) for s in scopes))

    def verify(
        self, token: str, guest_id: str, now: float, required_scope: str = CHAT_SCOPE
    ) -> Verdict:
        """Check a token presented with ``guest_id`` at time ``now`` (epoch seconds).

        The order of checks is the order a client can fix things in: a forged
        token first, then whose it is, then whether it is still valid, then
        whether it may chat.
        """
        claims = self.decode(token)
        if claims is None:
            return Verdict(None, TokenError.FORGED)
        if not hmac.compare_digest(claims.guest_id.encode(), str(guest_id).encode()):
            return Verdict(claims, TokenError.GUEST_MISMATCH)
        if now >= claims.expires_at:
            return Verdict(claims, TokenError.EXPIRED)
        if required_scope not in claims.scopes:
            return Verdict(claims, TokenError.MISSING_SCOPE)
        return Verdict(claims, None)
