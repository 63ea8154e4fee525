"""What every protocol profile provides, and the events it hands back.

The lifecycle asks a profile for frames ("the auth frame for this grant")
and asks it what a server frame *means* (``classify``); it never inspects a
frame itself and never branches on a profile's name. Profiles do no I/O: the
token call is described as a ``TokenRequest`` that the session performs.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from loadkit.errors import MISSING as MISSING  # re-exported: profiles import it from here
from loadkit.errors import ConfigError
from loadkit.errors import show_value as show_value


class EventKind(enum.IntEnum):
    """What a frame from the server means to a guest."""

    AUTH_OK = 1          #: authenticated (auth_ok, SessionResponse)
    AUTH_REFUSED = 2     #: an explicit refusal of the auth frame
    PONG = 3             #: answer to our keepalive; ``ref`` is its id
    ACK = 4              #: our message was accepted; ``ref`` is its id
    AGENT_MESSAGE = 5    #: a message from the agent; ``ref`` is what it replies to, if known
    ERROR = 6            #: a refused request; ``code``; the socket stays open
    RATE_LIMITED = 7     #: slow down; ``retry_after`` seconds
    SESSION_EXPIRED = 8  #: the session or token expired; a close follows
    SESSION_ENDED = 9    #: the server ended the session (e.g. ConnectionClosedEvent)
    IGNORED = 10         #: a frame the profile knows and the lifecycle needn't act on
    UNKNOWN = 11         #: valid JSON object, but no known frame
    MALFORMED = 12       #: not a JSON object at all


@dataclass(slots=True)
class ServerEvent:
    kind: EventKind
    ref: Any = None
    code: int | None = None
    retry_after: float | None = None
    detail: str = ""
    #: Profile-specific fields the lifecycle passes through untouched
    #: (e.g. webmessaging's ``newSession``).
    fields: dict[str, Any] = field(default_factory=dict)
    #: For a frame the driver must not act on: which kind of bad frame it is
    #: (one of ``BAD_FRAME_KINDS``); empty for a good frame.
    bad: str = ""


# -- bad frames -------------------------------------------------------------------------
#
# A frame the target should not have sent is never acted on: it is counted by
# kind and by the phase it arrived in, and the session goes on, unless the
# profile's ``Expects.fatal`` names its kind (then the session ends as
# ``protocol_error``). Kinds decided by a profile's ``classify`` come first;
# the session driver decides ``binary_frame`` and ``unmatched_answer`` (it
# knows the opcode and what it sent); the transport decides the RFC 6455 ones.

BINARY_FRAME = "binary_frame"        #: a binary frame where the protocol says text
NOT_JSON = "not_json"                #: text that is not JSON
NOT_OBJECT = "not_object"            #: JSON, but not an object
TOO_DEEP = "too_deep"                #: JSON nested deeper than the parser accepts (1024)
UNKNOWN_TYPE = "unknown_type"        #: a JSON object that is no frame the profile knows
MISSING_FIELDS = "missing_fields"    #: a known frame without a field it must carry (or of the wrong type)
UNMATCHED_ANSWER = "unmatched_answer"  #: an answer (pong, ack) to a request never sent, or answered twice
INVALID_UTF8 = "invalid_utf8"        #: RFC 6455 §8.1: a text frame that is not UTF-8 (we fail with 1007)
BAD_FRAMING = "bad_framing"          #: RFC 6455 framing broken (reserved bits, opcodes…): we fail with 1002
TOO_BIG = "too_big"                  #: a message over our size limit: we fail with 1009

BAD_FRAME_KINDS = (BINARY_FRAME, NOT_JSON, NOT_OBJECT, TOO_DEEP, UNKNOWN_TYPE, MISSING_FIELDS,
                   UNMATCHED_ANSWER, INVALID_UTF8, BAD_FRAMING, TOO_BIG)

#: Bad frames that end the session by default: frames a client cannot read at
#: all. Frames it can read but that break the contract (unknown types, missing
#: fields, unmatched answers) are counted and the session goes on, as real
#: clients ignore them and a soak must keep measuring; gate them with
#: ``bad_frames.count == 0``. The transport's kinds always end the connection.
DEFAULT_FATAL = frozenset({BINARY_FRAME, NOT_JSON, NOT_OBJECT, TOO_DEEP})


def is_utf8(data: bytes | bytearray) -> bool:
    """Whether ``data`` is valid UTF-8 (RFC 3629: no surrogates, no overlongs)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class BinaryFrame(bytes):
    """The payload of a binary frame: the transport hands these out as is, so a
    profile that expects text can tell them apart at no cost for text frames."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Expects:
    """What a profile expects from the target; everything else is a bad frame.

    ``frames``: ``"text"`` (binary frames are ``binary_frame``), ``"binary"``
    or ``"any"``. ``required``: for each frame the profile knows, the fields
    it must carry and their JSON types (documentation, and what ``classify``
    checks). ``match``: the answer kinds whose ``ref`` must name a request
    this session sent and has not had answered. ``fatal``: bad-frame kinds
    that end the session as ``protocol_error``.
    """

    frames: str = "text"
    required: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    match: frozenset[EventKind] = frozenset({EventKind.PONG, EventKind.ACK})
    fatal: frozenset[str] = DEFAULT_FATAL


DEFAULT_EXPECTS = Expects()

#: JSON type names of ``Expects.required`` and the Python types they accept.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,),
    "object": (dict,), "array": (list,), "any": (object,),
}


def missing_fields(obj: Mapping[str, Any], required: Mapping[str, str]) -> str:
    """The required fields ``obj`` lacks or has with the wrong JSON type ("" if none)."""
    bad = []
    for name, kind in required.items():
        value = obj.get(name)
        types = _JSON_TYPES[kind]
        if value is None or not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            bad.append(name)
    return ", ".join(bad)


def check_fatal(kinds: Any, profile: str) -> frozenset[str]:
    """A profile's ``end_session_on`` option as a set of kinds; ProfileOptionError if unknown."""
    if kinds is None:
        return DEFAULT_FATAL
    if isinstance(kinds, str) or not all(isinstance(k, str) for k in kinds):
        raise ProfileOptionError(profile, [("end_session_on", kinds,
                                            "a list of bad-frame kinds: " + ", ".join(BAD_FRAME_KINDS))])
    unknown = [k for k in kinds if k not in BAD_FRAME_KINDS]
    if unknown:
        raise ProfileOptionError(profile, [("end_session_on", unknown[0] if len(unknown) == 1 else unknown,
                                            "one of " + ", ".join(BAD_FRAME_KINDS))])
    return frozenset(kinds)


