from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadkit.gateway.process import GatewayProcess  # noqa: E402


@pytest.fixture
def gateway_factory() -> Iterator:
    """Start reference gateways on loopback; all are stopped at teardown."""
    started: list[GatewayProcess] = []

    def start(**settings: object) -> GatewayProcess:
        seed = settings.pop("seed", None)
        gw = GatewayProcess(settings=settings, seed=seed)  # type: ignore[arg-type]
        started.append(gw)
        gw.start()
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def gateway(gateway_factory):  # type: ignore[no-untyped-def]
    return gateway_factory()
