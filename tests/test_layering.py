"""The pure layers load no gevent, no Locust and nothing that owns a socket.

Each module is imported in a fresh interpreter, so what this test process
has already imported (pytest plugins, other tests) cannot hide a leak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PURE_MODULES = [
    "loadkit.protocol",
    "loadkit.protocol.guest",
    "loadkit.connection",
    "loadkit.lifecycle",
    "loadkit.failures",
    "loadkit.metrics.histogram",
    "loadkit.metrics.recorder",
    "loadkit.settings",
    "loadkit.report.build",
    "loadkit.report.summary",
    "loadkit.probe.diagnose",
    "loadkit.probe.render",
    "loadkit.probe.trace",
    "loadkit.probe.vocabulary",
]

#: Top-level packages a pure layer must not pull in: the event loop, Locust and its
#: RPC, and every module that opens sockets.
FORBIDDEN = ("gevent", "locust", "websockets", "geventhttpclient", "zmq", "socket", "_socket", "ssl",
             "selectors", "asyncio")

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def modules_loaded_by(module: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GEVENT"))}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", PROBE, module], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=30, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("module", PURE_MODULES)
def test_a_pure_layer_loads_no_gevent_locust_or_sockets(module: str) -> None:
    loaded = modules_loaded_by(module)
    assert module in loaded
    leaked = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN)
    assert leaked == [], f"importing {module} loaded {leaked}"


def test_the_probe_would_see_a_leak() -> None:
    assert "websockets" in {m.split(".")[0] for m in modules_loaded_by("loadkit.gateway.server")}
