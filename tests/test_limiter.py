"""The one sliding-window rate limiter the gateway uses for all four of its limits."""

from __future__ import annotations

from loadkit.gateway.limiter import SlidingWindow


def test_admits_up_to_the_limit_in_any_window_then_says_when_to_retry() -> None:
    window = SlidingWindow(3)
    assert [window.admit(t) for t in (0.0, 0.1, 0.2)] == [None, None, None]
    assert window.admit(0.5) == 1  # the oldest leaves at 1.0: retry after 0.5 s, rounded up to 1
    assert window.admit(1.0) is None  # the event at 0.0 has left the window
    assert window.admit(1.05) == 1


def test_the_window_slides_instead_of_resetting_at_a_boundary() -> None:
    window = SlidingWindow(2)
    assert [window.admit(t) for t in (0.9, 0.95)] == [None, None]
    assert window.admit(1.01) is not None  # fixed one-second buckets would let this through
    assert window.admit(1.95) is None


def test_refusals_do_not_count_against_the_window() -> None:
    window = SlidingWindow(1)
    assert window.admit(0.0) is None
    for t in (0.2, 0.4, 0.6, 0.8):
        assert window.admit(t) == 1
    assert window.admit(1.0) is None


def test_retry_after_is_whole_seconds_until_the_oldest_event_leaves_a_long_window() -> None:
    window = SlidingWindow(2, 60.0)
    assert window.admit(0.0) is None and window.admit(10.0) is None
    assert window.admit(15.5) == 45
    assert window.admit(59.9) == 1
    assert window.admit(60.0) is None


def test_zero_is_unlimited() -> None:
    window = SlidingWindow(0)
    assert all(window.admit(0.0) is None for _ in range(1000))


def test_the_echo_window_admits_a_client_echoing_every_30_s_whatever_the_arrival_jitter() -> None:
    from loadkit.gateway.webmessaging_socket import ECHO_WINDOW_S

    paced = SlidingWindow(2, ECHO_WINDOW_S)
    # every 30 s as sent; the first arrived 5 ms late, the third on time: 59.995 s apart
    assert [paced.admit(t) for t in (30.005, 60.0, 90.0, 120.0)] == [None, None, None, None]
    hasty = SlidingWindow(2, ECHO_WINDOW_S)
    assert [hasty.admit(t) for t in (0.0, 20.0, 40.0)][:2] == [None, None]
    assert hasty.admit(45.0) is not None  # three within the minute: refused
