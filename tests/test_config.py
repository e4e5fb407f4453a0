from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from binarycop.config import ConfigError, load_config, parse_config, redact_url

GOOD = """
redis: {url: "redis://:${REDIS_PASSWORD}@127.0.0.1:6379/0"}
http: {bind: 127.0.0.1, port: 9000}
classifier: {backend: cpu, model: n-cnv, max_batch: 64}
detector: {kind: blazeface, min_face_px: 24, tile: 640}
cameras:
  - name: gate-1
    url: "rtsp://admin:${GATE1_PASSWORD}@10.0.0.5/stream2"
    detect_fps: 5
    site: hall-a
  - name: lobby
    url: /videos/lobby.mp4
"""
ENV = {"REDIS_PASSWORD": "r3dis", "GATE1_PASSWORD": "hunter2"}


def test_good_config_loads_with_secrets_from_environment():
    config = parse_config(GOOD, environ=ENV)
    assert [c.name for c in config.cameras] == ["gate-1", "lobby"]
    assert config.cameras[0].url == "rtsp://admin:hunter2@10.0.0.5/stream2"
    assert config.cameras[1].detect_fps == 5  # default
    assert config.detector.tile_pixels() == 640
    assert config.http.port == 9000


def test_secrets_never_shown():
    config = parse_config(GOOD, environ=ENV)
    shown = repr(config) + str(config) + config.cameras[0].display_url
    assert "hunter2" not in shown and "r3dis" not in shown
    assert config.cameras[0].display_url == "rtsp://admin:***@10.0.0.5/stream2"


