"""Random streams: apart per worker and per user, replayed by the run's seed.

Pure tests of ``loadkit.streams``, plus real ``--processes 2`` runs with a
locustfile that writes each user's first draws: the bug this guards
against (one generator created at import, inherited by every forked
worker) only shows in forked processes.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadkit.settings import backoff  # noqa: E402
from loadkit.streams import Stream, arrival_stream, cumulative, user_stream  # noqa: E402
from tests.harness import LAG_ASIDE  # noqa: E402
from tests.test_distributed import free_port  # noqa: E402


def draws(stream: Stream, n: int = 5) -> list[float]:
    return [stream.random() for _ in range(n)]


def test_the_same_key_gives_the_same_draws_and_any_other_key_others() -> None:
    assert draws(user_stream(7, 0, 1)) == draws(user_stream(7, 0, 1))
    seen = {tuple(draws(user_stream(seed, w, u))) for seed in (7, 8) for w in range(3) for u in range(1, 50)}
    assert len(seen) == 2 * 3 * 49


def test_draws_are_uniform_enough_for_jitter() -> None:
    s = user_stream(1, 0, 1)
    xs = [s.random() for _ in range(20_000)]
    assert all(0.0 <= x < 1.0 for x in xs)
    assert abs(sum(xs) / len(xs) - 0.5) < 0.01
    deciles = [0] * 10
    for x in xs:
        deciles[int(x * 10)] += 1
    assert all(1800 < d < 2200 for d in deciles), deciles
    assert 2.0 <= s.uniform(2.0, 5.0) <= 5.0


def test_the_first_draws_of_neighbouring_users_are_not_correlated() -> None:
    firsts = [user_stream(3, 0, u).random() for u in range(1, 2001)]
    assert abs(sum(firsts) / len(firsts) - 0.5) < 0.03
    ups = sum(1 for a, b in itertools.pairwise(firsts) if b > a)
    assert 900 < ups < 1100  # neighbours' first draws are not in step


def test_a_users_arrival_has_its_own_stream_spread_evenly_over_users() -> None:
    # Its own: the arrival is not the user's first draw, so a seed replays the same sessions with it.
    assert arrival_stream(3, 0, 1).random() == arrival_stream(3, 0, 1).random()
    assert arrival_stream(3, 0, 1).random() != user_stream(3, 0, 1).random()
    arrivals = [arrival_stream(3, w, u).random() for w in range(2) for u in range(1, 1001)]
    deciles = [0] * 10
    for x in arrivals:
        deciles[int(x * 10)] += 1
    assert all(140 < d < 260 for d in deciles), deciles  # about 200 each: evenly over the second


def test_weighted_choice_follows_the_weights_and_never_picks_a_zero_weight() -> None:
    s = user_stream(5, 1, 1)
    cum = cumulative([90, 0, 10])
    picks = [s.choice_index(cum) for _ in range(10_000)]
    assert picks.count(1) == 0
    assert 850 < picks.count(2) < 1150


def test_backoff_takes_a_stream() -> None:
    s = user_stream(5, 1, 1)
    assert all(2.0 <= backoff(3, 1.0, 10.0, s) <= 4.0 for _ in range(100))


def test_a_stream_costs_a_fraction_of_a_random_Random() -> None:
    import random

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    streams = [user_stream(9, 0, u) for u in range(1000)]
    for s in streams:
        s.random()
    per_stream = (tracemalloc.get_traced_memory()[0] - before) / 1000
    tracemalloc.stop()
    assert per_stream < 200, per_stream  # random.Random: ~2,500 bytes of state
    assert sys.getsizeof(random.Random()) > 2000


# -- real processes ----------------------------------------------------------------------

DRAW_LOCUSTFILE = """
import json, os
import locust  # noqa: F401
from loadkit.locust import plugin  # noqa: F401
import loadkit.locust.user as _user
from loadkit.streams import Stream


class DrawingGuest(_user.GuestUser):
    def on_start(self):
        probe = Stream()
        probe._state = self.rng._state  # a copy: the user's own draws are untouched
        line = {"pid": os.getpid(), "worker": self.environment.runner.worker_index,
                "user": self.number, "draws": [probe.random() for _ in range(4)]}
        with open(os.environ["DRAWS_FILE"], "a") as fh:
            fh.write(json.dumps(line) + "\\n")
"""


def run_drawing(tmp: Path, name: str, *args: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    locustfile = tmp / "drawing_locustfile.py"
    locustfile.write_text(DRAW_LOCUSTFILE)
    out = tmp / f"{name}.jsonl"
    report = tmp / f"{name}.json"
    port = str(free_port())
    env = dict(os.environ, PYTHONPATH=str(ROOT), DRAWS_FILE=str(out))
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", "6", "-r", "20",
           "-t", "4s", "--processes", "2", "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
           "--master-port", port, "--session-seconds", "0.5-1", "--only-summary", *LAG_ASIDE,
           "--loadkit-report", str(report), *args]
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)
    try:
        log, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, log.decode(errors="replace")[-3000:]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    return lines, json.loads(report.read_text())


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_forked_workers_draw_apart_and_a_recorded_seed_replays_every_users_draws(tmp_path: Path) -> None:
    first, report = run_drawing(tmp_path, "first")  # unseeded
    assert len({line["pid"] for line in first}) == 2  # two forked workers
    assert {line["worker"] for line in first} == {0, 1}
    assert len({tuple(line["draws"]) for line in first}) == len(first) == 6  # nobody in step
    seed = report["run"]["seed"]
    assert isinstance(seed, int)

    replay, report2 = run_drawing(tmp_path, "replay", "--loadkit-seed", str(seed))
    assert report2["run"]["seed"] == seed
    by_key = {(x["worker"], x["user"]): x["draws"] for x in first}
    assert {(x["worker"], x["user"]): x["draws"] for x in replay} == by_key

    other, report3 = run_drawing(tmp_path, "other")  # unseeded again: a new seed, new draws
    assert report3["run"]["seed"] != seed
    assert not {tuple(x["draws"]) for x in other} & {tuple(x["draws"]) for x in first}
