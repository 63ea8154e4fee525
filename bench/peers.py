"""The tools users would pick instead, as contenders in ``bench/run.py``: Artillery and Tsung.

Both do the same guest work as loadkit and the baselines (token call, then a
WebSocket, auth, and then idle pings, churn or paced messages), with the
configurations in ``bench/peers/``:

- **Artillery** (npm ``artillery``, its ``ws`` engine): ``artillery.yml``
  and a small processor, ``artillery_processor.js``, for the token call and
  the auth / ping / message round trips (Artillery's ``ws`` engine cannot
  make an HTTP call or wait for a particular answer by itself);
- **Tsung** (Debian ``tsung``, its ``ts_websocket`` support):
  ``tsung.xml`` and ``tsung_session.xml``, filled in here; the token call is
  a ``ts_http`` request whose answer fills ``guestId`` and ``token``.

Neither can be steered while it runs the way the bench steers Locust (a file
with the user count), so each measurement starts the peer for its window
and stops it after. What a peer did is counted by the gateways
(``/_gateway/stats``: acks sent, sessions closed, sessions open), which only
that peer talks to during its turn; CPU and RSS are those of the peer's
whole process tree (Artillery's node workers, Tsung's Erlang VM), measured
over the same window. Auth latency is the peer's own figure (Artillery's
histogram from the processor; Tsung's ``auth`` transaction, whose log gives
a mean only, no percentiles).

Installed on demand (``ensure``: ``npm install`` into a cache directory,
``apt-get install tsung``); without them the bench runs and says so.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
ARTILLERY_VERSION = "2.0.34"
ARTILLERY_HOME = Path(os.environ.get("BENCH_ARTILLERY_HOME", Path.home() / ".cache" / "loadkit-bench" / "artillery"))


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True, file=__import__("sys").stderr)


# -- installing on demand -------------------------------------------------------------


def artillery_bin() -> Path:
    return ARTILLERY_HOME / "node_modules" / ".bin" / "artillery"


def ensure(name: str, install: bool) -> str | None:
    """None when ``name`` can run; else why not (after trying to install it when ``install``)."""
    if name == "artillery":
        if artillery_bin().exists():
            return None
        if not shutil.which("npm"):
            return "npm not found (install Node.js and npm)"
        if not install:
            return f"not installed (npm install artillery@{ARTILLERY_VERSION} into {ARTILLERY_HOME})"
        log(f"installing artillery {ARTILLERY_VERSION} with npm into {ARTILLERY_HOME} (a few minutes)")
        ARTILLERY_HOME.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")  # its browser engine is not used here
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                               f"artillery@{ARTILLERY_VERSION}"], cwd=ARTILLERY_HOME, env=env,
                              capture_output=True, text=True, timeout=900, check=False)
        if done.returncode or not artillery_bin().exists():
            return f"npm install artillery failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}"
        return None
    if name == "tsung":
        if shutil.which("tsung"):
            return None
        if not install:
            return "not installed (apt-get install tsung)"
        if not shutil.which("apt-get"):
            return "tsung not installed and no apt-get here"
        log("installing tsung with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        done = subprocess.run(["apt-get", "install", "-y", "-qq", "tsung"], env=env, capture_output=True,
                              text=True, timeout=900, check=False)
        if done.returncode or not shutil.which("tsung"):
            return f"apt-get install tsung failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}"
        return None
    raise ValueError(name)


# -- one run of a peer --------------------------------------------------------------------


class PeerRun:
    """A peer process (and its children) doing ``mode`` with ``users`` guests against ``hosts``."""

    def __init__(self, name: str, mode: str, hosts: list[str], users: int, rate: float, workdir: Path,
                 cfg: dict[str, Any], duration_s: float) -> None:
        self.name = name
        self.workdir = workdir / f"{name}-{mode}-{users}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "out.log"
        argv, env = (self._artillery if name == "artillery" else self._tsung)(mode, hosts, users, rate, cfg,
                                                                                duration_s)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.epmd_before = {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "epmd"}
        self.proc = subprocess.Popen(argv, cwd=self.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)

    # Artillery: users arrive over users/rate seconds; each runs the mode's scenario (bounded loops)
    def _artillery(self, mode: str, hosts: list[str], users: int, rate: float, cfg: dict[str, Any],
                   duration_s: float) -> tuple[list[str], dict[str, str]]:
        self.report = self.workdir / "report.json"
        env = dict(os.environ, BENCH_MODE=mode, BENCH_HOSTS=",".join(hosts),
                   BENCH_KEEPALIVE_S=str(cfg["keepalive_s"]), BENCH_CHAT_INTERVAL=cfg.get("chat_interval", "0"),
                   BENCH_USERS=str(users), BENCH_ARRIVAL_S=str(max(1, round(users / rate))),
                   BENCH_DURATION_S=str(int(duration_s)), ARTILLERY_DISABLE_TELEMETRY="true",
                   DO_NOT_TRACK="1")
        if mode == "churn":  # arrivals at `rate` for the whole run, each guest one session
            phases = f"    - duration: {int(duration_s)}\n      arrivalRate: {int(rate)}"
        else:  # `users` guests arrive over users/rate seconds and stay
            phases = f"    - duration: {max(1, round(users / rate))}\n      arrivalCount: {users}"
        conf = (PEERS / "artillery.yml").read_text().format(processor=PEERS / "artillery_processor.js",
                                                            phases=phases)
        path = self.workdir / "artillery.yml"
        path.write_text(conf)
        return [str(artillery_bin()), "run", "--quiet", "--output", str(self.report), str(path)], env

    # Tsung: one session per gateway, users arrive at `rate` per second
    def _tsung(self, mode: str, hosts: list[str], users: int, rate: float, cfg: dict[str, Any],
               duration_s: float) -> tuple[list[str], dict[str, str]]:
        body = tsung_body(mode, cfg)
        template = (PEERS / "tsung_session.xml").read_text()
        template = template[template.index("-->") + 3:]  # drop the comment
        sessions, servers = [], []
        for i, url in enumerate(hosts):
            u = urlsplit(url)
            servers.append(f'    <server host="{u.hostname}" port="{u.port}" type="tcp"/>')
            sessions.append(template.format(name=f"guest{i}", probability=_share(i, len(hosts)), host=u.hostname,
                                            port=u.port, guest_body=body))
        # each session switches to its own gateway first: the token and the WebSocket go to the same one
        conf = (PEERS / "tsung.xml").read_text()
        conf = conf[:conf.index("<!--")] + conf[conf.index("-->") + 3:]
        text = conf.format(dump="true" if os.environ.get("BENCH_TSUNG_DUMP") else "false",
                           maxusers=max(users, 100) * 2, servers="\n".join(servers),
                           duration=int(duration_s), arrival_s=int(users / rate) + 2 if mode != "churn"
                           else int(duration_s), users=users if mode != "churn" else 10**7,
                           rate=rate, sessions="\n".join(sessions))
        path = self.workdir / "tsung.xml"
        path.write_text(text)
        self.logdir = self.workdir / "log"
        self.logdir.mkdir(exist_ok=True)
        return ["tsung", "-f", str(path), "-l", str(self.logdir), "-n", "start"], dict(os.environ)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu(self) -> float:
        total = 0.0
        for p in self.tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def cpu_system(self) -> float:
        total = 0.0
        for p in self.tree():
            try:
                total += p.cpu_times().system
            except psutil.Error:
                pass
        return total

    def rss(self) -> int:
        total = 0
        for p in self.tree():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def stop(self, timeout: float = 15) -> None:
        """SIGINT to its process group, then SIGKILL: the peer's own processes, by PID."""
        pids = [p.pid for p in self.tree()]
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        for pid in pids:  # children that left the group
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        # Tsung's Erlang starts epmd (the port mapper) if none ran: stop the one it started
        for p in psutil.process_iter(["name"]):
            if p.info["name"] == "epmd" and p.pid not in self.epmd_before:
                try:
                    p.kill()
                except psutil.Error:
                    pass
        self._log.close()

    def auth_latency(self) -> dict[str, Any]:
        """The peer's own auth figures, ms: Artillery p50/p99; Tsung the mean (all its log gives)."""
        if self.name == "artillery":
            try:
                import json
                data = json.loads(self.report.read_bytes())
                h = data["aggregate"]["summaries"]["guest.auth"]
                return {"count": h["count"], "p50_ms": h["p50"], "p99_ms": h["p99"]}
            except (OSError, ValueError, KeyError):
                return {}
        found = list(self.logdir.glob("*/tsung.log"))
        if not found:
            return {}
        count, total = 0, 0.0
        for line in found[0].read_text(errors="replace").splitlines():
            m = re.match(r"stats: tr_auth (\d+) ([\d.]+)", line)
            if m and int(m.group(1)):
                n, mean = int(m.group(1)), float(m.group(2))
                count += n
                total += n * mean
        return {"count": count, "mean_ms": round(total / count, 2) if count else None}


def _share(i: int, n: int) -> int:
    """Tsung wants integer session probabilities that add up to 100."""
    base = 100 // n
    return base + (100 - base * n if i == 0 else 0)


def tsung_body(mode: str, cfg: dict[str, Any]) -> str:
    if mode == "idle":
        return (f'      <for from="1" to="100000" var="i">\n'
                f'        <thinktime value="{cfg["keepalive_s"]:g}"/>\n'
                '        <request subst="true"><websocket type="message" frame="text">'
                '{"type":"ping","id":"p-%%_i%%"}</websocket></request>\n'
                '      </for>')
    if mode == "churn":
        return '      <request><websocket type="close"></websocket></request>'
    if mode == "chat":
        # Tsung's min/max think times are whole seconds: the interval's midpoint, fixed
        lo, _, hi = cfg["chat_interval"].partition("-")
        mid = (float(lo) + float(hi or lo)) / 2
        return ('      <for from="1" to="10000000" var="i">\n'
                '        <request subst="true"><websocket type="message" frame="text">'
                '{"type":"message","id":"c-%%_i%%","text":"hello from tsung"}</websocket></request>\n'
                f'        <thinktime value="{mid:g}" random="false"/>\n'
                '      </for>')
    raise ValueError(mode)
