"""Distributed runs: workers' numbers merged exactly on the master, lost workers accounted.

Two kinds of test:

- pure, in this process: the master's ``Ledger`` fed with worker payloads
  that crossed a msgpack round trip the way Locust sends them (no Locust,
  no gevent imported here: importing Locust monkey-patches the process);
- real processes on loopback: a master and ``--worker`` processes (or
  ``--processes``) against a reference gateway, checked against the
  gateway's own record (``/_gateway/stats``). Every process a test starts is
  killed by its process-group id at teardown, also when the test fails.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadkit.gateway.process import GatewayProcess  # noqa: E402
from loadkit.lifecycle import Outcome, Phase, Result  # noqa: E402
from loadkit.locust import distributed  # noqa: E402
from loadkit.locust.distributed import LOST_OUTCOME, LOST_PHASE, Ledger  # noqa: E402
from loadkit.locust.aggregation import Figures  # noqa: E402
from loadkit.metrics.recorder import DEFAULT_SURVIVAL_MARKS, LATENCY_PHASES, Recorder  # noqa: E402
from loadkit.report.build import build_report  # noqa: E402
from loadkit.session import LiveSessions  # noqa: E402
from tests.harness import LAG_ASIDE, assert_auth_answers_timed, free_port, processes_2, settled_stats  # noqa: E402 (free_port: below the ephemeral range, see why there)

LOCUSTFILE = ROOT / "locustfile.py"
#: Short sessions, frequent frames: a few seconds give every phase samples.
TRAFFIC = ["--session-seconds", "1-2", "--keepalive-interval", "0.5", "--message-interval", "0.2-0.4",
           "--guest-pause", "0-0.2", "--only-summary", *LAG_ASIDE]


# -- helpers ---------------------------------------------------------------------------


def wire(payload: dict[str, Any]) -> dict[str, Any]:
    """What the master receives: Locust's msgpack encoding and decoding options."""
    raw = msgpack.packb(payload, use_bin_type=True)
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)  # type: ignore[no-any-return]


class FakeRuntime(Figures):
    """The run's figures as the plugin's ``Runtime`` holds them (what the ledger adds into)."""

    def __init__(self) -> None:
        super().__init__(DEFAULT_SURVIVAL_MARKS, Recorder(), LiveSessions(), is_master=True)
        self.restart(DEFAULT_SURVIVAL_MARKS)
        self.environment = SimpleNamespace(host="http://127.0.0.1:1")

    def report(self) -> dict[str, Any]:
        return build_report(self.total, open_sessions=sum(self.worker_open.values()), run={})


def node(state: str = "running") -> SimpleNamespace:
    return SimpleNamespace(state=state)


def ended(rec: Recorder, outcome: Outcome, n: int = 1) -> None:
    for _ in range(n):
        rec.session_ended(Result(outcome, Phase.ESTABLISHED, True), 3.0, (1000, "", "client"))


def payload(rec: Recorder, open_: int, in_run: bool = True, pid: int = 1) -> dict[str, Any]:
    return wire({"delta": rec.detach().to_wire(), "open": open_, "in_run": in_run, "pid": pid, "hostname": "test"})


