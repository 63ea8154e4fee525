"""One rule for who closed first, from either side (``loadkit.closes``), and the gateway's wing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from loadkit.closes import Attribution, attribute_close
from tests.test_layering import modules_loaded_by


@dataclass(frozen=True)
class Close:
    code: int
    reason: str = ""


BYE, IDLE = Close(1000, "bye"), Close(1001, "idle timeout")


def test_no_close_frame_either_way_is_1006_by_nobody_from_both_sides() -> None:
    for side in ("client", "server"):
        assert attribute_close(side, None, None, None) == Attribution(1006, "", "none")


@pytest.mark.parametrize("side, peer", [("client", "server"), ("server", "client")])
def test_the_peers_frame_first_is_the_peers_close(side: str, peer: str) -> None:
    assert attribute_close(side, IDLE, IDLE, True) == Attribution(1001, "idle timeout", peer)  # type: ignore[arg-type]
    assert attribute_close(side, None, IDLE, None) == Attribution(1001, "idle timeout", peer)  # type: ignore[arg-type]


@pytest.mark.parametrize("side", ["client", "server"])
def test_our_frame_first_answered_or_not_is_ours(side: str) -> None:
    assert attribute_close(side, BYE, BYE, False) == Attribution(1000, "bye", side)  # type: ignore[arg-type]
    assert attribute_close(side, BYE, None, None) == Attribution(1000, "bye", side)  # type: ignore[arg-type]


def test_a_simultaneous_close_is_the_servers_on_both_sides() -> None:
    # The client sent 1000 while the server's 1001 was on its way: each side sent first by its own account.
    client_view = attribute_close("client", BYE, IDLE, False)
    server_view = attribute_close("server", IDLE, BYE, False)
    assert client_view == server_view == Attribution(1001, "idle timeout", "server")


def test_an_unanswered_close_then_a_lost_link_is_1006_by_nobody() -> None:
    assert attribute_close("client", BYE, None, None, link_lost=True) == Attribution(1006, "", "none")
    assert attribute_close("client", BYE, BYE, False, link_lost=True) == Attribution(1000, "bye", "client")


@pytest.mark.parametrize("exchange", [
    # (what the client sent, received, rcvd_then_sent), (the same for the server)
    ((BYE, BYE, False), (BYE, BYE, True)),      # the client closed, the server echoed
    ((IDLE, IDLE, True), (IDLE, IDLE, False)),  # the server closed, the client echoed
    ((BYE, IDLE, False), (IDLE, BYE, False)),   # both at once
    ((None, IDLE, None), (IDLE, None, None)),   # the server's close, the client gone before echoing
])
def test_both_sides_of_one_exchange_agree(exchange: tuple[tuple[object, ...], tuple[object, ...]]) -> None:
    (c_sent, c_rcvd, c_order), (s_sent, s_rcvd, s_order) = exchange
    assert attribute_close("client", c_sent, c_rcvd, c_order) == attribute_close(  # type: ignore[arg-type]
        "server", s_sent, s_rcvd, s_order)  # type: ignore[arg-type]


def test_the_gateway_imports_of_the_harness_only_the_close_rule_and_the_exception_tree() -> None:
    loaded = modules_loaded_by("loadkit.gateway.server") | modules_loaded_by("loadkit.gateway.__main__")
    outside = sorted(m for m in loaded if m.startswith("loadkit") and not m.startswith("loadkit.gateway"))
    assert outside == ["loadkit", "loadkit.closes", "loadkit.errors"]
