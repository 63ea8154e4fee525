"""loadkit's capacity and efficiency bench: ``python bench/run.py [--quick] [--json OUT]``.

Four measurements, each for loadkit and two baselines in the same run
(these machines are noisy: only ratios measured in one run mean much):

(a) idle capacity: guests held authenticated with keepalive in ONE harness
    process; RSS, CPU and file descriptors per 1,000 guests as the slope
    between two guest counts, the spawn peak (VmHWM), and a bare Locust user
    with no socket as the reference;
(b) churn: token → connect → auth → close sessions per harness CPU-second;
(c) throughput: message → ack round trips per harness CPU-second;
(d) accuracy: harness-measured auth latency against a fixed delay injected
    at the gateway;
(e) chatty load (loadkit only): guests at loadkit's default timings (a
    message every 2-5 s with agent replies, keepalive 20 s) held in ONE
    harness process, in steps up to 18,000; per step the harness's CPU and
    generator lag, the gateways' and the whole machine's CPU, descriptors
    and memory, and which of them ran out.

The contenders:

- ``loadkit``: the real plugin and ``GuestUser`` (``bench/loadkit_locustfile.py``);
- ``threaded``: the obvious recipe, websockets' threaded client in a plain
  Locust user (``bench/baseline_threaded_locustfile.py``);
- ``raw``: a raw asyncio websockets client, no Locust (``bench/raw_asyncio.py``);
- ``bare``: a Locust user with no socket, for memory only (``bench/bare_locustfile.py``);
- ``floor`` ((c) only): loadkit's transport under Locust with a paced send-and-await-ack loop and
  nothing else (``bench/transport_floor_locustfile.py``): ``loadkit - floor`` is what the session's
  own work costs per round trip.

Harness CPU is ``psutil.Process(pid).cpu_times()`` (user + system) of the
harness process only, never the gateways'. The gateway side is several
``python -m loadkit.gateway`` processes on their own ports (no process over
the 20,000-descriptor limit, and not the bottleneck); harness processes take
them round-robin. Traffic stays on 127.0.0.1; every phase is bounded in time
and every process started here is stopped by its PID, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from loadkit.gateway.process import GatewayProcess  # noqa: E402

import peers  # noqa: E402  (bench/peers.py: Artillery and Tsung)

#: The peers that run in this invocation (set in main from --peers and what is installed).
PEERS: list[str] = []

PY = sys.executable
LOCUST = str(Path(PY).parent / "locust")

# -- modes ----------------------------------------------------------------------------

FULL: dict[str, Any] = {
    "gateways": 4,
    "idle_counts": {"loadkit": (2000, 18000), "raw": (2000, 18000), "bare": (2000, 18000),
                    "threaded": (2000, 5000)},  # threaded: 3 fds per guest; 6,000 ran into the 20,000 fds
    # Spawn no faster than the gateways complete sessions (~500/s here): guests queued for their
    # token call leave transient objects behind that fragment the heap (+2.7 KB RSS per guest at 1000/s).
    "idle_rate": 500,
    "keepalive_s": 20.0,
    "idle_hold_s": 22.0,      # > keepalive: every guest has pinged once when RSS is read
    "churn_users": 50,
    "chat_users": 100,
    "accuracy_users": 50,
    "warmup_s": 1.5,
    "window_s": 7.0,
    "rounds": 3,
    "accuracy_s": 12.0,
    "auth_delay_ms": 200.0,
    "chat_interval": "0.02-0.03",  # think time between one guest's messages in (c), every harness alike
    # (e) chatty load: loadkit's default timings, guests held; steps up to the goal, each held load_hold_s
    "load_steps": (6000, 12000, 18000),
    "load_hold_s": 20.0,
    # peers (Artillery, Tsung): they cannot be steered while running, so each window is its own run
    "peer_idle_counts": (2000, 10000),
    "peer_churn_rate": 300,        # new guests per second: both peers churn open-loop (arrivals)
    "peer_start_s": 90.0,          # how long a peer may take to start its first guests (node is slow here)
    "peer_warmup_s": 4.0,          # after its first work: Artillery's arrivals take seconds to reach their rate
}
QUICK: dict[str, Any] = {
    **FULL,
    "gateways": 2,
    "idle_counts": {"loadkit": (500, 2000), "raw": (500, 2000), "bare": (500, 2000),
                    "threaded": (500, 1500)},
    "idle_rate": 1000,
    "keepalive_s": 2.5,
    "idle_hold_s": 3.0,
    "churn_users": 30,
    "chat_users": 50,
    "accuracy_users": 30,
    "warmup_s": 1.0,
    "window_s": 3.0,
    "rounds": 1,
    "accuracy_s": 3.0,
    "load_steps": (500, 1500),
    "load_hold_s": 8.0,
    "peer_idle_counts": (500, 2000),
}

TARGETS = {
    "idle_guests": 18000,         # concurrent authenticated guests with keepalive, one process
    "idle_kb_per_guest": 15.0,    # RSS slope
    "churn_vs_threaded": 1.5,     # sessions per harness CPU-second
    "chat_vs_threaded": 1.5,      # round trips per harness CPU-second
    "chat_vs_raw": 1.5,           # round trips per harness CPU-second vs raw asyncio (issue #16)
    "chat_cpu_vs_raw": 1.5,       # harness CPU per round trip, at most this times raw asyncio's
    "load_guests": 18000,         # chatty guests at default timings, all authenticated and held, one process
    "load_cpu_percent": 80.0,     # ... with the harness under this share of one core
    "load_lag_p99_ms": 100.0,     # ... and its generator lag p99 within --lag-limit's default
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- processes --------------------------------------------------------------------------


class Gateways:
    """N reference gateway processes on N ports, all with the same settings."""

    def __init__(self, n: int, settings: dict[str, Any]) -> None:
        self.procs = [GatewayProcess(settings=settings) for _ in range(n)]
        self.urls: list[str] = []

    def __enter__(self) -> Gateways:
        try:
            for gw in self.procs:
                self.urls.append(gw.start())
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        for gw in self.procs:
            try:
                gw.stop()
            except Exception as exc:  # keep stopping the others
                log(f"gateway {gw.pid}: {exc}")

    def counter(self, name: str) -> int:
        """A work counter summed over the gateways: ``closed`` sessions, ``open`` sessions, ``ack`` frames sent."""
        total = 0
        for gw in self.procs:
            st = gw.stats()
            total += st["frames_sent"]["ack"] if name == "ack" else st["sessions"][name]
        return total

    def sessions(self) -> dict[str, int]:
        """sessions.{opened, authenticated, open, closed} summed over the gateways."""
        out = {"opened": 0, "authenticated": 0, "open": 0, "closed": 0}
        for gw in self.procs:
            s = gw.stats()["sessions"]
            for k in out:
                out[k] += s[k]
        return out


class Harness:
    """One harness process (Locust or raw asyncio) steered through files."""

    def __init__(self, name: str, argv: list[str], workdir: Path, hosts: list[str],
                 extra_env: dict[str, str] | None = None, max_s: float = 600) -> None:
        self.name = name
        self.ctl = workdir / f"{name}.ctl.json"
        self.status_path = workdir / f"{name}.status.json"
        self.samples_path = workdir / f"{name}.samples.json"
        self.log_path = workdir / f"{name}.log"
        for p in (self.status_path, self.samples_path):
            p.unlink(missing_ok=True)
        self.set_users(0, 1)
        env = dict(os.environ)
        env.update({
            "BENCH_CTL": str(self.ctl), "BENCH_STATUS": str(self.status_path),
            "BENCH_SAMPLES": str(self.samples_path), "BENCH_HOSTS": ",".join(hosts),
            "BENCH_MAX_S": str(max_s),
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), str(BENCH), env.get("PYTHONPATH")) if p),
        })
        env.update(extra_env or {})
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (outlives this call: closed by stop())
        self.proc = subprocess.Popen(argv, cwd=BENCH, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def set_users(self, users: int, rate: float) -> None:
        tmp = self.ctl.with_suffix(".tmp")
        tmp.write_bytes(json.dumps({"users": users, "rate": rate}).encode())
        os.replace(tmp, self.ctl)

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_bytes())
        except (OSError, ValueError):
            return {}

    def count(self, name: str) -> int:
        return int(self.status().get("counts", {}).get(name, [0, 0])[0])

    def failures(self) -> int:
        return sum(int(v[1]) for v in self.status().get("counts", {}).values())

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def cpu_system(self) -> float:
        """Kernel CPU seconds (system calls: sends, receives, epoll), for the kernel's share."""
        return float(self.ps.cpu_times().system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def fds(self) -> int:
        return int(self.ps.num_fds())

    def peak_rss(self) -> int:
        """VmHWM: the highest RSS the process ever had (the spawn peak)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, what: str, pred: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} while waiting for {what}; "
                                   f"see {self.log_path}")
            st = self.status()
            if st and pred(st):
                return True
            time.sleep(0.2)
        log(f"{self.name}: timed out after {timeout:.0f} s waiting for {what}: {self.status()}")
        return False

    def request_stop(self) -> None:
        if self.alive():
            tmp = self.ctl.with_suffix(".tmp")
            tmp.write_bytes(b'{"stop": true}')
            os.replace(tmp, self.ctl)

    def stop(self, timeout: float = 20) -> None:
        """Ask it to stop, then SIGINT, then SIGKILL: by PID only."""
        if self.alive():
            self.request_stop()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name}: did not stop in {timeout:.0f} s; SIGINT")
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    log(f"{self.name}: SIGKILL")
                    self.proc.kill()
                    self.proc.wait()
        self._log.close()

    def samples(self) -> dict[str, list[int]]:
        try:
            return json.loads(self.samples_path.read_bytes())
        except (OSError, ValueError):
            return {}


def locust_argv(locustfile: str, host: str, extra: list[str] = (), user_class: str | None = None) -> list[str]:
    argv = [LOCUST, "-f", locustfile, "--headless", "--only-summary", "--loglevel", "WARNING",
            "--host", host, *extra]
    return argv + ([user_class] if user_class else [])


def start_harness(kind: str, mode: str, workdir: Path, hosts: list[str], cfg: dict[str, Any],
                  loadkit_args: list[str] = (), tag: str = "") -> Harness:
    """kind: loadkit | threaded | raw | bare; mode: idle | churn | chat."""
    name = f"{tag or mode}-{kind}"
    if kind == "loadkit":
        argv = locust_argv("loadkit_locustfile.py", hosts[0], list(loadkit_args))
        return Harness(name, argv, workdir, hosts)
    if kind == "bare":
        return Harness(name, locust_argv("bare_locustfile.py", hosts[0]), workdir, hosts)
    if kind == "threaded":
        cls = {"idle": "IdleGuest", "churn": "ChurnGuest", "chat": "ChatGuest"}[mode]
        return Harness(name, locust_argv("baseline_threaded_locustfile.py", hosts[0], user_class=cls),
                       workdir, hosts, {"KEEPALIVE_S": str(cfg["keepalive_s"]),
                                        "CHAT_INTERVAL": cfg.get("chat_interval", "0")})
    if kind == "floor":  # loadkit's transport with the least loop on top (chat only)
        return Harness(name, locust_argv("transport_floor_locustfile.py", hosts[0]), workdir, hosts,
                       {"CHAT_INTERVAL": cfg.get("chat_interval", "0.02-0.03")})
    if kind == "raw":
        argv = [PY, str(BENCH / "raw_asyncio.py"), "--mode", mode, "--hosts", ",".join(hosts),
                "--keepalive", str(cfg["keepalive_s"]), "--interval", cfg.get("chat_interval", "0")]
        return Harness(name, argv, workdir, hosts)
    raise ValueError(kind)


# -- (a) idle capacity --------------------------------------------------------------------


def idle_phase(cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ka = cfg["keepalive_s"]
    loadkit_args = ["--session-seconds", "3600", "--keepalive-interval", f"{ka:g}",
                    "--message-interval", "3600-3600", "--guest-pause", "0"]
    settings = {"agent_replies": "false"}
    for kind in cfg.get("idle_harnesses", ("bare", "loadkit", "threaded", "raw")):
        with Gateways(cfg["gateways"], settings) as gws:
            counts = cfg["idle_counts"][kind]
            log(f"(a) idle {kind}: {counts[0]} then {counts[1]} guests")
            h = start_harness(kind, "idle", workdir, gws.urls, cfg, loadkit_args)
            try:
                out[kind] = idle_run(h, gws, kind, counts, cfg)
            except Exception as exc:
                log(f"(a) idle {kind} failed: {exc}")
                out[kind] = {"error": str(exc)}
            finally:
                h.stop()
    for name in PEERS:
        try:
            out[name] = peer_idle(name, cfg, workdir, settings)
        except Exception as exc:
            log(f"(a) idle {name} failed: {exc}")
            out[name] = {"error": str(exc)}
    return out


def peer_idle(name: str, cfg: dict[str, Any], workdir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """A peer holding idle guests: one run per count (it cannot be steered), RSS of its process tree."""
    points = []
    for n in cfg["peer_idle_counts"]:
        with Gateways(cfg["gateways"], settings) as gws:
            log(f"(a) idle {name}: {n} guests")
            run = peers.PeerRun(name, "idle", gws.urls, n, cfg["idle_rate"], workdir, cfg, duration_s=600)
            try:
                t0 = time.monotonic()
                deadline = t0 + cfg["peer_start_s"] + n / 200
                while gws.counter("open") < n and time.monotonic() < deadline and run.alive():
                    time.sleep(0.5)
                held = gws.counter("open")
                spawn_s = time.monotonic() - t0
                c0, w0 = run.cpu(), time.monotonic()
                time.sleep(cfg["idle_hold_s"])
                c1, w1 = run.cpu(), time.monotonic()
                points.append({"guests": n, "reached": held >= n, "gateway_open": gws.counter("open"),
                               "rss_mb": round(run.rss() / 1e6, 1), "spawn_s": round(spawn_s, 1),
                               "cpu_percent": round(100 * (c1 - c0) / (w1 - w0), 2)})
                log(f"    {points[-1]}")
            finally:
                run.stop()
    lo, hi = points
    # per guest actually held (a peer may fall short of its count): the gateways' open sessions
    dn = (hi["gateway_open"] - lo["gateway_open"]) / 1000.0
    return {"points": points, "held": hi["gateway_open"], "all_authenticated": hi["reached"],
            "kb_per_guest": round((hi["rss_mb"] - lo["rss_mb"]) / dn, 2),
            "cpu_percent_per_1000": round((hi["cpu_percent"] - lo["cpu_percent"]) / dn, 3),
            "rss_top_mb": hi["rss_mb"]}


def idle_run(h: Harness, gws: Gateways, kind: str, counts: tuple[int, int], cfg: dict[str, Any]) -> dict[str, Any]:
    if not h.wait_for("startup", lambda st: "users" in st, 60):
        raise RuntimeError("harness did not start")
    points = []
    for n in counts:
        t0 = time.monotonic()
        # a bare user makes no token call, so nothing queues: spawn it at full speed
        h.set_users(n, cfg["idle_rate"] if kind != "bare" else max(cfg["idle_rate"], 1000))
        if kind == "bare":
            ready = h.wait_for(f"{n} users", lambda st, n=n: st["users"] >= n, 30 + n / 500)
        else:
            ready = h.wait_for(f"{n} authenticated guests",
                               lambda st, n=n: st["users"] >= n
                               and st.get("authenticated", 0) - st.get("ended", 0) >= n,
                               30 + n / 200)
        spawn_s = time.monotonic() - t0
        c0, w0 = h.cpu(), time.monotonic()
        time.sleep(cfg["idle_hold_s"])
        c1, w1 = h.cpu(), time.monotonic()
        rss = min(h.rss() for _ in range(3) if time.sleep(0.1) is None)
        st = h.status()
        gw = gws.sessions()
        points.append({
            "guests": n, "reached": ready, "spawn_s": round(spawn_s, 1),
            "rss_mb": round(rss / 1e6, 1), "fds": h.fds(),
            "cpu_percent": round(100 * (c1 - c0) / (w1 - w0), 2),
            "harness_users": st.get("users"),
            "harness_open": st.get("open"),
            "harness_authenticated": st.get("authenticated"),
            "harness_ended": st.get("ended"),
            "gateway_open": gw["open"], "gateway_authenticated": gw["authenticated"],
            "pings": h.count("ping"), "failures": h.failures(),
        })
        log(f"    {points[-1]}")
    lo, hi = points
    dn = (hi["guests"] - lo["guests"]) / 1000.0
    # a bare user reports no sessions (its status has users only)
    held = (hi["harness_authenticated"] or 0) - (hi["harness_ended"] or 0)
    top_ok = hi["reached"] and (kind == "bare" or (hi["gateway_open"] >= hi["guests"] and held >= hi["guests"]))
    return {
        "points": points,
        "held": hi["guests"] if top_ok else min(hi["gateway_open"], hi.get("harness_open") or 0),
        "all_authenticated": top_ok,
        "kb_per_guest": round((hi["rss_mb"] - lo["rss_mb"]) * 1000 / (dn * 1000), 2),
        "cpu_percent_per_1000": round((hi["cpu_percent"] - lo["cpu_percent"]) / dn, 3),
        "cpu_percent_per_1000_at_top": round(hi["cpu_percent"] / (hi["guests"] / 1000), 3),
        "fds_per_1000": round((hi["fds"] - lo["fds"]) / dn, 1),
        "rss_top_mb": hi["rss_mb"],
        "spawn_peak_mb": round(h.peak_rss() / 1e6, 1),
    }


# -- (b) churn, (c) throughput, (d) accuracy -----------------------------------------------


class CpuMeter:
    """CPU seconds of a set of processes (the gateways), for context in the table."""

    def __init__(self, pids: list[int | None]) -> None:
        self.procs = [psutil.Process(p) for p in pids if p is not None]

    def cpu(self) -> float:
        total = 0.0
        for p in self.procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total


def measure_once(h: Harness, users: int, counter: str, cfg: dict[str, Any], gw: CpuMeter) -> dict[str, float]:
    """Start ``users``, let them settle, count ``counter`` over a window against harness CPU, stop them."""
    h.set_users(users, users)
    ok = h.wait_for(f"{users} users", lambda st: st["users"] >= users and st["counts"].get(counter, [0])[0] > 0,
                    30)
    if not ok:
        raise RuntimeError(f"{users} users never got going")
    time.sleep(cfg["warmup_s"])
    n0, c0, g0, w0, f0, k0 = h.count(counter), h.cpu(), gw.cpu(), time.monotonic(), h.failures(), h.cpu_system()
    time.sleep(cfg["window_s"])
    n1, c1, g1, w1, f1, k1 = h.count(counter), h.cpu(), gw.cpu(), time.monotonic(), h.failures(), h.cpu_system()
    h.set_users(0, max(users, 100))
    h.wait_for("users stopped", lambda st: st["users"] == 0, 30)
    return {"count": n1 - n0, "cpu_s": c1 - c0, "wall_s": w1 - w0, "gateway_cpu_s": g1 - g0, "failures": f1 - f0,
            "kernel_cpu_s": k1 - k0}


def peer_measure(name: str, mode: str, gws: Gateways, users: int, cfg: dict[str, Any], workdir: Path,
                 meter: CpuMeter) -> dict[str, float]:
    """One window of a peer: start it, wait until the gateways see its work, count over the window, stop it.

    The work is counted by the gateways (sessions closed in churn, acks sent in chat): during a peer's
    turn the Locust harnesses hold no users, so only the peer talks to them.
    """
    counter = "closed" if mode == "churn" else "ack"
    rate = cfg["peer_churn_rate"] if mode == "churn" else users
    run = peers.PeerRun(name, mode, gws.urls, users, rate, workdir, cfg, duration_s=600)
    try:
        start = gws.counter(counter)
        deadline = time.monotonic() + cfg["peer_start_s"]
        while gws.counter(counter) == start and time.monotonic() < deadline:
            if not run.alive():
                raise RuntimeError(f"{name} exited with {run.proc.returncode}; see {run.log_path}")
            time.sleep(0.2)
        if gws.counter(counter) == start:
            raise RuntimeError(f"{name} did no work in {cfg['peer_start_s']:g} s; see {run.log_path}")
        time.sleep(cfg["peer_warmup_s"] + (users / rate if mode != "churn" else 0))
        n0, c0, g0, w0, k0 = gws.counter(counter), run.cpu(), meter.cpu(), time.monotonic(), run.cpu_system()
        time.sleep(cfg["window_s"])
        n1, c1, g1, w1, k1 = gws.counter(counter), run.cpu(), meter.cpu(), time.monotonic(), run.cpu_system()
    finally:
        run.stop()
    # the gateways' CPU includes answering the peer's stats calls: a few ms per window
    return {"count": n1 - n0, "cpu_s": c1 - c0, "wall_s": w1 - w0, "gateway_cpu_s": g1 - g0, "failures": 0,
            "kernel_cpu_s": k1 - k0}


def summarize(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """Pooled over the rounds: total count over total harness CPU."""
    n = sum(r["count"] for r in rounds)
    cpu = sum(r["cpu_s"] for r in rounds)
    wall = sum(r["wall_s"] for r in rounds)
    gcpu = sum(r["gateway_cpu_s"] for r in rounds)
    per_round = [round(r["count"] / r["cpu_s"], 1) for r in rounds if r["cpu_s"] > 0]
    return {
        "count": n, "per_s": round(n / wall, 1) if wall else None, "cpu_s": round(cpu, 3),
        "cpu_percent": round(100 * cpu / wall, 1) if wall else None,
        "gateway_cpu_percent": round(100 * gcpu / wall, 1) if wall else None,
        "per_cpu_s": round(n / cpu, 1) if cpu > 0 else None,
        "cpu_us_each": round(cpu / n * 1e6, 1) if n else None,
        "per_cpu_s_rounds": per_round,
        "failures": sum(r["failures"] for r in rounds),
        "kernel_percent": round(100 * sum(r.get("kernel_cpu_s", 0.0) for r in rounds) / cpu, 1) if cpu > 0 else None,
    }


def rate_phase(label: str, mode: str, counter: str, users: int, cfg: dict[str, Any], workdir: Path,
               settings: dict[str, Any], loadkit_args: list[str],
               kinds: tuple[str, ...] = ("loadkit", "threaded", "raw")) -> dict[str, Any]:
    """All the harnesses start idle; each takes its turn with ``users`` for a window,
    round after round, so a slow spell on this shared machine hits them alike."""
    out: dict[str, Any] = {}
    with Gateways(cfg["gateways"], settings) as gws:
        meter = CpuMeter([gw.pid for gw in gws.procs])
        harnesses: dict[str, Harness] = {}
        try:
            for kind in kinds:
                harnesses[kind] = start_harness(kind, mode, workdir, gws.urls, cfg, loadkit_args)
            for kind, h in harnesses.items():
                if not h.wait_for("startup", lambda st: "users" in st, 60):
                    raise RuntimeError(f"{kind} did not start; see {h.log_path}")
            rounds: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
            for r in range(cfg["rounds"]):
                for kind in kinds:
                    if kind in out:  # failed before
                        continue
                    try:
                        rounds[kind].append(measure_once(harnesses[kind], users, counter, cfg, meter))
                    except Exception as exc:
                        log(f"{label} {kind} failed: {exc}")
                        out[kind] = {"error": str(exc)}
                        continue
                    last = rounds[kind][-1]
                    log(f"{label} round {r + 1} {kind}: {last['count']} in {last['wall_s']:.1f} s, "
                        f"{last['count'] / max(last['cpu_s'], 1e-9):.0f} per harness CPU-s")
                for name in PEERS:
                    if name in out:
                        continue
                    try:
                        rounds.setdefault(name, []).append(peer_measure(name, mode, gws, users, cfg, workdir, meter))
                    except Exception as exc:
                        log(f"{label} {name} failed: {exc}")
                        out[name] = {"error": str(exc)}
                        continue
                    last = rounds[name][-1]
                    log(f"{label} round {r + 1} {name}: {last['count']} in {last['wall_s']:.1f} s, "
                        f"{last['count'] / max(last['cpu_s'], 1e-9):.0f} per CPU-s (counted by the gateways)")
            for kind in (*kinds, *PEERS):
                if kind not in out and rounds.get(kind):
                    out[kind] = summarize(rounds[kind])
        finally:
            for h in harnesses.values():
                h.request_stop()  # all at once, then wait for each
            for h in harnesses.values():
                h.stop()
    out["users"] = users
    return out


def churn_phase(cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
    args = ["--session-seconds", "0", "--guest-pause", "0", "--keepalive-interval", "20",
            "--message-interval", "3600-3600", "--reconnect-max-attempts", "0"]
    log(f"(b) churn: {cfg['churn_users']} users per harness, {cfg['rounds']} rounds")
    return rate_phase("(b) churn", "churn", "session", cfg["churn_users"], cfg, workdir,
                      {"agent_replies": "false"}, args)


def chat_phase(cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
    args = ["--session-seconds", "3600", "--keepalive-interval", "20",
            "--message-interval", cfg["chat_interval"], "--guest-pause", "0"]
    log(f"(c) throughput: {cfg['chat_users']} users per harness, one message every {cfg['chat_interval']} s each, "
        f"{cfg['rounds']} rounds")
    return rate_phase("(c) throughput", "chat", "message", cfg["chat_users"], cfg, workdir,
                      {"agent_replies": "false", "rate_limit_per_s": 0}, args,
                      ("loadkit", "threaded", "raw", "floor"))


def percentile(values: list[int], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p / 100 * len(v) // 1)) - 1))  # nearest rank
    return v[k] / 1000.0


def accuracy_phase(cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    delay = cfg["auth_delay_ms"]
    settings = {"agent_replies": "false", "faults.auth_latency": f"fixed:{delay:g}"}
    with Gateways(cfg["gateways"], settings) as gws:
        for kind in ("loadkit", "threaded", "raw"):
            log(f"(d) accuracy {kind}: {cfg['accuracy_users']} users, auth delayed {delay:g} ms at the gateway")
            report = workdir / f"accuracy-{kind}.report.json"
            args = ["--session-seconds", "0", "--guest-pause", "0", "--reconnect-max-attempts", "0",
                    "--loadkit-report", str(report)]
            h = start_harness(kind, "churn", workdir, gws.urls, cfg, args, tag="accuracy")
            try:
                if not h.wait_for("startup", lambda st: "users" in st, 60):
                    raise RuntimeError("harness did not start")
                h.set_users(cfg["accuracy_users"], cfg["accuracy_users"])
                time.sleep(cfg["accuracy_s"])
                cpu_percent = None
            except Exception as exc:
                log(f"(d) accuracy {kind} failed: {exc}")
                out[kind] = {"error": str(exc)}
                continue
            finally:
                h.stop()
            if kind == "loadkit":
                try:
                    lat = json.loads(report.read_bytes())["latency_ms"]["auth"]
                    p50, p99, n = lat["p50"], lat["p99"], lat["count"]
                except (OSError, ValueError, KeyError) as exc:
                    out[kind] = {"error": f"no report: {exc}"}
                    continue
            else:
                samples = h.samples().get("auth_us", [])
                p50, p99, n = percentile(samples, 50), percentile(samples, 99), len(samples)
            out[kind] = {
                "count": n, "p50_ms": p50, "p99_ms": p99,
                "p50_error_ms": None if p50 is None else round(p50 - delay, 2),
                "p99_error_ms": None if p99 is None else round(p99 - delay, 2),
                "cpu_percent": cpu_percent,
            }
            log(f"    {out[kind]}")
        for name in PEERS:
            # churning at the rate loadkit's users reached above, for accuracy_s; the peer ends by
            # itself so that it writes its own figures
            rate = max(10, int((get(out, "loadkit", "count") or 500) / cfg["accuracy_s"]))
            log(f"(d) accuracy {name}: {rate} new guests a second for {cfg['accuracy_s']:g} s")
            run = peers.PeerRun(name, "churn", gws.urls, 0, rate, workdir, cfg, duration_s=cfg["accuracy_s"])
            try:
                run.proc.wait(cfg["accuracy_s"] + cfg["peer_start_s"] + 30)
            except subprocess.TimeoutExpired:
                log(f"(d) accuracy {name}: did not end by itself")
            finally:
                run.stop()
            got = run.auth_latency()
            p50, p99, mean = got.get("p50_ms"), got.get("p99_ms"), got.get("mean_ms")
            out[name] = {"count": got.get("count"), "p50_ms": p50, "p99_ms": p99, "mean_ms": mean,
                         "p50_error_ms": None if p50 is None else round(p50 - delay, 2),
                         "p99_error_ms": None if p99 is None else round(p99 - delay, 2),
                         "mean_error_ms": None if mean is None else round(mean - delay, 2)}
            log(f"    {out[name]}")
    return out


# -- (e) chatty load at default timings -------------------------------------------------------


def machine_busy(before: Any, after: Any) -> float:
    """Share of all the machine's cores busy between two psutil.cpu_times() samples, in % of one core."""
    idle = (after.idle + getattr(after, "iowait", 0.0)) - (before.idle + getattr(before, "iowait", 0.0))
    total = sum(after) - sum(before)
    return 100.0 * (os.cpu_count() or 1) * (1.0 - idle / total) if total > 0 else 0.0


def series_rows(path: Path, since: float, until: float) -> list[dict[str, Any]]:
    rows = []
    try:
        for line in path.read_bytes().splitlines():
            row = json.loads(line)
            if since <= row.get("t", 0) <= until:
                rows.append(row)
    except (OSError, ValueError):
        pass
    return rows


def load_phase(cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """One loadkit process, guests at the default timings (a message every 2-5 s, agent replies, a ping
    every 20 s), held; steps up to the goal. Per step: held or not, harness CPU, generator lag, the
    gateways' and the whole machine's CPU, descriptors, memory: which resource ran out first."""
    steps = cfg["load_steps"]
    series, report = workdir / "load.series.jsonl", workdir / "load.report.json"
    args = ["--session-seconds", "3600", "--keepalive-interval", "20", "--message-interval", "2-5",
            "--guest-pause", "0", "--series-interval", "5", "--loadkit-series", str(series),
            "--loadkit-report", str(report)]
    out: dict[str, Any] = {"steps": [], "gateways": cfg["gateways"]}
    log(f"(e) chatty load: {', '.join(map(str, steps))} guests at default timings, each held "
        f"{cfg['load_hold_s']:g} s, {cfg['gateways']} gateway processes")
    with Gateways(cfg["gateways"], {}) as gws:  # the gateway's defaults: agent replies after 0.5-2 s
        meter = CpuMeter([gw.pid for gw in gws.procs])
        h = start_harness("loadkit", "load", workdir, gws.urls, cfg, args)
        try:
            if not h.wait_for("startup", lambda st: "users" in st, 60):
                raise RuntimeError("harness did not start")
            for n in steps:
                t0 = time.monotonic()
                h.set_users(n, cfg["idle_rate"])
                ready = h.wait_for(f"{n} authenticated chatty guests",
                                   lambda st, n=n: st["users"] >= n
                                   and st.get("authenticated", 0) - st.get("ended", 0) >= n,
                                   30 + n / 200)
                spawn_s = time.monotonic() - t0
                time.sleep(2.0)  # let the spawn's backlog drain before the window
                counts0 = {k: h.count(k) for k in ("message", "reply", "ping")}
                c0, g0, m0, w0, t_wall0, f0 = h.cpu(), meter.cpu(), psutil.cpu_times(), time.monotonic(), \
                    time.time(), h.failures()
                time.sleep(cfg["load_hold_s"])
                c1, g1, m1, w1, t_wall1, f1 = h.cpu(), meter.cpu(), psutil.cpu_times(), time.monotonic(), \
                    time.time(), h.failures()
                counts1 = {k: h.count(k) for k in ("message", "reply", "ping")}
                wall = w1 - w0
                st, gw = h.status(), gws.sessions()
                lags = [r["harness"]["lag_ms"] for r in series_rows(series, t_wall0, t_wall1 + 5)
                        if r.get("harness", {}).get("lag_ms", {}).get("count")]
                point = {
                    "guests": n, "reached": ready, "spawn_s": round(spawn_s, 1),
                    "harness_open_authenticated": st.get("authenticated", 0) - st.get("ended", 0),
                    "gateway_open": gw["open"],
                    "harness_cpu_percent": round(100 * (c1 - c0) / wall, 1),
                    "gateways_cpu_percent": round(100 * (g1 - g0) / wall, 1),
                    "machine_busy_percent": round(machine_busy(m0, m1), 1),
                    "messages_per_s": round((counts1["message"] - counts0["message"]) / wall, 1),
                    "replies_per_s": round((counts1["reply"] - counts0["reply"]) / wall, 1),
                    "pings_per_s": round((counts1["ping"] - counts0["ping"]) / wall, 1),
                    "failures": f1 - f0,
                    "lag_p50_ms": max((x.get("p50") or 0 for x in lags), default=None),
                    "lag_p99_ms": max((x.get("p99") or 0 for x in lags), default=None),
                    "lag_max_ms": max((x.get("max") or 0 for x in lags), default=None),
                    "rss_mb": round(h.rss() / 1e6, 1), "fds": h.fds(),
                    "mem_available_mb": round(psutil.virtual_memory().available / 1e6),
                }
                point["others_cpu_percent"] = round(max(0.0, point["machine_busy_percent"]
                                                        - point["harness_cpu_percent"]
                                                        - point["gateways_cpu_percent"]), 1)
                point["ran_out"] = ran_out(point)
                out["steps"].append(point)
                log(f"    {point}")
                if not ready:
                    break  # more guests would only say the same louder
        except Exception as exc:
            log(f"(e) chatty load failed: {exc}")
            out["error"] = str(exc)
        finally:
            h.stop()
    try:
        out["report_harness"] = json.loads(report.read_bytes()).get("harness")
    except (OSError, ValueError):
        out["report_harness"] = None
    return out


def ran_out(p: dict[str, Any]) -> list[str]:
    """Which resources were at their limit during a step, with the figures that say so."""
    cores = os.cpu_count() or 1
    why = []
    if p["harness_cpu_percent"] >= TARGETS["load_cpu_percent"]:
        why.append(f"harness CPU ({p['harness_cpu_percent']:.0f} % of a core)")
    if p["machine_busy_percent"] >= 95 * cores:
        why.append(f"the machine's {cores} cores ({p['machine_busy_percent']:.0f} % busy: harness "
                   f"{p['harness_cpu_percent']:.0f} %, gateways {p['gateways_cpu_percent']:.0f} %, "
                   f"other work {p['others_cpu_percent']:.0f} %)")
    elif p["gateways_cpu_percent"] >= 90 * (cores - 1):
        why.append(f"gateway CPU ({p['gateways_cpu_percent']:.0f} %)")
    if p["fds"] >= 19_500:
        why.append(f"descriptors ({p['fds']:,} of 20,000)")
    if p["mem_available_mb"] < 1000:
        why.append(f"memory ({p['mem_available_mb']} MB available)")
    if p["lag_p99_ms"] is not None and p["lag_p99_ms"] > TARGETS["load_lag_p99_ms"]:
        why.append(f"harness scheduling (lag p99 {p['lag_p99_ms']:.0f} ms)")
    return why


# -- table --------------------------------------------------------------------------------


def ratio(a: Any, b: Any) -> float | None:
    try:
        return round(float(a) / float(b), 2)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def get(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def versus(doc: dict[str, Any], key: str, others: Iterable[str], fmt: Callable[[Any], str]) -> str:
    """``loadkit:<other> <ratio>`` for each other harness, two spaces apart: loadkit's ``key`` over theirs."""
    return "  ".join(f"loadkit:{o} {fmt(ratio(get(doc, 'loadkit', key), get(doc, o, key)))}" for o in others)


def floor_split(chat: dict[str, Any]) -> str | None:
    """(c)'s round trip split into loadkit's transport (the floor harness) and the session's work on top."""
    whole, floor = get(chat, "loadkit", "cpu_us_each"), get(chat, "floor", "cpu_us_each")
    raw = get(chat, "raw", "cpu_us_each")
    if not (whole and floor and raw):
        return None
    return (f"  of loadkit's {whole:.0f} µs a round trip, the transport under Locust (floor) is {floor:.0f} and "
            f"the session's work {whole - floor:.0f} ({100 * (whole - floor) / whole:.0f} %); "
            f"floor:raw per CPU-s {raw / floor:.2f} (the most this transport could reach); "
            f"1.5x raw leaves the session {raw / 1.5 - floor:.0f} µs")


#: Why a target can be missed, from profiling (py-spy, perf, tracemalloc; see docs/capacity.md).
WHY = {
    "idle_kb_per_guest": (
        "a bare Locust user costs ~9.9 KB (its greenlet, saved C stack and frame-stack page); a session adds "
        "~2.3 KB (2026-12-01): the token grant, the driver, Lifecycle, the WebSocket, socket and watchers, "
        "and ~1 KB of free blocks between them (fragmentation); bench/idle_memory.py splits it by allocator. "
        "Spawning faster than the gateways complete sessions adds fragmentation (keep idle_rate near ~500/s)"),
    "chat_vs_threaded": (
        "the recipe's cost varies with how its threads happen to batch, so the ratio moves by about 10 % "
        "between runs"),
    "chat_cpu_vs_raw": (
        "same floor as raw asyncio (the kernel's loopback send, recv and epoll: ~16 us a round trip for "
        "both); above it, Python (see chat_vs_raw)"),
    "chat_vs_raw": (
        "the floor harness (bench/transport_floor_locustfile.py: loadkit's transport under Locust with a "
        "paced send-and-await-ack loop and nothing else) is the most a harness on this transport can reach; "
        "the session's own work per round trip (pacing, the pending tables, classification, the latency and "
        "lag histograms, Locust's statistics, keepalive) comes on top of it (1.56-1.8x raw and 23-31 us in "
        "the runs of 2026-12-01/02; this run's split follows). perf, 2026-12-01: both harnesses pay ~16 us a "
        "round trip in the kernel; no single item of the session's work is over ~3 us (docs/capacity.md)"),
    "churn_vs_threaded": (
        "a session is mostly kernel work (TCP connects, token HTTP call, close handshake); the recipe pays "
        "3 descriptors and 2 extra greenlets per connection"),
    "idle_guests": "file descriptors: one per guest plus ~20; the 20,000 limit caps one process near 19,900",
}


def verdicts(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Targets: met or missed, by how much."""
    rows = []
    idle, churn, chat = res.get("idle", {}), res.get("churn", {}), res.get("chat", {})

    def row(name: str, value: Any, target: Any, ok: bool | None, detail: str, key: str = "") -> None:
        rows.append({"target": name, "value": value, "goal": target, "met": ok, "detail": detail,
                     "why": None if ok else WHY.get(key)})

    held = get(idle, "loadkit", "held")
    if held is not None:
        goal = TARGETS["idle_guests"]
        top = (get(idle, "loadkit", "points") or [{}])[-1].get("guests")
        row("authenticated idle guests in one process", held, f">= {goal}" if top >= goal else f"= {top} (quick mode)",
            held >= min(goal, top) and bool(get(idle, "loadkit", "all_authenticated")),
            f"harness and gateway both count {held} open authenticated sessions"
            if get(idle, "loadkit", "all_authenticated") else "not every guest was authenticated", "idle_guests")
    kb = get(idle, "loadkit", "kb_per_guest")
    if kb is not None:
        goal = TARGETS["idle_kb_per_guest"]
        bare = get(idle, "bare", "kb_per_guest")
        quick = res.get("mode") == "quick"
        row("RSS per idle guest (KB, slope)", kb, f"<= {goal}" + (" (full mode)" if quick else ""), kb <= goal,
            f"{kb - goal:+.1f} KB vs the goal; a bare Locust user costs {bare} KB here"
            + ("; quick mode's small counts and fast spawn read 1-2 KB high" if quick else ""), "idle_kb_per_guest")
    for key, phase, label in (("churn_vs_threaded", churn, "churn sessions per harness CPU-s vs threaded recipe"),
                              ("chat_vs_threaded", chat, "round trips per harness CPU-s vs threaded recipe")):
        r = ratio(get(phase, "loadkit", "per_cpu_s"), get(phase, "threaded", "per_cpu_s"))
        if r is not None:
            goal = TARGETS[key]
            row(label, r, f">= {goal}", r >= goal,
                "met" if r >= goal else f"short by {goal - r:.2f}x ({100 * (goal - r) / goal:.0f} %)", key)
    r = ratio(get(chat, "loadkit", "per_cpu_s"), get(chat, "raw", "per_cpu_s"))
    if r is not None:
        goal = TARGETS["chat_vs_raw"]
        row("round trips per harness CPU-s vs raw asyncio", r, f">= {goal}", r >= goal,
            "met" if r >= goal else f"short by {goal - r:.2f}x ({100 * (goal - r) / goal:.0f} %)", "chat_vs_raw")
        split = floor_split(chat)
        if split and rows[-1]["why"]:
            rows[-1]["why"] += ". Measured in this run: " + split.strip()
    r = ratio(get(chat, "loadkit", "cpu_us_each"), get(chat, "raw", "cpu_us_each"))
    if r is not None:
        goal = TARGETS["chat_cpu_vs_raw"]
        row("harness CPU per round trip vs raw asyncio", r, f"<= {goal}", r <= goal,
            "met" if r <= goal else f"over by {r - goal:.2f}x ({100 * (r - goal) / goal:.0f} %)", "chat_cpu_vs_raw")
    steps = get(res, "load", "steps") or []
    if steps:
        goal = TARGETS["load_guests"]
        top = steps[-1]
        held = [p for p in steps if p["reached"] and p["gateway_open"] >= p["guests"]]
        good = [p for p in held if p["harness_cpu_percent"] < TARGETS["load_cpu_percent"]
                and (p["lag_p99_ms"] or 0) <= TARGETS["load_lag_p99_ms"]]
        best = good[-1]["guests"] if good else 0
        quick = res.get("mode") == "quick"
        want = top["guests"] if quick else goal
        detail = (f"at {top['guests']:,} guests: {top['harness_open_authenticated']:,} held authenticated, "
                  f"harness CPU {top['harness_cpu_percent']:.0f} % of a core, lag p99 {top['lag_p99_ms']} ms, "
                  f"{top['messages_per_s']:,.0f} messages/s and {top['replies_per_s']:,.0f} agent replies/s, "
                  f"gateways {top['gateways_cpu_percent']:.0f} %, machine {top['machine_busy_percent']:.0f} % busy")
        rows.append({"target": f"chatty guests at default timings in one process, harness < "
                               f"{TARGETS['load_cpu_percent']:.0f} % of a core, lag p99 <= "
                               f"{TARGETS['load_lag_p99_ms']:.0f} ms",
                     "value": best, "goal": f">= {want}" + (" (quick mode)" if quick else ""),
                     "met": best >= want, "detail": detail,
                     "why": None if best >= want else ("ran out: " + "; ".join(top["ran_out"]) if top["ran_out"]
                                                       else "no resource at its limit: see the steps")})
    return rows


def render(res: dict[str, Any]) -> str:
    lines: list[str] = []
    cols = ("loadkit", "threaded", "raw", "bare")

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    def table(title: str, rows: list[tuple[str, list[Any]]], heads: tuple[str, ...]) -> None:
        lines.append("")
        lines.append(title)
        w0 = max(len(r[0]) for r in rows) if rows else 10
        lines.append("  " + " " * w0 + "".join(f" {h:>15}" for h in heads))
        for label, values in rows:  # a space before every cell: a long one must not run into the last
            lines.append("  " + label.ljust(w0) + "".join(f" {fmt(v):>15}" for v in values))

    idle = res.get("idle")
    if idle:
        rows = []
        cols = ("loadkit", "threaded", "raw", "bare", *(p for p in peers_order() if p in idle))

        def r(label: str, key: str, idx: int | None = None) -> None:
            vals = []
            for c in cols:
                pts = get(idle, c, "points")
                v = (pts[idx].get(key) if idx is not None and pts else get(idle, c, key))
                vals.append(v)
            rows.append((label, vals))
        r("guests at low count", "guests", 0)
        r("guests at top count", "guests", 1)
        r("  held authenticated (both sides)", "held")
        r("  gateway sessions.open", "gateway_open", 1)
        r("  harness authenticated", "harness_authenticated", 1)
        r("  pings answered", "pings", 1)
        r("RSS per guest, KB (slope; = MB/1000)", "kb_per_guest")
        r("RSS at top count, MB", "rss_top_mb")
        r("spawn peak RSS (VmHWM), MB", "spawn_peak_mb")
        r("CPU % of a core per 1000 (slope)", "cpu_percent_per_1000")
        r("fds per 1000 guests", "fds_per_1000")
        r("spawn time to top count, s", "spawn_s", 1)
        table("(a) idle capacity, one harness process", rows, cols)
        lines.append("  ratio RSS/guest " + versus(idle, "kb_per_guest", ("threaded", "raw", "bare", *cols[4:]), fmt))
    for key, title, unit in (("churn", "(b) churn: token → connect → auth → close", "sessions"),
                             ("chat", "(c) throughput: message → ack round trips", "round trips")):
        ph = res.get(key)
        if not ph:
            continue
        c3 = ("loadkit", "threaded", "raw", *(p for p in ("floor", *peers_order()) if p in ph))
        rows = [
            (f"{unit} per harness CPU-s", [get(ph, c, "per_cpu_s") for c in c3]),
            (f"{unit} per s", [get(ph, c, "per_s") for c in c3]),
            ("harness CPU %", [get(ph, c, "cpu_percent") for c in c3]),
            ("harness CPU µs each", [get(ph, c, "cpu_us_each") for c in c3]),
            ("  of it in the kernel, %", [get(ph, c, "kernel_percent") for c in c3]),
            ("gateways' CPU % meanwhile", [get(ph, c, "gateway_cpu_percent") for c in c3]),
            ("per CPU-s, each round", ["/".join(f"{x:.0f}" for x in (get(ph, c, "per_cpu_s_rounds") or []))
                                       or None for c in c3]),
            ("failures in windows", [get(ph, c, "failures") for c in c3]),
        ]
        table(title, rows, c3)
        lines.append(f"  ratio per CPU-s {versus(ph, 'per_cpu_s', ('threaded', 'raw'), fmt)}"
                     f"  (CPU per op {versus(ph, 'cpu_us_each', ('raw',), fmt)})"
                     + "".join(f"  {versus(ph, 'per_cpu_s', (p,), fmt)}" for p in c3[3:]))
        floor_line = floor_split(ph)
        if floor_line:
            lines.append(floor_line)
    acc = res.get("accuracy")
    if acc:
        c3 = ("loadkit", "threaded", "raw", *(p for p in peers_order() if p in acc))
        rows = [
            ("auth samples", [get(acc, c, "count") for c in c3]),
            ("auth p50, ms", [get(acc, c, "p50_ms") for c in c3]),
            ("auth p99, ms", [get(acc, c, "p99_ms") for c in c3]),
            ("p50 error, ms", [get(acc, c, "p50_error_ms") for c in c3]),
            ("p99 error, ms", [get(acc, c, "p99_error_ms") for c in c3]),
        ]
        if "tsung" in c3:
            rows.append(("mean error, ms (Tsung logs means only)", [get(acc, c, "mean_error_ms") for c in c3]))
        table(f"(d) accuracy: auth latency vs {res['config']['auth_delay_ms']:g} ms injected at the gateway", rows, c3)
    load = res.get("load")
    if load and load.get("steps"):
        st = load["steps"]
        heads = tuple(f"{p['guests']:,} guests" for p in st)
        keys = [("held authenticated (harness)", "harness_open_authenticated"),
                ("gateway sessions.open", "gateway_open"),
                ("spawn time, s", "spawn_s"), ("harness CPU % of a core", "harness_cpu_percent"),
                ("generator lag p50 / p99 / max, ms", None), ("messages sent per s", "messages_per_s"),
                ("agent replies per s", "replies_per_s"), ("pings per s", "pings_per_s"),
                ("gateways' CPU %", "gateways_cpu_percent"), ("machine busy, % of one core", "machine_busy_percent"),
                ("  of which other work", "others_cpu_percent"), ("harness RSS, MB", "rss_mb"),
                ("harness descriptors", "fds"), ("failures in the window", "failures")]
        rows = []
        for label, key in keys:
            if key is None:
                lags = [f"{fmt(p['lag_p50_ms'])}/{fmt(p['lag_p99_ms'])}/{fmt(p['lag_max_ms'])}" for p in st]
                rows.append((label, lags))
            else:
                rows.append((label, [p.get(key) for p in st]))
        table(f"(e) chatty load: loadkit's default timings (a message every 2-5 s, agent replies, keepalive 20 s), "
              f"one harness process, {load['gateways']} gateway processes", rows, heads)
        for p in st:
            if p["ran_out"]:
                lines.append(f"  at {p['guests']:,}: ran out of " + "; ".join(p["ran_out"]))
    v = res.get("targets")
    if v:
        lines.append("")
        lines.append("targets")
        for t in v:
            mark = "MET   " if t["met"] else "MISSED"
            lines.append(f"  {mark} {t['target']}: {fmt(t['value'])} (goal {t['goal']}) — {t['detail']}")
            if t.get("why"):
                lines.append(f"         why: {t['why']}")
    for note in res.get("notes", []):
        lines.append(f"  note: {note}")
    for name, why in (res.get("peers_missing") or {}).items():
        lines.append(f"  note: {name} not run: {why}")
    return "\n".join(lines)


def peers_order() -> tuple[str, ...]:
    return ("artillery", "tsung")


NOTES = [
    "Artillery and Tsung (when run) are counted by the gateways (sessions closed, acks sent) over the same "
    "window as their process tree's CPU; they churn open-loop (new guests at peer_churn_rate a second) where "
    "the Locust harnesses and raw asyncio loop 50 users; each peer window is a fresh run (startup excluded)",
    "ratios compare harnesses measured minutes apart on a shared 2-core machine: trust them to ~10 %",
    "(b) and (c) interleave the harnesses round by round; per-CPU-s figures are pooled over the rounds",
    "(c) paces every harness alike (one message per guest every chat_interval s): closed-loop runs "
    "batch more work per wake-up and flatter whichever harness keeps the gateway busiest",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="loadkit capacity bench (see docs/capacity.md)")
    ap.add_argument("--quick", action="store_true", help="small counts and short windows (under 2 minutes)")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON here")
    ap.add_argument("--peers", default="artillery,tsung",
                    help="contenders to add when they can run: artillery (npm), tsung (Debian); '' for none")
    ap.add_argument("--no-install", action="store_true", help="do not install missing peers (npm, apt-get)")
    ap.add_argument("--only", default="idle,churn,chat,accuracy,load",
                    help="comma-separated phases to run (idle, churn, chat, accuracy, load)")
    ap.add_argument("--idle-harnesses", default="bare,loadkit,threaded,raw",
                    help="harnesses of phase (a), e.g. bare,loadkit for the memory goal alone")
    args = ap.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    cfg["idle_harnesses"] = tuple(k.strip() for k in args.idle_harnesses.split(",") if k.strip())
    if set(cfg["idle_harnesses"]) - {"bare", "loadkit", "threaded", "raw"}:
        ap.error("--idle-harnesses: choose among bare, loadkit, threaded, raw")
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(phases) - {"idle", "churn", "chat", "accuracy", "load"}
    if unknown:
        ap.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    started = time.monotonic()
    missing: dict[str, str] = {}
    for name in [p.strip() for p in args.peers.split(",") if p.strip()]:
        if name not in peers_order():
            ap.error(f"--peers: unknown peer {name!r} (artillery, tsung)")
        why = peers.ensure(name, install=not args.no_install)
        if why:
            log(f"{name}: not run: {why}")
            missing[name] = why
        else:
            PEERS.append(name)
    res: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "fd_limit": __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)},
        "config": {k: v for k, v in cfg.items()},
    }
    try:
        import locust
        import websockets
        res["versions"] = {"locust": locust.__version__, "websockets": websockets.__version__}
    except Exception:
        pass
    with tempfile.TemporaryDirectory(prefix="loadkit-bench-") as tmp:
        workdir = Path(tmp)
        runners = {"idle": idle_phase, "churn": churn_phase, "chat": chat_phase, "accuracy": accuracy_phase,
                   "load": load_phase}
        for phase in ("idle", "churn", "chat", "accuracy", "load"):
            if phase in phases:
                t0 = time.monotonic()
                res[phase] = runners[phase](cfg, workdir)
                res[phase]["seconds"] = round(time.monotonic() - t0, 1)
                log(f"{phase} done in {res[phase]['seconds']} s")
        if os.environ.get("BENCH_KEEP_LOGS"):
            keep = Path(os.environ["BENCH_KEEP_LOGS"])
            keep.mkdir(parents=True, exist_ok=True)
            try:  # the peers' runs are directories
                shutil.copytree(workdir, keep, dirs_exist_ok=True)
            except OSError as exc:  # the figures matter more than the logs
                log(f"could not keep the logs in {keep}: {exc}")
    res["peers"] = list(PEERS)
    res["peers_missing"] = missing
    res["targets"] = verdicts(res)
    res["notes"] = NOTES
    res["seconds"] = round(time.monotonic() - started, 1)
    text = render(res)
    print(text)
    print(f"\n(bench took {res['seconds']} s; {res['mode']} mode)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
