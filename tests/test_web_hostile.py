"""Redis values and HTTP clients as an attacker would make them: what Redis holds is data (checked, escaped,
skipped when wrong, never a 500), and half-open connections are closed."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import redis
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from stats.schema import (
    CAMERA_SEEN_KEY,
    CAMERA_UP_KEY,
    FACES_KEY,
    FRAMES_KEY,
    PEOPLE_KEY,
    SITE_KEY,
    STAGES_KEY,
    VISIBLE_KEY,
)
from stats.status import SCRIPT
from stats.web import CountsWeb

XSS = "<img src=x onerror=alert(1)>"


def _store_good(client: redis.Redis) -> None:
    client.hset(FACES_KEY, mapping={"gate|all|correct": 5, "gate|all|no_mask": 1})
    client.hset(PEOPLE_KEY, mapping={"gate|all|correct": 2})
    client.hset(FRAMES_KEY, mapping={"gate|processed": 9})
    client.hset(CAMERA_UP_KEY, mapping={"gate": "1"})
    client.hset(CAMERA_SEEN_KEY, mapping={"gate": f"{time.time():.3f}"})


BAD_VALUES = {
    FACES_KEY: {
        "lobby|all|nose": "lots",
        "short|all": "3",
        "gate|all|correct|extra": "1",
        b"\xff\xfe|all|correct": "2",
    },
    PEOPLE_KEY: {"gate|all|sideways": "4", "gate|all|nose": "-3"},
    FRAMES_KEY: {"gate|exploded": "1", "gate": "1"},
    CAMERA_UP_KEY: {"hall": "yes"},
    CAMERA_SEEN_KEY: {"hall": "yesterday"},
    VISIBLE_KEY: {"gate|all|correct": "1.5"},
    STAGES_KEY: {"detect|count": "x"},
    SITE_KEY: {"gate": "hall a"},
}
BAD_COUNT = sum(len(fields) for fields in BAD_VALUES.values())


async def _serving(redis_url: str, idle_timeout: float = 20) -> CountsWeb:
    web = CountsWeb(aioredis.from_url(redis_url), "redis://test", idle_timeout=idle_timeout)
    await web.start("127.0.0.1", 0)
    return web


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


def _samples(text: str) -> dict[tuple, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_bad_values_in_redis_are_skipped_and_counted_the_rest_served(redis_server, caplog):
    client = redis.Redis.from_url(redis_server.url)
    _store_good(client)
    for key, fields in BAD_VALUES.items():
        client.hset(key, mapping=fields)

    async def scenario():
        web = await _serving(redis_server.url)
        base = f"http://127.0.0.1:{web.port}"
        try:
            async with aiohttp.ClientSession() as session:
                metrics_status, metrics = await _get(session, f"{base}/metrics")  # before: 500
                status_code, status = await _get(session, f"{base}/api/status")  # before: 500
        finally:
            await web.stop()
            await web.client.aclose()
        return metrics_status, metrics, status_code, json.loads(status)

    metrics_status, metrics, status_code, status = asyncio.run(scenario())
    assert (metrics_status, status_code) == (200, 200)
    samples = _samples(metrics)
    correct = (("camera", "gate"), ("mask_class", "correct"), ("zone", "all"))
    assert samples[("binarycop_faces_classified_total", correct)] == 5
    assert samples[("binarycop_people_total", correct)] == 2
    assert samples[("binarycop_frames_total", (("camera", "gate"), ("outcome", "processed")))] == 9
    assert samples[("binarycop_redis_bad_values_total", ())] == BAD_COUNT
    assert not any(labels and dict(labels).get("camera") in ("lobby", "short", "hall") for _, labels in samples)
    assert list(status["cameras"]) == ["gate"]
    gate = status["cameras"]["gate"]
    faces = gate["faces"]["classes"]
    assert gate["up"] is True and faces["correct"] == 5 and faces["no_mask"] == 1
    assert set(faces) == {"correct", "nose", "nose_mouth", "chin", "no_mask"}
    assert gate["frames"] == {"processed": 9, "dropped": 0, "failed": 0}
    assert (
        "Redis value skipped, not a binarycop count: binarycop:faces_classified field 'lobby|all|nose'" in caplog.text
    )
    assert caplog.text.count("field 'lobby|all|nose'") == 1  # once, not at every read


def test_html_in_names_from_redis_never_reaches_the_page(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    _store_good(client)
    client.hset(FACES_KEY, mapping={f"{XSS}|all|correct": 3, f"gate|{XSS}|correct": 1})
    client.hset(CAMERA_UP_KEY, mapping={XSS: "1"})
    client.hset(SITE_KEY, mapping={"gate": "<script>alert(1)</script>"})

    async def scenario():
        web = await _serving(redis_server.url)
        base = f"http://127.0.0.1:{web.port}"
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{base}/") as page:
                    headers, html = page.headers, await page.text()
                replies = [await _get(session, f"{base}{path}") for path in ("/api/status", "/metrics")]
        finally:
            await web.stop()
            await web.client.aclose()
        return headers, html, replies

    headers, html, replies = asyncio.run(scenario())
    for code, body in replies:
        assert code == 200
        assert "<img" not in body and "onerror" not in body and "<script" not in body  # before: raw in /api/status
    assert list(json.loads(replies[0][1])["cameras"]) == ["gate"]
    assert "innerHTML" not in html  # before: every row went through innerHTML
    assert SCRIPT in html and "script-src 'sha256-" in headers["Content-Security-Policy"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]


# The page's script writing names as text is tested in a real browser: tests/test_page.py.


def test_half_open_and_trickling_connections_are_closed(redis_server):
    async def scenario():
        web = await _serving(redis_server.url, idle_timeout=1)
        port = web.port
        try:
            silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(25)]
            trickling = [await asyncio.open_connection("127.0.0.1", port) for _ in range(25)]

            async def trickle(writer: asyncio.StreamWriter) -> None:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                for _ in range(100):  # a header byte every 0.2 s: never a whole request
                    await asyncio.sleep(0.2)
                    if writer.is_closing():
                        return
                    try:
                        writer.write(b"X")
                        await writer.drain()
                    except OSError:
                        return

            trickles = [asyncio.create_task(trickle(writer)) for _, writer in trickling]
            async with aiohttp.ClientSession() as session:
                assert await _get(session, f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
            # before: held open for an hour (aiohttp's default keep-alive time)
            closed = await asyncio.wait_for(
                asyncio.gather(*(reader.read() for reader, _ in silent + trickling), return_exceptions=True), 15
            )
            assert all(result == b"" or isinstance(result, OSError) for result in closed), closed[:3]
            for task in trickles:
                task.cancel()
            for _, writer in silent + trickling:
                writer.close()
        finally:
            await web.stop()
            await web.client.aclose()

    asyncio.run(scenario())


def test_status_command_shows_control_characters_from_redis_as_escapes(redis_server, capsys):
    """ESC codes and newlines stored in Redis must not reach the terminal; bad numbers must not crash it."""
    from binarycop.cli import main
    from stats.schema import INGESTERS_KEY, history_key, ingester_key

    client = redis.Redis.from_url(redis_server.url)
    evil = "ingester-1\x1b[2J\n2026-01-01 ERROR forged"
    client.zadd(INGESTERS_KEY, {evil: time.time(), "plain": float("inf")})
    client.hset(
        ingester_key(evil),
        mapping={
            "host": "h\x1b]0;owned\x07",
            "pid": "x",
            "started": "yesterday",
            "pending": "lots",
            "cameras": "a\x1b[31m",
        },
    )
    client.set("binarycop:lease:cam\x1b[5m", evil, ex=60)
    minute = int(time.time() // 60)
    client.hset(
        history_key(minute), mapping={"faces|gate|all|correct": "4", "faces|gate": "1", "people|gate|all|x": "y"}
    )

    code = main(["status", "--redis-url", redis_server.url])  # before: ValueError from int('x')
    output = capsys.readouterr().out
    assert code == 0
    assert "\x1b" not in output and "\x07" not in output
    assert "ingester-1\\x1b[2J\\n2026-01-01 ERROR forged" in output
    assert not any(line.startswith("2026-01-01") for line in output.splitlines())
    assert "gate  compliance - of 0 people (4 faces, each frame counted)" in output  # people, not face-frames

    assert main(["status", "--redis-url", redis_server.url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {item["id"]: item["pending"] for item in report["ingesters"]} == {evil: None, "plain": 0}
