"""``@on(event)``: a typed way to add a listener to one of Locust's events.

Locust's ``EventHook.add_listener`` is untyped, so using it as a decorator
would leave every listener untyped under ``mypy --strict``. This decorator
registers the function and gives it back as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["on"]

F = TypeVar("F", bound=Callable[..., Any])


def on(event: Any) -> Callable[[F], F]:
    """Register the decorated function as a listener of ``event`` (a Locust ``EventHook``)."""

    def register(fn: F) -> F:
        event.add_listener(fn)
        return fn

    return register
