"""Baseline 2: a raw asyncio ``websockets`` client, no Locust, no harness.

The lean reference for what a guest costs in Python: one task per guest on
``websockets.asyncio.client.connect`` (compression off, no protocol-level
pings: the guest protocol has its own), orjson, and a hand-written HTTP/1.1
POST for the token (the gateway closes each HTTP connection). It records
nothing but counters and auth latencies, so its CPU per round trip is close
to the floor for websockets on asyncio.

    python bench/raw_asyncio.py --mode idle|churn|chat --hosts URL[,URL...]
        [--keepalive S] [--max-seconds S]

The guest count follows ``$BENCH_CTL`` (``{"users": N, "rate": R}``;
``{"stop": true}`` ends the run) and counts go to ``$BENCH_STATUS`` four
times a second, as for the Locust harnesses; auth latencies (µs) go to
``$BENCH_SAMPLES`` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import time
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

counters = {"open": 0, "authenticated": 0, "ended": 0, "failed": 0}
counts: dict[str, int] = {"token": 0, "connect": 0, "auth": 0, "session": 0, "message": 0, "ping": 0}
auth_us: list[int] = []
_seq = itertools.count(1)
INTERVAL = (0.0, 0.0)  # think time between messages (chat), MIN-MAX seconds; 0: closed loop


async def token(host: str, port: int) -> dict:
    reader, writer = await asyncio.open_connection(host, port)
    body = orjson.dumps({"displayName": f"Load Guest {next(_seq)}"})
    writer.write(b"POST /api/v2/guests HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (host.encode(), port, len(body), body))
    raw = await reader.read()  # Connection: close
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 201"):
        raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
    counts["token"] += 1
    return orjson.loads(payload)


async def open_session(base: str):
    parts = urlsplit(base)
    grant = await token(parts.hostname, parts.port)
    ws = await connect(f"ws://{parts.netloc}/api/v2/guest/websocket", compression=None,
                       ping_interval=None, close_timeout=2)
    counts["connect"] += 1
    counters["open"] += 1
    t0 = time.perf_counter()
    await ws.send(orjson.dumps({"type": "auth", "guestId": grant["guestId"], "token": grant["token"]}).decode())
    async with asyncio.timeout(15):  # not wait_for: on 3.11 it can swallow a cancellation
        reply = orjson.loads(await ws.recv())
    if reply.get("type") != "auth_ok":
        await close_session(ws)
        raise RuntimeError(f"auth: {reply}")
    auth_us.append(int((time.perf_counter() - t0) * 1e6))
    counts["auth"] += 1
    counters["authenticated"] += 1
    return ws


async def close_session(ws) -> None:
    await ws.close()
    counters["open"] -= 1
    counters["ended"] += 1
    counts["session"] += 1


async def idle_guest(base: str, keepalive: float) -> None:
    ws = await open_session(base)
    ping = 0
    try:
        while True:
            try:
                async with asyncio.timeout(keepalive):
                    await ws.recv()
                continue
            except TimeoutError:
                pass
            ping += 1
            await ws.send(b'{"type":"ping","id":%d}' % ping, text=True)
            while True:
                frame = orjson.loads(await ws.recv())
                if frame.get("type") == "pong" and frame.get("id") == ping:
                    counts["ping"] += 1
                    break
    finally:
        await close_session(ws)


async def churn_guest(base: str, keepalive: float) -> None:
    while True:
        ws = await open_session(base)
        await close_session(ws)


async def chat_guest(base: str, keepalive: float) -> None:
    ws = await open_session(base)
    n = 0
    lo, hi = INTERVAL
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    try:
        while True:
            if hi > 0:  # paced: one message every uniform(lo, hi) seconds
                next_at += random.uniform(lo, hi)
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            n += 1
            ref = f"c-{n}"
            await ws.send(orjson.dumps({"type": "message", "id": ref, "text": "hello from raw asyncio"}).decode())
            while True:
                frame = orjson.loads(await ws.recv())
                if frame.get("type") == "ack" and frame.get("id") == ref:
                    counts["message"] += 1
                    break
    finally:
        await close_session(ws)


async def guarded(coro) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except (ConnectionClosed, OSError, RuntimeError, TimeoutError):
        counters["failed"] += 1


def write_status(path: str, users: int) -> None:
    status = {"t": time.time(), "pid": os.getpid(), "users": users,
              "counts": {k: [v, 0] for k, v in counts.items()}, **counters}
    with open(path + ".tmp", "wb") as fh:
        fh.write(orjson.dumps(status))
    os.replace(path + ".tmp", path)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("idle", "churn", "chat"), required=True)
    ap.add_argument("--hosts", required=True)
    ap.add_argument("--keepalive", type=float, default=20.0)
    ap.add_argument("--max-seconds", type=float, default=600.0)
    ap.add_argument("--interval", default="0", help="chat: seconds between messages, MIN-MAX (0: closed loop)")
    args = ap.parse_args()
    global INTERVAL
    lo, _, hi = args.interval.partition("-")
    INTERVAL = (float(lo), float(hi or lo))
    hosts = itertools.cycle(args.hosts.split(","))
    guest = {"idle": idle_guest, "churn": churn_guest, "chat": chat_guest}[args.mode]
    ctl, status = os.environ["BENCH_CTL"], os.environ["BENCH_STATUS"]
    tasks: list[asyncio.Task] = []
    stopped: set[asyncio.Task] = set()  # cancelled, maybe still closing
    started = time.monotonic()
    target, rate = 0, 1.0
    last_status = 0.0
    while time.monotonic() - started < args.max_seconds:
        try:
            with open(ctl, "rb") as fh:
                data = orjson.loads(fh.read())
        except (OSError, orjson.JSONDecodeError):
            data = {}
        if data.get("stop"):
            break
        if data:
            target, rate = int(data["users"]), float(data["rate"])
        # spawn (or stop) up to rate/10 guests per 0.1 s tick, like Locust's spawner
        step = max(1, int(rate / 10))
        for _ in range(min(step, target - len(tasks))):
            tasks.append(asyncio.create_task(guarded(guest(next(hosts), args.keepalive))))
        while len(tasks) > target:
            task = tasks.pop()
            task.cancel()
            stopped.add(task)
        stopped = {t for t in stopped if not t.done()}
        now = time.monotonic()
        if now - last_status >= 0.25:
            write_status(status, len(tasks))
            last_status = now
        await asyncio.sleep(0.1)
    remaining = set(tasks) | stopped
    for t in remaining:
        t.cancel()
    if remaining:
        await asyncio.wait(remaining, timeout=5)
    write_status(status, 0)
    samples = os.environ.get("BENCH_SAMPLES")
    if samples:
        with open(samples, "wb") as fh:
            fh.write(orjson.dumps({"auth_us": auth_us}))
    if any(not t.done() for t in remaining):
        os._exit(0)  # a guest that would not stop: don't let asyncio.run wait for it


if __name__ == "__main__":
    asyncio.run(main())
