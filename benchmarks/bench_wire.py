"""The wire API over HTTP: ``balances.check`` and ``balances.track`` through uvicorn on loopback,
next to a bare Starlette route returning a constant JSON body, served the same way in the same
run (the floor: what any Python ASGI endpoint on this machine costs).

Each server is its own process (uvicorn, one worker); the load comes from this process: C
keep-alive connections on raw asyncio streams (a client much cheaper than the server), for a
fixed time after a warm-up. Figures: requests/s and the p50 latency of a request.

    .venv/bin/python benchmarks/bench_wire.py [--seconds 5] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._harness import write  # noqa: E402

KEY = "am_sk_test_bench"
CATALOG = ROOT / "tests" / "wire" / "catalog.toml"


def bare_app() -> object:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    body = {"allowed": True, "customer_id": "c1", "balance": None, "flag": None}

    async def constant(request: object) -> JSONResponse:
        return JSONResponse(body)

    return Starlette(routes=[Route("/v1/balances.check", constant, methods=["POST"])])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(cmd: list[str], port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AUTUMN_SECRET_KEY": KEY, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"http://127.0.0.1:{port}/v1/balances.check", timeout=2)
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start: {cmd}")


def _request(path: str, body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def _connection(port: int, request: bytes, stop: float, lat: list[int]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    clock = time.perf_counter_ns
    while time.monotonic() < stop:
        t0 = clock()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode(errors="replace"))
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        lat.append(clock() - t0)
        done += 1
    writer.close()
    return done


async def _load(port: int, request: bytes, seconds: float, connections: int) -> dict[str, float]:
    warm: list[int] = []
    await asyncio.gather(
        *(_connection(port, request, time.monotonic() + 1.0, warm) for _ in range(connections))
    )
    lat: list[int] = []
    start = time.monotonic()
    counts = await asyncio.gather(
        *(_connection(port, request, start + seconds, lat) for _ in range(connections))
    )
    elapsed = time.monotonic() - start
    lat.sort()
    return {
        "req_per_s": round(sum(counts) / elapsed, 1),
        "p50_us": round(lat[len(lat) // 2] / 1000, 1),
        "p99_us": round(lat[int(len(lat) * 0.99)] / 1000, 1),
        "requests": sum(counts),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        import uvicorn

        uvicorn.run(
            bare_app(),
            host="127.0.0.1",
            port=args.serve_bare,
            log_level="warning",
            access_log=False,
        )  # type: ignore[arg-type]
        return

    figures: dict[str, object] = {
        "connections": args.connections,
        "seconds_per_window": args.seconds,
        "rounds": args.rounds,
    }
    tmp = tempfile.mkdtemp(prefix="bench_wire_")
    bare_port, wire_port, sqlite_port = _free_port(), _free_port(), _free_port()
    procs = [_start([sys.executable, __file__, "--serve-bare", str(bare_port)], bare_port)]
    cmd = [sys.executable, "-m", "autumn_wire", "--catalog", str(CATALOG)]
    rounds: dict[str, list[dict[str, float]]] = {}
    try:
        # memory:// runs each call on the event loop (no I/O to wait on); SQLite on the pool
        procs.append(_start([*cmd, "--db", "memory://", "--port", str(wire_port)], wire_port))
        sqlite_db = f"sqlite:///{tmp}/bench.db"
        procs.append(_start([*cmd, "--db", sqlite_db, "--port", str(sqlite_port)], sqlite_port))
        hdr = {"Authorization": f"Bearer {KEY}"}
        for port in (wire_port, sqlite_port):
            base = f"http://127.0.0.1:{port}/v1"
            httpx.post(f"{base}/customers.get_or_create", json={"customer_id": "c1"}, headers=hdr)
            # a large balance, so that tracking for the whole run never runs out
            httpx.post(
                f"{base}/balances.create",
                json={"customer_id": "c1", "feature_id": "messages", "included_grant": 10**12},
                headers=hdr,
            )
        body = {"customer_id": "c1", "feature_id": "messages"}
        check, track = (
            _request("/v1/balances.check", body),
            _request("/v1/balances.track", {**body, "value": 1}),
        )
        loads = {
            "floor_constant_json": (bare_port, check),
            "check": (wire_port, check),
            "track": (wire_port, track),
            "check_sqlite": (sqlite_port, check),
            "track_sqlite": (sqlite_port, track),
        }
        rounds = {name: [] for name in loads}
        # Windows interleaved round by round: the machine is shared, its load drifts.
        for _ in range(args.rounds):
            for name, (port, req) in loads.items():
                rounds[name].append(asyncio.run(_load(port, req, args.seconds, args.connections)))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    for name, runs in rounds.items():
        figures[name] = {
            "req_per_s": statistics.median(r["req_per_s"] for r in runs),
            "p50_us": statistics.median(r["p50_us"] for r in runs),
            "req_per_s_each_round": [r["req_per_s"] for r in runs],
        }
    for name in ("check", "track", "check_sqlite", "track_sqlite"):
        shares = [
            w["req_per_s"] / f["req_per_s"]
            for w, f in zip(rounds[name], rounds["floor_constant_json"], strict=True)
        ]
        figures[name]["share_of_floor"] = round(statistics.median(shares), 3)  # type: ignore[index]
    figures["stores"] = (
        "check/track: memory:// (calls on the loop); *_sqlite: a SQLite file (worker pool)"
    )
    figures["target"] = "check >= 50% of the constant-JSON route's requests/s"
    figures["met"] = figures["check"]["share_of_floor"] >= 0.5  # type: ignore[index]
    path = write("wire", figures)
    print(json.dumps(figures, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