def expects(profile: Any) -> Expects:
    """What ``profile`` declares it expects (the defaults when it declares nothing)."""
    found = getattr(profile, "expects", None)
    return found if isinstance(found, Expects) else DEFAULT_EXPECTS


@dataclass(slots=True, frozen=True)
class TokenRequest:
    """An HTTP request the session performs to obtain a guest token."""

    method: str
    url: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class TokenGrant:
    """What a guest holds after the token step; secrets live here only."""

    guest_id: str
    token: str
    expires_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # never leak a token into logs or tracebacks
        return f"TokenGrant(guest_id={self.guest_id!r}, token=<hidden>)"


def json_object(data: bytes | str) -> dict[str, Any] | ServerEvent:
    """A frame as a JSON object, or the MALFORMED event that says why it isn't one.

    Every profile's ``classify`` starts here: one ``orjson.loads`` per frame.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith(("recursion limit", "depth limit")):
            return ServerEvent(EventKind.MALFORMED, detail="nested too deep", bad=TOO_DEEP)
        return ServerEvent(EventKind.MALFORMED, detail="not JSON", bad=NOT_JSON)
    if type(obj) is not dict:
        return ServerEvent(EventKind.MALFORMED, detail="not a JSON object", bad=NOT_OBJECT)
    return obj


#: How a guest writes its auth frame: the well-behaved way, or one of the
#: mistakes from the seed thread (a profile may support a subset).
AUTH_STYLES = ("normal", "wrong_case", "command", "bad_token", "none")


class Profile(Protocol):
    """The sans-I/O description of one gateway protocol."""

    name: str
    #: Lowest keepalive interval the protocol allows (webmessaging: 30 s).
    min_keepalive_s: float

    def token_request(self, base_url: str, guest_no: int) -> TokenRequest | None:
        """The token call, or ``None`` when the guest makes its own token."""

    def token_grant(self, status: int | None, body: bytes, guest_no: int) -> TokenGrant:
        """The grant from the token response; raises ``ValueError`` if malformed."""

    def websocket_url(self, base_url: str, grant: TokenGrant) -> str: ...

    def handshake_headers(self, base_url: str) -> list[tuple[str, str]]: ...

    def auth_frame(self, grant: TokenGrant, style: str = "normal") -> bytes | None: ...

    def ping_frame(self, seq: int, grant: TokenGrant) -> tuple[bytes, Any]:
        """The keepalive frame and the reference its answer will carry."""

    def message_frame(self, seq: int, text: str, grant: TokenGrant) -> tuple[bytes, Any]:
        """A chat message and the reference its ack will carry."""

    def goodbye_frames(self, grant: TokenGrant) -> list[bytes]:
        """Frames sent before a normal close (e.g. closeSession)."""

    def classify(self, data: bytes | str) -> ServerEvent: ...


# -- optional parts of a profile (additive: the driver never needs them) --------------
#
# ``auth_styles``      the subset of AUTH_STYLES the profile can write (default: all);
#                      scenario validation refuses a guest mix that needs another.
# ``check_keepalive``  ``(interval_s) -> None``, raising ConfigError with the
#                      protocol's own words; default: compare with min_keepalive_s.
# ``reply_refs``       False when AGENT_MESSAGE never carries the ref of the message it
#                      answers (webmessaging): a driver need not keep sends waiting for one.
# ``required_scopes``  scopes a token must carry; with ``grant.extra["scopes"]`` (set by
#                      ``token_grant`` when the answer lists them) ``loadkit probe`` can say
#                      "the token lacks a scope" before the gateway does.
# ``goodbye_flow``     ``(grant) -> GoodbyeFlow``: a goodbye whose requests are answered
#                      (webmessaging's Presence Clear and closeSession); without it the
#                      driver sends ``goodbye_frames`` and closes at once.


class Taken(enum.IntEnum):
    """What a frame that came during a goodbye was to it."""

    NOT_MINE = 0  #: no answer to the goodbye: the driver handles it as any frame
    ANSWER = 1    #: an answer the goodbye waited for (or one it can do without)
    REFUSAL = 2   #: the target refused a goodbye request: one of its errors (``code``)


class GoodbyeFlow(Protocol):
    """A goodbye as request/answer flows, driven by the session driver (pure: no I/O, no clock).

    The driver sends ``frames(now)`` whenever ``now >= next_at`` (the first
    request, the next step, a retry after ``retryAfter``), feeds it every
    frame that comes, and gives up after ``timeout_s``: a goodbye that is not
    ``done`` by then, ``failed`` or cut short is ``goodbye_incomplete``.
    """

    timeout_s: float
    done: bool      #: every request answered: the goodbye completed
    failed: str     #: non-empty: a request was refused, and why
    next_at: float  #: when ``frames`` has a frame to send (``inf``: nothing before an answer)

    def frames(self, now: float) -> list[bytes]:
        """The frames due at ``now`` (none before ``next_at``)."""

    def feed(self, ev: ServerEvent, now: float) -> Taken:
        """Take in one classified frame that came during the goodbye."""

    def waiting_for(self) -> str:
        """What the goodbye still waits for, for the failure's detail."""

    def server_close_ends_it(self) -> bool:
        """Whether a normal (1000) server close now completes the goodbye."""


