"""The command line's conventions, run as an operator runs it (real processes, a real Redis): help on every option,
logging options before or after the sub-command, JSON logs, OpenCV's own warnings kept out, busy ports named as
such, ``status`` and ``validate-config`` for scripts."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from binarycop.cli import _parser
from binarycop.democlip import CLIP
from stats import CountRecorder
from stats.schema import INGESTERS_KEY
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "binarycop.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def _options(parser: argparse.ArgumentParser, path: str = "binarycop"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                yield from _options(command, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, "/".join(action.option_strings) or action.dest, action.help


def test_every_option_of_every_command_has_help():
    missing = [f"{command} {option}" for command, option, text in _options(_parser()) if not text]
    assert not missing, missing


@pytest.mark.parametrize("argv", [["-q", "status"], ["status", "-q"], ["status", "--log-level", "error", "-q"]])
def test_logging_options_before_or_after_the_command(argv):
    result = _cli(*argv, env={"REDIS_URL": ""})
    assert "unrecognized arguments" not in result.stderr
    assert result.returncode == 2 and "status needs --redis-url" in result.stderr


def _exporter_log(*options: str) -> list[str]:
    """An exporter on an unreachable Redis, scraped once: it logs a warning; its stderr lines."""
    port = free_port()
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    args = [sys.executable, "-m", "binarycop.cli", "exporter", "--redis-url", dead_redis, "--port", str(port)]
    process = subprocess.Popen([*args, *options], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "the exporter did not start"
                time.sleep(0.1)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    return stderr.splitlines()


def test_json_logs_one_object_a_line_with_the_standard_fields():
    records = [json.loads(line) for line in _exporter_log("--log-format", "json") if line.startswith("{")]
    warning = next(record for record in records if record["level"] == "WARNING")
    assert warning["logger"] == "stats.web" and "(redis://127.0.0.1:" in warning["message"]
    assert "Redis unreachable" in warning["message"]
    assert warning["time"].endswith("Z") and set(warning) == {"time", "level", "logger", "message"}


def test_log_level_after_the_command_hides_warnings():
    lines = _exporter_log("--log-level", "error")
    assert not [line for line in lines if "WARNING" in line], lines


@pytest.mark.parametrize("options, shown", [((), False), (("--log-level", "debug"), True)])
def test_opencvs_own_warnings_kept_out_unless_debugging(options, shown, tmp_path):
    missing = tmp_path / "missing.png"
    result = _cli("scan", str(missing), *options)
    assert result.returncode == 2 and f"scan: {missing}: not a readable image" in result.stderr
    assert ("[ WARN:" in result.stderr) is shown, result.stderr[-2000:]


def test_a_busy_port_is_named_as_one_in_demo_and_serve(tmp_path, redis_server):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = _cli("demo", "--port", str(port))
        config = tmp_path / "c.yaml"
        config.write_text(
            f"redis: {{url: '{redis_server.url}'}}\nhttp: {{port: {port}}}\ncameras: [{{name: a, url: x.mp4}}]\n"
        )
        serve = _cli("serve", "--config", str(config))
    busy = f"cannot listen on 127.0.0.1:{port}: Address already in use"
    assert demo.returncode == 2 and demo.stderr.strip().endswith(f"demo: --bind, --port: {busy}"), demo.stderr
    assert serve.returncode == 2 and serve.stderr.strip().endswith(f"serve: http.bind, http.port: {busy}")
    assert "invalid config" not in demo.stderr + serve.stderr and "Traceback" not in demo.stderr + serve.stderr


def _two_ingesters(url: str) -> None:
    """Two ingesters' heartbeats in Redis; the second stopped 120 s ago without saying goodbye (killed)."""

    async def write():
        client = aioredis.from_url(url)
        for name, camera in (("live-1", "gate"), ("dead-1", "cafe")):
            recorder = CountRecorder(client, ingester=name)
            recorder.set_cameras([camera])
            recorder.set_build_info("0.1.0", "cpu", "n-cnv")
            assert await recorder.flush()
        await client.aclose()

    asyncio.run(write())
    redis.Redis.from_url(url).zadd(INGESTERS_KEY, {"dead-1": time.time() - 120})


def test_status_marks_dead_ingesters_and_lists_config_cameras_without_their_secrets(redis_server, tmp_path):
    _two_ingesters(redis_server.url)
    config = tmp_path / "c.yaml"
    config.write_text("cameras:\n  - {name: ghost, url: 'rtsp://u:${GHOST_PASSWORD}@h/x'}\n")
    assert "GHOST_PASSWORD" not in os.environ  # the camera's secret is not set where status runs
    env = {"REDIS_URL": redis_server.url}
    result = _cli("status", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ingesters: 1 live, 1 dead"
    assert lines[1].startswith("  live-1  seen ") and "cameras: gate" in lines[1]
    assert lines[2].startswith("  dead-1  DEAD: no heartbeat for 1") and "(it last ran: cafe)" in lines[2]
    assert "  ghost  not leased: no ingester runs it" in lines

    status = json.loads(_cli("status", "--json", env=env).stdout)
    assert {item["id"]: item["alive"] for item in status["ingesters"]} == {"live-1": True, "dead-1": False}


def test_status_json_prints_json_when_redis_is_unreachable():
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    result = _cli("status", "--json", "--redis-url", url)
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False and document["error"].startswith("Redis at redis://***@127.0.0.1")
    assert "hunter2" not in result.stdout + result.stderr


def test_validate_config_checks_file_cameras_and_speaks_json(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"cameras:\n  - {{name: clip, url: '{CLIP}'}}\n  - {{name: typo, url: clips/nowhere.mp4}}\n")
    result = _cli("validate-config", str(config))
    assert result.returncode == 2
    assert f"cameras[typo].url: no such video file: clips/nowhere.mp4 (from {ROOT})" in result.stderr
    assert "clip" not in result.stderr.replace("clips/", "").replace(str(config), "")  # the one that exists is fine

    refused = _cli("validate-config", "--json", str(config))
    document = json.loads(refused.stdout)
    assert refused.returncode == 2 and document["ok"] is False
    assert document["problems"] == [f"cameras[typo].url: no such video file: clips/nowhere.mp4 (from {ROOT})"]

    config.write_text(
        f"cameras:\n  - {{name: clip, url: 'file://{CLIP}', site: hall}}\n  - {{name: cam, url: usb:0}}\n"
    )
    accepted = _cli("validate-config", str(config), "--json")
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout) == {
        "ok": True,
        "source": str(config),
        "cameras": [
            {"name": "clip", "url": f"file://{CLIP}", "site": "hall"},
            {"name": "cam", "url": "usb:0", "site": None},
        ],
    }


def test_demo_screenshot_without_selenium_says_what_to_install(tmp_path):
    """selenium made unimportable in the child (as without the page extra): one line, no traceback, no run."""
    code = "import sys; sys.modules['selenium'] = None; from binarycop.cli import main; sys.exit(main(sys.argv[1:]))"
    out = tmp_path / "shots"
    result = subprocess.run(
        [sys.executable, "-c", code, "demo", "--screenshot", str(out)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "selenium, which is not installed: pip install 'binarycop[page]'" in result.stderr
    assert not out.exists()