@pytest.mark.parametrize(
    "url, shown",
    [
        ("rtsp://user:pw@cam:554/a?b=1", "rtsp://user:***@cam:554/a?b=1"),
        ("http://token@cam/video.mjpg", "http://***@cam/video.mjpg"),
        ("/data/clip.mp4", "/data/clip.mp4"),
        ("rtsp://cam/stream", "rtsp://cam/stream"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "text, problem",
    [
        ("cameras: []", "cameras: must have at least 1 item"),
        ("cameras: [{name: a, url: x.mp4, fps: 5}]", "cameras[a].fps: unknown key"),
        ("cameras: [{name: A B, url: x.mp4}]", "cameras[#1].name: must be lowercase letters, digits, '-' and '_'"),
        ("cameras: [{name: a, url: x.mp4, detect_fps: 0}]", "cameras[a].detect_fps: must be greater than 0"),
        ("cameras: [{name: a}]", "cameras[a].url: required"),
        ("cameras: [{name: b, url: x}, {name: a, url: x, loop: 2}]", "cameras[a].loop: must be true or false"),
        ("cameras: [{name: a, url: x}, {name: a, url: y}]", "camera names must be unique; repeated: a"),
        ("cameras: [{name: a, url: x}]\nredis: {url: 'http://r'}", "redis.url: must start with redis://"),
        ("cameras: [{name: a, url: x}]\nclassifier: {backend: gpu}", "classifier.backend: must be 'cpu', 'onnx'"),
        ("cameras: [{name: a, url: x}]\nhttp: {port: 70000}", "http.port: must be at most 65535"),
        ("cameras: [{name: a, url: 'rtsp://u:${NOPE}@h'}]", "cameras[a].url: environment variable NOPE is not set"),
        ("cameras: [{name: a, url: '${N:?in .env}'}]", "cameras[a].url: environment variable N is not set: in .env"),
        ("cameras: [{name: a, url: 'rtsp://u:${1X}@h'}]", "cameras[a].url: '${1X}' is not a variable reference: write"),
        ("cameras: [{name: a, url: 'rtsp://u:${A B}@h'}]", "cameras[a].url: a '${...}' is not a variable reference"),
        ("cameras: [{name: a, url: 'rtsp://u:${PW@h'}]", "cameras[a].url: an unterminated '${'"),
        ("cameras: [{name: a, url: x}", "not valid YAML"),
        ("- just\n- a list", "(top level): expected a mapping"),
        ("ingester: {processes: 0}", "ingester.processes: expected 'auto' or a count from 1 to 64"),
        ("ingester: {processes: yes}", "ingester.processes: expected 'auto' or a count from 1 to 64"),
        ("ingester: {processes: many}", "ingester.processes"),
    ],
)
def test_bad_config_names_the_field(text, problem):
    with pytest.raises(ConfigError) as raised:
        parse_config(text, environ={})
    assert any(problem in p for p in raised.value.problems), raised.value.problems


@pytest.mark.parametrize(
    "url, environ, expected",
    [
        ("rtsp://u:${PW:-guest}@h/x", {}, "rtsp://u:guest@h/x"),
        ("rtsp://u:${PW:-guest}@h/x", {"PW": ""}, "rtsp://u:guest@h/x"),  # :- also replaces an empty value
        ("rtsp://u:${PW-guest}@h/x", {"PW": ""}, "rtsp://u:@h/x"),  # - only an unset one
        ("rtsp://u:${PW:-guest}@h/x", {"PW": "s3"}, "rtsp://u:s3@h/x"),
        ("rtsp://u:${PW:?needed}@h/x", {"PW": "s3"}, "rtsp://u:s3@h/x"),
        ("rtsp://u:a$${b}@h/x", {"b": "no"}, "rtsp://u:a${b}@h/x"),  # $${ is a literal ${
        ("${DIR:-clips}/${NAME}.mp4", {"NAME": "door"}, "clips/door.mp4"),
    ],
)
def test_environment_references_with_defaults(url, environ, expected):
    config = parse_config(f"cameras: [{{name: a, url: '{url}'}}]", environ=environ)
    assert config.cameras[0].url == expected


def test_config_problems_speak_plainly():
    """No pydantic phrasing ('Input should', 'Value error', 'Field required') and no regex in any problem."""
    texts = [
        "cameras: [{name: A B, url: x, detect_fps: 0, site: 'Hall A', loop: 3}]\nhttp: {port: -1, metrics: x}",
        "cameras: [{name: a, url: x, detector: {tile: 64, kind: x, scales: []}}]\nredis: {url: 'http://r'}",
        "cameras: [{name: a}]\nclassifier: {backend: finn, max_batch: 0.5}\ntracking: {min_hits: x}",
    ]
    for text in texts:
        with pytest.raises(ConfigError) as raised:
            parse_config(text, environ={})
        for problem in raised.value.problems:
            assert not re.search(r"should|Value error|Field required|\^\[|\$'|pattern", problem), problem


def test_every_problem_reported_at_once():
    text = "cameras: [{name: a, url: x, detect_fps: -1, colour: red}]\nhttp: {port: -1}"
    with pytest.raises(ConfigError) as raised:
        parse_config(text, environ={})
    fields = sorted(p.split(":")[0] for p in raised.value.problems)
    assert fields == ["cameras[a].colour", "cameras[a].detect_fps", "http.port"]


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "binarycop.cli", *args], capture_output=True, text=True, env=env)


