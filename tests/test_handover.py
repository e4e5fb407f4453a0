"""A camera's reader stops before its lease can expire (issue 19, double reading at handover). Real Redis."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import redis

from binarycop.config import CameraConfig, Config, HttpConfig, IngesterConfig, RedisConfig
from binarycop.democlip import CLIP
from binarycop.server import Server
from stats.schema import FRAMES_KEY, INGESTERS_KEY
from tests.conftest import wait_until


def _config(redis_url: str) -> Config:
    cameras = [CameraConfig(name="gate", url=str(CLIP), detect_fps=2, loop=True)]
    ingester = IngesterConfig(lease_seconds=3)
    return Config(redis=RedisConfig(url=redis_url), http=HttpConfig(port=0), ingester=ingester, cameras=cameras)


def test_a_camera_whose_lease_cannot_be_renewed_stops_before_it_can_expire(redis_server, caplog):
    """Another ingester is alive (its heartbeat in Redis); Redis stops answering (SIGSTOP), so this one cannot
    renew. Its camera stops before the lease it last renewed can expire, and runs again once Redis is back."""
    client = redis.Redis.from_url(redis_server.url)

    async def scenario():
        server = Server(_config(redis_server.url), redis_server.url)
        await server.start()
        frozen = False
        try:

            def other_alive_and_counting() -> bool:
                client.zadd(INGESTERS_KEY, {"other-ingester": time.time()})  # alive, with room for no camera
                return int(client.hget(FRAMES_KEY, "gate|processed") or 0) >= 2 and server.leases.others_alive == 1

            await wait_until(other_alive_and_counting, 60, "the camera counting beside another ingester")
            os.kill(redis_server.process.pid, signal.SIGSTOP)
            frozen = True
            await wait_until(lambda: "gate" not in server.camera_tasks, 20, "the camera to stop")
            lease_until = server._lease_until["gate"] + time.time() - time.monotonic()  # as unix time
            os.kill(redis_server.process.pid, signal.SIGCONT)
            frozen = False
            await wait_until(lambda: "gate" in server.camera_tasks, 30, "the camera to run again")
        finally:
            if frozen:
                os.kill(redis_server.process.pid, signal.SIGCONT)
            await server.stop()
        return lease_until

    with caplog.at_level(logging.WARNING):
        lease_until = asyncio.run(scenario())
    stopped = [record for record in caplog.records if "camera gate: lease not renewed in time" in record.message]
    assert stopped and stopped[0].created < lease_until  # before the lease it last renewed could expire


def test_an_ingester_alone_keeps_its_cameras_while_redis_is_away(redis_server):
    """No other ingester could take the camera over: it keeps counting through the outage (counts wait)."""
    client = redis.Redis.from_url(redis_server.url)

    async def scenario():
        server = Server(_config(redis_server.url), redis_server.url)
        await server.start()
        try:
            await wait_until(lambda: int(client.hget(FRAMES_KEY, "gate|processed") or 0) >= 2, 60, "first frames")
            os.kill(redis_server.process.pid, signal.SIGSTOP)
            try:
                pending = server.recorder.pending
                await asyncio.sleep(5)  # longer than the 3 s lease
                assert "gate" in server.camera_tasks and server.recorder.pending > pending
            finally:
                os.kill(redis_server.process.pid, signal.SIGCONT)
        finally:
            await server.stop()

    asyncio.run(scenario())
