"""``binarycop bench soak``: resident memory of the serving processes over a long run, so a leak is a figure.

N HTTP MJPEG cameras (1280x720, the bench pipeline's crowd frames) on loopback are read by the whole server
with the given detector for ``minutes``; after a warm-up the resident memory (VmRSS) of the server process, of each
of its helper ingesters (``ingester.processes``) and of the embedded Redis is sampled every ``every`` seconds.
Reported: start (after warm-up), end, peak and growth per process, and the frames processed, so a growth can be
read against the work done.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from binarycop.bench.pipeline import crowd_frames, loopback_cameras, processed_frames, running_server
from binarycop.config import DetectorConfig, detector_name

WARM_UP_SECONDS = 60.0


def resident_mb(pid: int | str = "self") -> float:
    """Resident memory (VmRSS) of a process in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


async def _soak(cameras: int, minutes: float, every: float, warm_up: float, detector: DetectorConfig) -> dict:
    from stats import read_counts

    streams, configs = loopback_cameras(cameras, crowd_frames())
    samples: list[dict] = []
    try:
        async with running_server(configs, detector) as (server, embedded, helpers):
            helper_pids = {f"helper-{i}": pid for i, pid in enumerate(helpers.pids if helpers else [], start=1)}
            processes = {"server": "self", **helper_pids, "redis": embedded.pid}
            await asyncio.sleep(warm_up)
            started = time.monotonic()
            before = await read_counts(server.client)
            while True:
                elapsed = time.monotonic() - started
                memory = {name: resident_mb(pid) for name, pid in processes.items()}
                samples.append({"seconds": round(elapsed, 1), **memory})
                print(
                    f"soak: {elapsed / 60:.1f} min: " + ", ".join(f"{n} {samples[-1][n]:.1f} MB" for n in processes),
                    file=sys.stderr,
                )
                if elapsed >= minutes * 60:
                    break
                await asyncio.sleep(min(every, minutes * 60 - elapsed))
            await server.recorder.flush()
            after = await read_counts(server.client)
    finally:
        for stream in streams:
            stream.stop()
    figures = {}
    for name in processes:
        start, end = samples[0][name], samples[-1][name]
        figures[name] = {
            "start_mb": round(start, 1),
            "end_mb": round(end, 1),
            "peak_mb": round(max(sample[name] for sample in samples), 1),
            "growth": (end - start) / start if start else None,
        }
    return {
        "detector": detector_name(detector),
        "cameras": cameras,
        "minutes": minutes,
        "warm_up_seconds": warm_up,
        "frames_processed": processed_frames(before, after),
        "processes": figures,
        "samples": samples,
    }


def bench_soak(
    cameras: int = 4,
    minutes: float = 30,
    every: float = 60,
    warm_up: float = WARM_UP_SECONDS,
    detector: DetectorConfig | None = None,
) -> dict:
    return asyncio.run(_soak(cameras, minutes, every, warm_up, detector or DetectorConfig()))