class Processes:
    """Start processes in their own sessions; kill each one's process group at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[subprocess.Popen[bytes]] = []

    def locust(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args],
                                cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
        log.close()
        self.started.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def kill_all(self) -> None:
        for proc in self.started:
            try:  # the group: --processes children die with their parent's group
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(tmp_path)
    try:
        yield p
    finally:
        p.kill_all()


@pytest.fixture
def gateway() -> Iterator[GatewayProcess]:
    gw = GatewayProcess()
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


def start_master(procs: Processes, host: str | None, *args: str, workers: int = 2,
                 run_time: str = "6s", users: int = 10) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    master = procs.locust(
        "master", "--headless", "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
        "--expect-workers", str(workers), "--expect-workers-max-wait", "30", "-u", str(users), "-r", str(users),
        "-t", run_time, "--loadkit-report", str(procs.tmp / "report.json"), *(["--host", host] if host else []),
        *TRAFFIC, *args)
    return master, port


def start_worker(procs: Processes, name: str, port: int, *args: str) -> subprocess.Popen[bytes]:
    return procs.locust(name, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port), *args)


def wait(proc: subprocess.Popen[bytes], procs: Processes, name: str, timeout: float = 45) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} still running after {timeout} s; its log:\n{procs.log(name)[-4000:]}")


def load_report(procs: Processes) -> dict[str, Any]:
    path = procs.tmp / "report.json"
    assert path.exists(), f"no report; master log:\n{procs.log('master')[-4000:]}"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def codes(rows: list[dict[str, Any]]) -> dict[tuple[int, str, str], int]:
    out: dict[tuple[int, str, str], int] = {}
    for row in rows:
        key = (row["code"], row["reason"], row["initiator"])
        out[key] = out.get(key, 0) + row["count"]
    return out


def assert_accounting(report: dict[str, Any]) -> None:
    s = report["sessions"]
    assert report["invariant"]["ok"], report["invariant"]
    assert s["started"] == sum(s["outcomes"].values()) + s["open"]


def assert_matches_gateway(report: dict[str, Any], stats: dict[str, Any]) -> None:
    """The merged report equals the gateway's record: equal, not close."""
    assert_accounting(report)
    assert report["sessions"]["authenticated"] == stats["sessions"]["authenticated"]
    assert codes(report["close_codes"]) == codes(stats["closes"])
    assert_auth_answers_timed(report, stats["frames_sent"]["auth_ok"])  # but for auth_oks the stop read late


# -- pure: the merge and the ledger -------------------------------------------------------


def test_merged_percentiles_equal_those_of_the_union_not_an_average() -> None:
    rng = random.Random(5)
    # three workers with different latency: an average of their p95s is wrong
    scales = {"w1": 300, "w2": 3_000, "w3": 30_000}
    union = Recorder()
    rt = FakeRuntime()
    ledger = Ledger(rt)
    ledger.new_run(scales)
    workers = {cid: Recorder() for cid in scales}
    seen = {cid: Recorder() for cid in scales}  # everything each worker sent, for the last check
    for report_no in range(3):  # several deltas per worker, as every 3 s
        for cid, scale in scales.items():
            rec = workers[cid]
            for phase in LATENCY_PHASES:
                for _ in range(rng.randrange(50, 400)):
                    value = int(rng.expovariate(1 / scale))
                    rec.observe(phase, value)
                    union.observe(phase, value)
            for outcome in (Outcome.CLOSED_NORMALLY, Outcome.DROPPED_BY_SERVER):
                n = rng.randrange(1, 6)
                for _ in range(n):
                    rec.session_started()
                    union.session_started()
                ended(rec, outcome, n)
                ended(union, outcome, n)
            sent = payload(rec, 0)
            seen[cid].merge(Recorder.from_wire(sent["delta"]))
            ledger.receive(cid, sent, final=report_no == 2)

    assert ledger.running == set()
    for phase in LATENCY_PHASES:
        merged, whole = rt.total.latency[phase], union.latency[phase]
        assert merged.count == whole.count
        for p in (50, 90, 95, 99, 99.9, 100):
            assert merged.percentile(p) == whole.percentile(p), (phase, p)
        assert merged.min == whole.min and merged.max == whole.max and merged.total == whole.total
    assert rt.total.ended == union.ended
    assert rt.total.close_codes == union.close_codes
    assert rt.report() == build_report(union, open_sessions=0, run={})

    # and averaging would not do: the workers' own p95s do not average to the union's
    p95s = [seen[cid].latency["auth"].percentile(95) for cid in scales]
    assert sum(p95s) / len(p95s) != rt.total.latency["auth"].percentile(95)


