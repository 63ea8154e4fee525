"""The probe's vocabulary: the causes it can name and the folklore it checks.

Kept apart from the rules (``diagnose``) so that docs, tests and renderers
share one list; docs/probe.md documents every entry (a test holds them
equal). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Every cause the probe can name, and what it means.
CAUSES: dict[str, str] = {
    "ok": "the whole lifecycle completed: token, open, auth_ok, keepalive, messages, a close answered",
    "connect_refused": "nothing listens at the target's address (TCP refused)",
    "connect_failed": "TCP, DNS, the TLS handshake or the upgrade failed or timed out",
    "tls_verification_failed": "the target's certificate was not trusted (use --tls-ca for a private CA)",
    "token_refused": "the token call was answered with an error status or an unreadable body",
    "token_expired": "the grant had expired when it was used, or expired during the session",
    "token_scope_missing": "the grant lacks a scope the profile needs",
    "upgrade_refused": "the WebSocket upgrade got an HTTP status instead of 101",
    "auth_schema_mismatch": "the auth frame sent is not the profile's auth frame (field by field)",
    "auth_credentials_mismatch": "the auth frame carries a token or guest id other than this probe's grant",
    "auth_refused_silently": "closed 1000 during auth with no error frame (the seed thread's symptom)",
    "auth_refused": "the auth was refused with an error frame or a close code that says so",
    "auth_timeout": "no answer to auth in time (the probe's timeout, or the gateway's auth deadline)",
    "connection_lost": "the TCP connection ended without a close frame",
    "no_keepalive": "closed for idleness after the client stayed silent for the idle timeout",
    "keepalive_unanswered": "a keepalive ping got no pong in time",
    "message_unanswered": "a chat message got no ack in time",
    "server_closed_after_auth": "the server closed an authenticated session before the probe did",
    "close_unanswered": "the probe's close frame was not answered with one",
    "interrupted": "the probe was stopped (Ctrl-C) before the lifecycle completed",
}

#: The seed thread's claims the trace can check.
FOLKLORE: dict[str, str] = {
    "auth_before_open": "the auth frame was sent before the socket was Open",
    "case_sensitive_type": "the type value is case-sensitive (Auth, AUTH)",
    "ping_or_init_first": "a ping or init frame must precede auth",
    "missing_scope": "the token lacks a scope",
    "delay_before_auth": "a delay before auth helps (latency)",
    "keepalive_or_killed": "without ping/pong the server kills the connection after its idle timeout",
}


@dataclass
class Cause:
    cause: str
    evidence: list[str]
    events: list[int] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cause": self.cause, "evidence": self.evidence, "events": self.events}
        out.update(self.details)
        return out


@dataclass
class Diagnosis:
    completed: bool
    causes: list[Cause]
    folklore: list[dict[str, Any]]

    @property
    def names(self) -> list[str]:
        return [c.cause for c in self.causes]
