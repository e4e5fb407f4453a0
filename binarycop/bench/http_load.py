"""``binarycop bench http``: what reading the HTTP endpoints costs the cameras.

N looping MJPEG cameras (the demo clip) on loopback are read by the whole server; phases of ``seconds`` alternate
without and with load (``clients`` clients fetching ``/metrics`` and ``/api/status`` back to back, plus ``slow``
clients sending their request headers a byte at a time), from another process so the clients' own work is not the
server's. Reported per phase: frames processed and dropped per second, requests served and their latency; and the
share of the frames the load cost.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time

from binarycop.bench.pipeline import loopback_cameras, processed_frames, running_server
from binarycop.config import DetectorConfig
from binarycop.loopback_camera import clip_jpegs

SLOW_BYTE_SECONDS = 2.0  # one header byte this often: a slowloris client


def _load(port: int, clients: int, slow: int, seconds: float, results) -> None:
    """In a child process: the load for ``seconds``; puts (requests, errors, sorted latencies) on ``results``."""
    asyncio.run(_load_async(port, clients, slow, seconds, results))


async def _load_async(port: int, clients: int, slow: int, seconds: float, results) -> None:
    import aiohttp

    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    errors = 0

    async def client(session, path: str) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                async with session.get(f"http://127.0.0.1:{port}{path}") as reply:
                    await reply.read()
                    errors += reply.status >= 500
            except (aiohttp.ClientError, OSError):
                errors += 1
            latencies.append(time.monotonic() - started)

    async def slow_client() -> None:
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n":
                    if time.monotonic() >= deadline:
                        break
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(SLOW_BYTE_SECONDS)
                writer.close()
            except OSError:
                await asyncio.sleep(SLOW_BYTE_SECONDS)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        paths = ["/metrics", "/api/status"]
        tasks = [client(session, paths[i % 2]) for i in range(clients)] + [slow_client() for _ in range(slow)]
        await asyncio.gather(*tasks)
    latencies.sort()
    results.put((len(latencies), errors, latencies))


async def _phase(server, loaded: bool, seconds: float, clients: int, slow: int) -> dict:
    from stats import read_counts

    await server.recorder.flush()
    before = await read_counts(server.client)
    started = time.monotonic()
    served = None
    if loaded:
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        child = context.Process(target=_load, args=(server.port, clients, slow, seconds, results), daemon=True)
        child.start()
        served = await asyncio.to_thread(results.get, True, seconds + 60)
        await asyncio.to_thread(child.join, 10)
    else:
        await asyncio.sleep(seconds)
    await server.recorder.flush()
    after = await read_counts(server.client)
    elapsed = time.monotonic() - started
    phase = {
        "load": loaded,
        "seconds": round(elapsed, 1),
        "processed_per_s": round(processed_frames(before, after) / elapsed, 2),
        "dropped": _dropped(before, after),
    }
    if served is not None:
        requests, errors, latencies = served
        phase.update(
            requests=requests,
            requests_per_s=round(requests / seconds, 1),
            errors=errors,
            p50_s=round(latencies[len(latencies) // 2], 3) if latencies else None,
            p95_s=round(latencies[int(len(latencies) * 0.95)], 3) if latencies else None,
        )
    print(f"bench http: {phase}", file=sys.stderr)
    return phase


def _dropped(before: dict, after: dict) -> int:
    frames, old = after.get("binarycop:frames", {}), before.get("binarycop:frames", {})
    return sum(int(value) - int(old.get(name, 0)) for name, value in frames.items() if name.endswith("|dropped"))


async def _bench(cameras: int, seconds: float, rounds: int, clients: int, slow: int) -> dict:
    streams, configs = loopback_cameras(cameras, clip_jpegs())
    phases = []
    try:
        async with running_server(configs, DetectorConfig()) as (server, _, _):
            for _ in range(rounds):
                for loaded in (False, True):
                    phases.append(await _phase(server, loaded, seconds, clients, slow))
    finally:
        for stream in streams:
            stream.stop()
    quiet = sum(p["processed_per_s"] for p in phases if not p["load"])
    loaded = sum(p["processed_per_s"] for p in phases if p["load"])
    return {
        "cameras": cameras,
        "clients": clients,
        "slow_clients": slow,
        "phases": phases,
        "frames_lost_to_load": round(1 - loaded / quiet, 3) if quiet else None,
    }


def bench_http(cameras: int = 4, seconds: float = 30, rounds: int = 2, clients: int = 50, slow: int = 50) -> dict:
    return asyncio.run(_bench(cameras, seconds, rounds, clients, slow))