def test_a_worker_that_goes_missing_keeps_its_counts_and_its_open_sessions_count_as_lost() -> None:
    rt = FakeRuntime()
    ledger = Ledger(rt)
    ledger.new_run(["a", "b"])
    a, b = Recorder(), Recorder()
    for rec, n_open in ((a, 4), (b, 2)):
        for _ in range(n_open + 3):
            rec.session_started()
        ended(rec, Outcome.CLOSED_NORMALLY, 3)
    ledger.receive("a", payload(a, 4, pid=101))
    ledger.receive("b", payload(b, 2, pid=102))
    assert rt.report()["invariant"] == {"ok": True, "started": 12, "ended": 6, "open": 6}

    ledger.check({"a": node("missing"), "b": node()})

    report = rt.report()
    assert rt.worker_open == {"a": 0, "b": 2}  # its gauge is dropped
    assert rt.lost_workers == {"a"}
    assert report["sessions"]["outcomes"] == {"closed_normally": 6, LOST_OUTCOME: 4}
    assert report["sessions"]["by_phase"][LOST_PHASE] == {LOST_OUTCOME: 4}
    assert report["invariant"] == {"ok": True, "started": 12, "ended": 10, "open": 2}
    assert report["drops"] == 0  # the target did not drop them
    assert rt.window.ended[(LOST_OUTCOME, LOST_PHASE)] == 4  # the time series sees it too

    ledger.check({"b": node()})  # later checks do not count it twice
    assert rt.report()["sessions"]["outcomes"][LOST_OUTCOME] == 4


def test_a_written_off_worker_that_reports_again_is_taken_back() -> None:
    rt = FakeRuntime()
    ledger = Ledger(rt)
    ledger.new_run(["a"])
    a = Recorder()
    for _ in range(5):
        a.session_started()
    ledger.receive("a", payload(a, 5))
    ledger.check({"a": node("missing")})
    assert rt.lost_workers == {"a"}

    ended(a, Outcome.CLOSED_NORMALLY, 5)  # it was only slow: its sessions ended normally
    ledger.receive("a", payload(a, 0, in_run=False), final=True)

    report = rt.report()
    assert rt.lost_workers == set()
    assert report["sessions"]["outcomes"] == {"closed_normally": 5}
    assert report["invariant"] == {"ok": True, "started": 5, "ended": 5, "open": 0}
    assert (LOST_OUTCOME, LOST_PHASE) not in rt.total.ended


def test_reviving_a_worker_written_off_in_a_closed_window_never_makes_a_row_negative() -> None:
    rt = FakeRuntime()
    ledger = Ledger(rt)
    ledger.new_run(["a", "b"])
    a, b = Recorder(), Recorder()
    for _ in range(5):
        a.session_started()
    ledger.receive("a", payload(a, 5))
    ledger.check({"a": node("missing"), "b": node()})
    row = rt.close_window()  # window 1 closes: the write-off is in its row
    assert row is not None
    rows = [row["outcomes"]]
    assert rows[0] == {LOST_OUTCOME: 5}

    b.session_started()
    b.session_started()
    ended(b, Outcome.CLOSED_NORMALLY, 2)
    ledger.receive("b", payload(b, 0))
    ended(a, Outcome.CLOSED_NORMALLY, 5)  # window 2: "a" was only slow
    ledger.receive("a", payload(a, 0))
    rows.append(rt.window.outcomes())
    assert rows[1] == {"closed_normally": 7}  # nothing negative, no lost_with_worker taken from it
    assert all(n >= 0 for row in rows for n in row.values())
    assert ledger.take_revived() == 5 and ledger.take_revived() == 0  # named in window 2's row
    assert rt.report()["sessions"]["outcomes"] == {"closed_normally": 7}
    assert rt.report()["invariant"]["ok"]