def test_validate_config_command(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: [{name: a, url: 'rtsp://u:secret@h/x', detect_fps: 0, zone: 1}]\n")
    result = _cli("validate-config", str(bad))
    assert result.returncode == 2
    assert "cameras[a].detect_fps" in result.stderr and "cameras[a].zone: unknown key" in result.stderr
    assert "secret" not in result.stderr + result.stdout

    good = tmp_path / "good.yaml"
    good.write_text("cameras: [{name: a, url: 'rtsp://u:secret@h/x'}]\n")
    result = _cli("validate-config", str(good))
    assert result.returncode == 0, result.stderr
    assert "rtsp://u:***@h/x" in result.stdout and "secret" not in result.stdout


def test_config_schema_command():
    result = _cli("config-schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert "cameras" in schema["required"]
    assert schema["$defs"]["CameraConfig"]["additionalProperties"] is False


def test_camera_detector_settings_override_the_top_level_ones():
    config = parse_config(
        "detector: {tile: 640, tiles_per_frame: 2}\n"
        "cameras:\n"
        "  - {name: far, url: a.mp4, detector: {tile: 256, min_face_px: 16, keep_still: false}}\n"
        "  - {name: near, url: b.mp4, detector: {tile: off, full_frame_backoff: false}}\n"
        "  - {name: plain, url: c.mp4}\n",
        environ={},
    )
    far, near, plain = (camera.detector_config(config.detector) for camera in config.cameras)
    assert (far.tile_pixels(), far.min_face_px, far.keep_still, far.tiles_per_frame) == (256, 16, False, 2)
    assert near.tile_pixels() == 0 and near.tiles_per_frame == 2  # YAML's bare `off` is read as false: accepted
    assert not near.full_frame_backoff and far.full_frame_backoff and plain.full_frame_backoff
    assert plain == config.detector


@pytest.mark.parametrize(
    "detector, problem",
    [
        ("{tile: 64}", "cameras[a].detector.tile: tile side must be between 128 and 4096 pixels"),
        ("{tile: on}", "cameras[a].detector.tile: use 'auto', 'off' or a tile side in pixels"),
        ("{tiles_per_frame: -1}", "cameras[a].detector.tiles_per_frame: must be at least 0"),
        ("{kind: retina}", "cameras[a].detector.kind: must be 'yunet' or 'blazeface'"),
        ("{scales: [1, 9]}", "cameras[a].detector.scales: scales must be factors between 0.25 and 4"),
        ("{flavour: x}", "cameras[a].detector.flavour: unknown key"),
        ("{tile: banana}", "cameras[a].detector.tile: must be 'auto' or 'off', or a whole number"),
    ],
)
def test_bad_camera_detector_settings_named(detector, problem):
    with pytest.raises(ConfigError) as raised:
        parse_config(f"cameras: [{{name: a, url: x.mp4, detector: {detector}}}]", environ={})
    assert problem in raised.value.problems, raised.value.problems


def test_the_readme_config_is_valid():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(block, "README.md", environ={"REDIS_URL": "redis://db:6379/0", "GATE1_PASSWORD": "pw"})
    assert [camera.name for camera in config.cameras] == ["gate-1"]
    assert config.cameras[0].zones == {"entrance": [(0.1, 0.2), (0.9, 0.2), (0.9, 1.0), (0.1, 1.0)]}
    assert config.redis.url == "redis://db:6379/0" and config.http.port == 8080


def test_the_onnx_backend_asks_for_a_twin_not_a_binary_model():
    with pytest.raises(ConfigError) as raised:
        parse_config("cameras: [{name: a, url: x}]\nclassifier: {backend: onnx, model: n-cnv}", environ={})
    assert any("backend onnx runs a network's FP32 twin" in p and "n-cnv-fp32" in p for p in raised.value.problems)
    config = parse_config("cameras: [{name: a, url: x}]\nclassifier: {backend: onnx, model: n-cnv-fp32}", environ={})
    assert config.classifier.backend == "onnx"


def test_ingester_processes_auto_is_one_per_usable_core_and_never_more_than_the_cameras():
    """``auto`` resolves on this machine: one process per core this process may use, at most one per camera."""
    from binarycop.config import IngesterConfig, usable_cores

    assert IngesterConfig().processes == "auto"
    assert IngesterConfig().process_count(1) == 1
    assert IngesterConfig().process_count(1000) == min(usable_cores(), 64)
    assert IngesterConfig(processes=3).process_count(1) == 3  # a count is taken as given


def test_a_containers_cpu_limit_caps_the_cores_auto_counts(tmp_path):
    """A cgroup's CPU quota (``docker --cpus 2``, a Kubernetes CPU limit) counts, not the host's cores: cgroup v2's
    ``cpu.max`` and v1's ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``; unlimited or unreadable, none."""
    from binarycop.config import _cgroup_cpu_quota

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpu_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_cpu_quota(v1) == 2.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _cgroup_cpu_quota(v1) is None
    assert _cgroup_cpu_quota(tmp_path / "none") is None