def goodbye_flow(profile: Profile, grant: TokenGrant) -> GoodbyeFlow | None:
    """The profile's answered goodbye for ``grant``, or None (send ``goodbye_frames`` and close)."""
    make = getattr(profile, "goodbye_flow", None)
    return make(grant) if callable(make) else None


def check_keepalive(profile: Profile, interval_s: float) -> None:
    """Refuse a keepalive interval below what the profile's protocol allows.

    Call it wherever the interval is decided (scenario load, plugin start):
    the driver pings at exactly this interval, so this is the one gate
    between a typo and a gateway that rate-limits or bans the harness.
    """
    check = getattr(profile, "check_keepalive", None)
    if check is not None:
        check(interval_s)
        return
    minimum = float(getattr(profile, "min_keepalive_s", 0.0) or 0.0)
    if interval_s < minimum:
        raise ConfigError(
            f"keepalive interval {interval_s:g} s is below the {profile.name} profile's minimum "
            f"of {minimum:g} s: set --keepalive-interval {minimum:g} or more"
        )


def reply_refs(profile: Profile) -> bool:
    """Whether the profile's AGENT_MESSAGE events name the message they answer (default True)."""
    return bool(getattr(profile, "reply_refs", True))


def auth_styles(profile: Profile) -> tuple[str, ...]:
    """The auth styles ``profile`` can write (all of AUTH_STYLES unless it says otherwise)."""
    return tuple(getattr(profile, "auth_styles", AUTH_STYLES))


class ProfileOptionError(ConfigError):
    """Bad options for a profile: every problem at once, each with its key.

    ``problems`` holds ``(key, value, expected)`` triples, ``key`` dotted
    relative to the profile's options (``frames.ping``, ``match[2].kind``),
    so a scenario loader can name the file and the full key of each.
    """

    def __init__(self, profile: str, problems: list[tuple[str, Any, str]]) -> None:
        self.profile = profile
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{self.profile} profile option " + format_problem(key, value, expected)
                         for key, value, expected in self.problems)


def format_problem(key: str, value: Any, expected: str) -> str:
    """``key = value: expected …`` (``key: missing; expected …`` when no value was given).

    ``expected`` is a noun phrase ("one of a, b"); a text that starts with
    "unknown" is a verdict of its own ("unknown key; did you mean …") and is
    shown as is.
    """
    if value is MISSING:
        return f"{key}: missing; expected {expected}"
    if expected.startswith("unknown"):
        return f"{key} = {show_value(value)}: {expected}"
    return f"{key} = {show_value(value)}: expected {expected}"


#: ``MISSING`` ("no value was given") and ``show_value`` live in ``loadkit.errors`` beside ``Problem``.