def test_reviving_a_worker_in_the_window_of_its_write_off_takes_it_back_there() -> None:
    rt = FakeRuntime()
    ledger = Ledger(rt)
    ledger.new_run(["a"])
    a = Recorder()
    for _ in range(3):
        a.session_started()
    ledger.receive("a", payload(a, 3))
    ledger.check({"a": node("missing")})
    ended(a, Outcome.CLOSED_NORMALLY, 3)
    ledger.receive("a", payload(a, 0))
    assert rt.window.outcomes() == {"closed_normally": 3}
    assert ledger.take_revived() == 0


def test_a_worker_that_left_after_its_final_numbers_is_not_lost() -> None:
    rt = FakeRuntime()
    ledger = Ledger(rt)
    ledger.new_run(["a", "b"])
    a = Recorder()
    a.session_started()
    ended(a, Outcome.STOPPED_BY_HARNESS)
    ledger.receive("a", payload(a, 0, in_run=False), final=True)
    ledger.check({"b": node()})  # "a" is gone: after its final numbers, that is fine
    assert rt.lost_workers == set()
    assert ledger.running == {"b"}
    ledger.check({})  # "b" is gone without them: lost, even with nothing reported yet
    assert rt.lost_workers == {"b"}
    assert rt.worker_open == {"a": 0, "b": 0}
    assert rt.report()["invariant"]["ok"]


def test_a_late_worker_joins_the_run_and_a_new_run_starts_clean() -> None:
    rt = FakeRuntime()
    ledger = Ledger(rt)
    ledger.new_run(["a"])
    late = Recorder()
    late.session_started()
    ledger.receive("late", payload(late, 1))
    assert ledger.running == {"a", "late"}
    ledger.check({"a": node()})
    assert rt.lost_workers == {"late"}
    ledger.settled = True

    ledger.new_run(["a", "c"])
    assert (ledger.running, ledger.settled, rt.lost_workers) == ({"a", "c"}, False, set())
    assert rt.worker_open == {"a": 0, "c": 0}
    # a report from a worker outside any run (it never started users) does not enlist it
    ledger.receive("idle", payload(Recorder(), 0, in_run=False))
    assert "idle" not in ledger.running


def test_a_worker_on_another_loadkit_version_is_refused_once_and_counts_as_lost(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="loadkit")
    rt = FakeRuntime()
    ledger = Ledger(rt)
    ledger.new_run(["new", "old"])
    good, old = Recorder(), Recorder()
    good.session_started()
    old.session_started()
    ledger.receive("new", payload(good, 1))
    legacy = payload(old, 1)
    legacy["delta"].pop("v")  # what a worker from before the versioned wire sends
    ledger.receive("old", legacy)
    ledger.receive("old", legacy)
    ledger.receive("old", legacy, final=True)

    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 1 and "worker old" in errors[0] and "version 1" in errors[0], errors
    assert "same loadkit version" in errors[0]
    assert rt.lost_workers == {"old"} and ledger.running == {"new"}
    assert rt.total.started == 1  # only the readable worker's numbers
    ledger.new_run(["new", "old"])  # a new run: still unreadable, still named
    ledger.receive("old", legacy)
    assert rt.lost_workers == {"old"}


def test_a_worker_on_another_machine_sent_to_loopback_says_so(caplog: pytest.LogCaptureFixture) -> None:
    def env(host: str, master_host: str) -> Any:
        return SimpleNamespace(host=host, parsed_options=SimpleNamespace(master_host=master_host))

    caplog.set_level(logging.WARNING, logger="loadkit")
    state = {"warned": False}
    distributed._warn_if_unreachable(env("http://127.0.0.1:8080", "127.0.0.1"), state)  # same machine
    distributed._warn_if_unreachable(env("http://localhost:8080", "localhost"), state)
    distributed._warn_if_unreachable(env("http://gw.example:8080", "master.example"), state)
    assert caplog.records == []
    distributed._warn_if_unreachable(env("http://127.0.0.1:8080", "master.example"), state)
    distributed._warn_if_unreachable(env("http://[::1]:8080", "10.0.0.5"), state)
    assert len(caplog.records) == 1  # once
    assert "loopback" in caplog.records[0].getMessage()
    assert distributed._is_loopback("[::1]") and distributed._is_loopback("127.0.0.2")
    assert not distributed._is_loopback("10.0.0.5")


