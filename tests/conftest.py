from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadkit.gateway.process import GatewayProcess

# A shell's background job (`pytest &` in a script) starts with SIGINT
# ignored, and an ignored signal stays ignored across exec: every Locust the
# tests start would then shrug off the Ctrl-C the tests send it. A handled
# signal is reset to its default at exec, so handling it here gives children
# the terminal's behaviour again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


#: Fixtures that start a gateway process: a test using one is ``slow`` (not in the quick loop).
SLOW_FIXTURES = frozenset({"gateway_factory", "gateway"})

#: One more run for an end-to-end test that fails (LOADKIT_TEST_RERUNS=0 for none, to hunt one).
RERUNS = int(os.environ.get("LOADKIT_TEST_RERUNS", "1"))


@pytest.hookimpl(tryfirst=True)  # before -m "not slow" deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that starts a gateway is ``slow``; an end-to-end (``slow``) test that fails runs once more.

    Those tests run real Locust, gateway and browser processes on a shared
    2-core machine, where a process can be descheduled for seconds. Their
    waits are bounded for that, but one stall too many must not refuse a
    whole CI run: the rerun is reported (``R`` and "1 rerun", and under
    "rerun test summary info") and is chased like a failure. A unit test
    never reruns: its failure is deterministic or a bug.
    """
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    if RERUNS <= 0:
        return
    for item in items:
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("flaky") is None:
            item.add_marker(pytest.mark.flaky(reruns=RERUNS, reruns_delay=1))


@pytest.fixture
def gateway_factory() -> Iterator:
    """Start reference gateways on loopback; all are stopped at teardown."""
    started: list[GatewayProcess] = []

    def start(**settings: object) -> GatewayProcess:
        seed = settings.pop("seed", None)
        # LOADKIT_TEST_GATEWAY_PROCESSES=N runs every ground-truth test against an N-process gateway.
        settings.setdefault("processes", int(os.environ.get("LOADKIT_TEST_GATEWAY_PROCESSES", "1")))
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


@pytest.fixture(autouse=True, scope="session")
def _no_gevent_patching_in_the_test_process() -> Iterator[None]:
    """Locust patches the process it is imported into; tests run it in subprocesses.

    Importing Locust here would patch sockets and ssl under every later test
    (a context made before the patch cannot wrap a patched socket), so a
    test that does it fails the run instead of breaking others at random.
    """
    yield
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        pytest.fail("a test imported Locust (or patched gevent) into the pytest process")


@pytest.fixture(autouse=True)
def _fresh_gevent_clock() -> None:
    """Tests that drive gevent in this process share one hub, idle between them.

    libev caches the loop's "now" and updates it only when the loop runs, so
    after a minute of other tests a new timer is measured from a stale clock
    and fires at once: ``gevent.joinall(jobs, timeout=30)`` returned in
    microseconds with every guest still running. Refresh it before each test.
    """
    hub = sys.modules.get("gevent.hub")
    if hub is not None:
        hub.get_hub().loop.update_now()
