"""No silent dead camera (issue 26, item 5): a detector model that cannot load or run fails validate-config and the
start, and a camera whose detector fails anyway is logged and counted, never silently dead. Real YuNet files
(truncated, another network's, the fixed-size one), real onnxruntime, a real Redis."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import onnx
import pytest
import redis
from onnx import TensorProto, helper

from binarycop.cli import main
from binarycop.config import CameraConfig, Config, ConfigError, HttpConfig, RedisConfig
from binarycop.democlip import CLIP
from binarycop.server import Server
from detector import yunet
from stats.redis_store import CountRecorder
from stats.schema import CAMERA_UP_KEY, FRAMES_KEY


def _truncated(tmp_path):
    path = tmp_path / "yunet.onnx"
    path.write_bytes(yunet.MODEL.read_bytes()[:50_000])
    return path


def _other_network(tmp_path):
    node = helper.make_node("Identity", ["x"], ["y"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, None, None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, None, None])
    model = helper.make_model(helper.make_graph([node], "other", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "other.onnx"
    onnx.save(model, path)
    return path


def _fixed_size(tmp_path):
    return yunet.MODEL_DIR / "yunet_s_640_640.onnx"  # a YuNet that runs only on 640x640 inputs


@pytest.mark.parametrize(
    ("model", "says"),
    [
        (_truncated, "not a readable ONNX model"),
        (_other_network, "not a YuNet model"),
        (_fixed_size, "the detector cannot run"),
    ],
)
def test_validate_config_runs_the_detector_and_refuses_a_broken_model(tmp_path, capsys, monkeypatch, model, says):
    config = tmp_path / "binarycop.yaml"
    config.write_text(f"cameras: [{{name: gate, url: '{CLIP}'}}, {{name: door, url: '{CLIP}'}}]\n")
    assert main(["validate-config", str(config)]) == 0  # the shipped model: fine
    capsys.readouterr()
    monkeypatch.setattr(yunet, "MODEL", model(tmp_path))
    code = main(["validate-config", str(config)])
    output = "".join(capsys.readouterr())
    assert code == 2, output
    assert "detector (cameras gate, door): yunet:" in output and says in output and "Traceback" not in output


def test_serve_does_not_start_on_a_broken_detector(redis_server, tmp_path, monkeypatch):
    """Before: /readyz said ready and the lease was held, with no frame ever processed and nothing logged."""
    monkeypatch.setattr(yunet, "MODEL", _truncated(tmp_path))
    config = Config(
        redis=RedisConfig(url=redis_server.url),
        http=HttpConfig(port=0),
        cameras=[CameraConfig(name="gate", url=str(CLIP))],
    )

    async def scenario():
        server = Server(config, redis_server.url)
        try:
            await server.start()
        finally:
            await server.stop()

    with pytest.raises(ConfigError) as refused:
        asyncio.run(scenario())
    assert "not a readable ONNX model" in str(refused.value)
    assert redis.Redis.from_url(redis_server.url).keys("binarycop:lease:*") == []


def test_a_camera_whose_detector_fails_later_is_logged_down_and_counted(redis_server, monkeypatch, caplog):
    """Were a detector to fail when a camera starts (a file replaced after the start), the camera says so."""
    import binarycop.pipeline as pipeline

    def broken(config, framing=None):
        raise RuntimeError("session lost")

    monkeypatch.setattr(pipeline, "make_detector", broken)
    sync = redis.Redis.from_url(redis_server.url)

    async def scenario():
        from redis.asyncio import Redis

        client = Redis.from_url(redis_server.url)
        recorder = CountRecorder(client)
        camera = CameraConfig(name="gate", url=str(CLIP))
        classifier = SimpleNamespace(framing=None)  # never reached: the detector fails first
        await pipeline.run_camera(camera, Config(cameras=[camera]).detector, Config(cameras=[camera]).tracking,
                                  classifier, recorder)  # fmt: skip
        assert await recorder.flush()
        await client.aclose()

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert "camera gate: detector failed to load (RuntimeError): camera not read" in caplog.text
    assert sync.hget(CAMERA_UP_KEY, "gate") == b"0" and sync.hget(FRAMES_KEY, "gate|failed") == b"1"