def test_the_ledger_is_importable_without_locust_or_gevent() -> None:
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import loadkit.locust.distributed; "
            "print(sorted(m for m in ('gevent', 'locust') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[]", out.stderr


# -- real processes on loopback ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_master_and_two_workers_report_what_the_gateway_saw(procs: Processes, gateway: GatewayProcess) -> None:
    # --stop-timeout: users end their sessions gracefully, and the workers sit out
    # the timeout outside Locust's worker list; they must still be told to quit
    master, port = start_master(procs, gateway.url, "--stop-timeout", "3")
    workers = [start_worker(procs, f"worker{i}", port) for i in range(2)]

    assert wait(master, procs, "master") == 0, procs.log("master")[-4000:]
    for i, w in enumerate(workers):
        assert wait(w, procs, f"worker{i}", timeout=10) == 0  # not the 60 s heartbeat timeout
    report = load_report(procs)
    stats = settled_stats(gateway)

    assert_matches_gateway(report, stats)
    assert report["sessions"]["open"] == 0
    assert report["sessions"]["authenticated"] > 10
    assert report["run"]["workers"] == {"count": 2, "lost": [], "left": []}
    assert report["verdict"] == "pass"
    assert procs.log("master").count("=== loadkit summary") == 1


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_eight_workers_merged_through_the_compact_wire_form_match_the_gateway_exactly(
        procs: Processes, gateway: GatewayProcess) -> None:
    # every worker's histograms and counters cross Locust's msgpack in the
    # versioned compact form (dense cores as big integers on the master)
    master, port = start_master(procs, gateway.url, "--series-interval", "1", workers=8, users=40, run_time="8s")
    workers = [start_worker(procs, f"worker{i}", port) for i in range(8)]

    assert wait(master, procs, "master", timeout=90) == 0, procs.log("master")[-4000:]
    for i, w in enumerate(workers):
        assert wait(w, procs, f"worker{i}", timeout=15) == 0
    report = load_report(procs)
    stats = settled_stats(gateway)

    assert report["run"]["workers"] == {"count": 8, "lost": [], "left": []}
    assert_matches_gateway(report, stats)
    assert report["sessions"]["open"] == 0
    assert report["sessions"]["authenticated"] > 40
    # Every token answer the harness read is one the gateway issued; an answer the run's stop cut
    # off (its guest was still waiting for it) is the gateway's alone, and only such guests miss one.
    cut = report["sessions"]["by_phase"].get("token", {}).get("stopped_by_harness", 0)
    read = report["latency_ms"]["token"]["count"] + report["harness"]["untimed_at_stop"].get("token", 0)
    assert stats["tokens"]["issued"] - cut <= read <= stats["tokens"]["issued"]
    assert "its numbers are left out" not in procs.log("master")  # no worker's report was refused
    # The master's steady state (drift's first side) begins once the spawn has settled: its last
    # arrivals in (1 s) and the workers' reports of them too (one report interval, 3 s), so no window
    # that began in the first 4 s of the run is steady, however fast the spawn.
    steady = report["drift"]["steady_from_window"]
    assert steady is None or steady >= 4, report["drift"]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_ctrl_c_on_the_master_still_waits_for_the_workers_numbers(procs: Processes, gateway: GatewayProcess) -> None:
    master, port = start_master(procs, gateway.url, run_time="60s")
    workers = [start_worker(procs, f"worker{i}", port) for i in range(2)]
    deadline = time.monotonic() + 30
    while gateway.stats()["sessions"]["closed"] < 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    master.send_signal(signal.SIGINT)

    assert wait(master, procs, "master") == 7, procs.log("master")[-4000:]  # interrupted: inconclusive
    for i, w in enumerate(workers):
        assert wait(w, procs, f"worker{i}", timeout=15) == 0
    report = load_report(procs)
    assert_matches_gateway(report, settled_stats(gateway))
    assert report["sessions"]["outcomes"].get("stopped_by_harness", 0) > 0  # stopped mid-session
    assert report["run"]["workers"] == {"count": 2, "lost": [], "left": []}
    assert report["verdict"] == "inconclusive" and report["run"]["aborted"]["why"] == "SIGINT (Ctrl-C)"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_worker_that_quits_in_good_order_mid_run_makes_the_run_invalid(procs: Processes,
                                                                         gateway: GatewayProcess) -> None:
    """A Kubernetes scale-down: SIGTERM on one worker. Its numbers arrive, but a third of the load is gone."""
    master, port = start_master(procs, gateway.url, run_time="12s")
    workers = [start_worker(procs, f"worker{i}", port) for i in range(2)]
    deadline = time.monotonic() + 30
    while gateway.stats()["sessions"]["closed"] < 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers[0].send_signal(signal.SIGTERM)

    assert wait(master, procs, "master") == 4, procs.log("master")[-4000:]
    report = load_report(procs)
    assert_matches_gateway(report, settled_stats(gateway))
    left = report["run"]["workers"]["left"]
    assert len(left) == 1 and "quit in good order" in left[0]["why"], report["run"]["workers"]
    assert report["run"]["workers"]["lost"] == []  # nothing lost: its final numbers came
    assert report["verdict"] == "invalid"
    checks = {c["name"]: c for c in report["validity"]["checks"]}
    assert not checks["workers"]["ok"] and left[0]["worker"] in checks["workers"]["detail"]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_processes_2_gives_the_report_one_process_gives(procs: Processes) -> None:
    """Same load, embedded gateway: --processes 2 and one process report alike."""
    common = ["--headless", "-u", "10", "-r", "10", "-t", "5s", *TRAFFIC]
    single = procs.locust("single", *common, "--loadkit-report", str(procs.tmp / "single.json"))
    assert wait(single, procs, "single") == 0, procs.log("single")[-4000:]
    multi = procs.locust("multi", *common, *processes_2(), "--loadkit-report", str(procs.tmp / "multi.json"))
    assert wait(multi, procs, "multi") == 0, procs.log("multi")[-4000:]
    one = json.loads((procs.tmp / "single.json").read_text())
    two = json.loads((procs.tmp / "multi.json").read_text())

    for report in (one, two):
        assert_accounting(report)
        gw = report["gateway"]  # the embedded gateway's record, read at the end of the run
        assert report["sessions"]["authenticated"] == gw["sessions"]["authenticated"] > 10
        assert_auth_answers_timed(report, gw["frames_sent"]["auth_ok"])
        if gw["sessions"]["open"] == 0:  # every close has reached the gateway
            assert codes(report["close_codes"]) == codes(gw["closes"])
        assert report["run"]["embedded_gateway"] is True
        assert report["verdict"] == "pass"
    assert two["run"]["workers"] == {"count": 2, "lost": [], "left": []}
    assert one["run"]["workers"] == {"count": 0, "lost": [], "left": []}
    assert set(two) == set(one)
    assert set(two["latency_ms"]) == set(one["latency_ms"])
    assert two["run"]["settings"] == one["run"]["settings"]
    for name in ("single", "multi"):
        assert procs.log(name).count("=== loadkit summary") == 1
        assert "[accounting ok:" in procs.log(name)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_ctrl_c_in_a_terminal_with_processes_2_still_reports_everything(procs: Processes) -> None:
    """A terminal's Ctrl-C reaches the whole process group: the master and its children at once."""
    multi = procs.locust("multi", "--headless", "-u", "10", "-r", "10", "-t", "60s", *TRAFFIC, *processes_2(),
                         "--loadkit-report", str(procs.tmp / "multi.json"))
    deadline = time.monotonic() + 20
    while "All users spawned" not in procs.log("multi") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.5)
    os.killpg(multi.pid, signal.SIGINT)

    assert wait(multi, procs, "multi") == 7, procs.log("multi")[-4000:]  # interrupted: inconclusive
    report = json.loads((procs.tmp / "multi.json").read_text())
    assert report["verdict"] == "inconclusive" and report["run"]["aborted"]["by"] == "signal"
    assert_accounting(report)
    assert report["sessions"]["open"] == 0
    assert report["sessions"]["authenticated"] == report["gateway"]["sessions"]["authenticated"] > 0
    assert report["run"]["workers"] == {"count": 2, "lost": [], "left": []}
    assert procs.log("multi").count("=== loadkit summary") == 1


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_worker_killed_mid_run_is_named_and_its_open_sessions_are_lost_with_it(
        procs: Processes, gateway: GatewayProcess) -> None:
    series = procs.tmp / "series.jsonl"
    # long sessions: every user holds one session open for the whole run
    master, port = start_master(procs, gateway.url, "--session-seconds", "30-40", "--loadkit-series", str(series),
                                "--series-interval", "0.5", run_time="14s")
    workers = [start_worker(procs, f"worker{i}", port) for i in range(2)]

    def rows() -> list[dict[str, Any]]:
        text = series.read_text() if series.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    deadline = time.monotonic() + 30  # until both workers have reported all 10 sessions open
    while not any(r["open"] == 10 for r in rows()) and time.monotonic() < deadline:
        assert master.poll() is None, procs.log("master")[-4000:]
        time.sleep(0.1)
    assert any(r["open"] == 10 for r in rows()), rows()
    victim = workers[0]
    victim.send_signal(signal.SIGKILL)

    # part of the load generator died: the run is invalid (exit 4), and says why
    assert wait(master, procs, "master") == 4, procs.log("master")[-4000:]
    assert victim.wait(timeout=5) == -signal.SIGKILL
    assert wait(workers[1], procs, "worker1", timeout=15) == 0
    report = load_report(procs)
    stats = settled_stats(gateway)

    log = procs.log("master")
    named = re.search(rf"lost worker (\S+) \(pid {victim.pid} on ", log)
    assert named, log[-4000:]
    assert report["run"]["workers"] == {"count": 2, "lost": [named.group(1)], "left": [
        {"worker": named.group(1), "why": "it stopped sending heartbeats"}]}
    assert_accounting(report)
    assert report["sessions"]["open"] == 0
    # the sessions open on the dead worker are the ones the gateway saw die without a close frame
    lost = report["sessions"]["outcomes"][LOST_OUTCOME]
    assert lost == 5
    assert lost == codes(stats["closes"]).get((1006, "", "none"))
    assert report["sessions"]["outcomes"]["stopped_by_harness"] == 5  # the survivor's, stopped at the end
    assert report["sessions"]["authenticated"] == stats["sessions"]["authenticated"] == 10
    # the gauge dropped when the worker was written off, before the run ended
    after_kill = [r["open"] for r in rows()]
    assert 5 in after_kill[after_kill.index(10):]
    assert "lost_with_worker" in log  # the summary's outcome table names it
    assert "1 of 2 LOST mid-run" in log
    assert report["verdict"] == "invalid"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_sigterm_on_a_master_writes_one_report(procs: Processes) -> None:
    multi = procs.locust("multi", "--headless", "-u", "6", "-r", "6", "-t", "60s", *TRAFFIC, *processes_2(),
                         "--loadkit-report", str(procs.tmp / "multi.json"))
    deadline = time.monotonic() + 20
    while "All users spawned" not in procs.log("multi") and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    multi.send_signal(signal.SIGTERM)
    assert wait(multi, procs, "multi") == 7  # stopped before its -t: inconclusive
    report = json.loads((procs.tmp / "multi.json").read_text())
    assert report["run"]["aborted"]["why"] == "SIGTERM" and report["verdict"] == "inconclusive"
    assert_accounting(report)
    assert procs.log("multi").count("=== loadkit summary") == 1
    assert "gateway" in report


# -- the Kubernetes example stays in step with the project -------------------------------


K8S = ROOT / "examples" / "kubernetes"


def configmap_file(name: str) -> str:
    """The literal block ``name: |`` of configmap.yaml, dedented (no YAML library needed)."""
    lines = (K8S / "configmap.yaml").read_text().splitlines()
    start = lines.index(f"  {name}: |") + 1
    block = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block).rstrip("\n") + "\n"


def test_the_kubernetes_configmap_holds_the_project_locustfile_and_a_valid_scenario(tmp_path: Path) -> None:
    from loadkit.config import load_scenario
    from loadkit.report.thresholds import parse_all

    assert configmap_file("locustfile.py") == LOCUSTFILE.read_text()
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(configmap_file("scenario.toml"))
    loaded = load_scenario(scenario)  # raises ScenarioError listing every problem
    parse_all(loaded.option_values()["threshold"])
    assert "outcome.lost_with_worker.count == 0" in loaded.option_values()["threshold"]


def test_the_kubernetes_pods_agree_on_names_ports_and_files() -> None:
    master, worker, job = ((K8S / f).read_text() for f in ("master.yaml", "worker.yaml", "master-job.yaml"))
    for text in (master, worker, job):
        assert "--config=/mnt/locust/scenario.toml" in text and "--locustfile=/mnt/locust/locustfile.py" in text
        assert "mountPath: /mnt/locust" in text and "name: loadkit\n" in text  # the ConfigMap
    assert "kind: Service" in master and "name: loadkit-master" in master and "port: 5557" in master
    assert "--master-host=loadkit-master" in worker and "--master-port=5557" in worker
    assert "--worker" in worker and "--master" in master and "--master" in job
    replicas = re.search(r"replicas: (\d+)", worker)
    assert replicas and f"--expect-workers={replicas.group(1)}" in job
    assert "docs/capacity.md" in worker


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_workers_that_lose_their_master_close_their_sessions_within_the_bound_and_exit_non_zero(
        procs: Processes, gateway: GatewayProcess) -> None:
    users = 6
    master, port = start_master(procs, gateway.url, "--session-seconds", "60-70", run_time="60s",
                                workers=2, users=users)
    workers = [start_worker(procs, f"worker{i}", port) for i in range(2)]
    deadline = time.monotonic() + 40
    while gateway.stats()["sessions"]["authenticated"] < users and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gateway.stats()["sessions"]["open"] == users, procs.log("master")[-3000:]
    os.kill(master.pid, signal.SIGKILL)
    killed = time.monotonic()
    master.wait()

    bound = distributed.MASTER_LOST_S + distributed.WATCH_INTERVAL_S + 2.0  # --close-timeout 2 (default)
    while gateway.stats()["sessions"]["open"] and time.monotonic() - killed < bound + 10:
        time.sleep(0.1)
    closed_after = time.monotonic() - killed
    stats = settled_stats(gateway)
    assert stats["sessions"]["open"] == 0
    assert closed_after <= bound + 1.5, closed_after  # not Locust's 60 s; 1.5 s for a busy machine
    assert closed_after >= distributed.MASTER_LOST_S - 1.5  # and not before the master was given up
    # every session ended as a client leaving: 1001, not a lost link
    assert codes(stats["closes"]) == {(1001, "harness stopping", "client"): users}
    for i, w in enumerate(workers):
        assert wait(w, procs, f"worker{i}", timeout=15) == distributed.MASTER_LOST_EXIT_CODE
        log = procs.log(f"worker{i}")
        assert log.count("loadkit: lost the master at 127.0.0.1:") == 1, log[-3000:]
        assert "Traceback" not in log
