"""Config files as a hostile or careless operator writes them: each is a clear error naming what is wrong,
never a traceback, a hang or a password on the screen."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from binarycop.cli import main
from binarycop.config import MAX_CONFIG_BYTES, MAX_ZONE_POINTS, ConfigError, parse_config, redact_url

BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
cameras: [{name: a, url: x.mp4, zones: {z: *h}}]
"""


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "binarycop.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def _run_main(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("password", ["pa#ss", "pa/ss", "pa?ss", "12/ab", "x?y#z/w"])
def test_redact_url_hides_a_password_holding_url_delimiters(password):
    for url in (f"rtsp://admin:{password}@10.0.0.5/stream2", f"redis://:{password}@redis:6379/0"):
        shown = redact_url(url)
        assert password not in shown and "***@" in shown, shown
        assert shown.endswith("/stream2") or shown.endswith("/0")


@pytest.mark.parametrize("password", ["pa#ss", "pa/ss", "pa?ss"])
@pytest.mark.parametrize("command", ["validate-config", "serve"])
def test_password_with_url_delimiters_is_refused_without_echoing_it(tmp_path, capsys, command, password):
    path = tmp_path / "binarycop.yaml"
    path.write_text(f"cameras: [{{name: gate, url: 'rtsp://admin:{password}@10.0.0.5/stream2'}}]\n")
    if command == "validate-config":
        code, output = _run_main(capsys, "validate-config", str(path))
    else:  # before: served, logging the password; a process, so that can only time out
        result = _cli("serve", "--config", str(path), timeout=60)
        code, output = result.returncode, result.stdout + result.stderr
    assert code == 2
    assert "cameras[gate].url" in output and "percent-encode" in output
    assert password not in output and "ss@" not in output

    path.write_text(f"redis: {{url: 'redis://:{password}@127.0.0.1:1/0'}}\ncameras: [{{name: gate, url: x.mp4}}]\n")
    code, output = _run_main(capsys, "validate-config", str(path))
    assert code == 2 and "redis.url" in output and password not in output


def test_percent_encoded_password_is_accepted_and_redacted(tmp_path, capsys):
    path = tmp_path / "binarycop.yaml"
    path.write_text("cameras: [{name: gate, url: 'rtsp://admin:pa%23ss@10.0.0.5/stream2'}]\n")
    code, output = _run_main(capsys, "validate-config", str(path))
    assert code == 0, output
    assert "rtsp://admin:***@10.0.0.5/stream2" in output and "pa%23ss" not in output


def test_billion_laughs_is_refused_at_once(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 600
    result = _cli("validate-config", str(path), timeout=30)  # before: ran until killed
    assert result.returncode == 2, result.stderr
    assert "line 2, column 8: YAML aliases (*name) are not accepted" in result.stderr
    assert "Traceback" not in result.stderr


def test_zone_points_and_file_size_are_capped(tmp_path, capsys):
    points = ", ".join("[0.5, 0.5]" for _ in range(MAX_ZONE_POINTS + 1))
    with pytest.raises(ConfigError) as raised:
        parse_config(f"cameras: [{{name: a, url: x.mp4, zones: {{z: [{points}]}}}}]", environ={})
    assert any(p.startswith("cameras[a].zones.z: must have at most 256 items") for p in raised.value.problems)

    path = tmp_path / "big.yaml"
    path.write_text("cameras: [{name: a, url: x.mp4}]\n" + "#" * MAX_CONFIG_BYTES + "\n")
    code, output = _run_main(capsys, "validate-config", str(path))
    assert code == 2 and "(file): larger than 1024 KiB" in output


DEEP = "cameras: " + "[" * 20000 + "]" * 20000 + "\n"


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"cameras: [{name: caf\xe9, url: x.mp4}]\n", "(file): not UTF-8 text (byte 0xe9 at offset 20)"),
        ("cameras: [{name: a, url: x.mp4}]\n".encode("utf-16"), "(file): UTF-16 (or binary) text; save it as UTF-8"),
        (DEEP.encode(), "line 1, column 41: nested deeper than 32 levels"),
        (b"cameras: [{name: a, url: x.mp4, detect_fps: " + b"9" * 5000 + b"}]\n", "not valid YAML: Exceeds the limit"),
    ],
    ids=["latin-1", "utf-16", "nested", "long-integer"],
)
@pytest.mark.parametrize("command", ["validate-config", "serve"])
def test_unreadable_files_are_clear_errors(tmp_path, capsys, content, problem, command):
    path = tmp_path / "binarycop.yaml"
    path.write_bytes(content)
    args = ["validate-config", str(path)] if command == "validate-config" else ["serve", "--config", str(path)]
    code, output = _run_main(capsys, *args)  # before: UnicodeDecodeError, RecursionError tracebacks
    assert code == 2
    assert f"invalid config {path}:\n  {problem}" in output, output


@pytest.mark.parametrize(
    "text, problem",
    [
        (
            "cameras: [{name: a, url: x.mp4}]\ncameras: [{name: b, url: y.mp4}]\n",
            "line 2, column 1: key 'cameras' appears twice in one mapping",
        ),
        ("cameras: [{name: a, url: x.mp4, name: b}]", "line 1, column 33: key 'name' appears twice"),
        ("cameras: [{name: a, url: ''}]", "cameras[a].url: must not be empty"),
        ("cameras: [{name: a, url: '  '}]", "cameras[a].url: must not be empty"),
        ("cameras: [{name: a, url: 'ftp://h/x'}]", "cameras[a].url: unsupported scheme 'ftp'"),
        (
            'cameras: [{name: a, url: "rtsp://h/x\\n2026-01-01 ERROR forged\\e[2J"}]',
            "cameras[a].url: holds control characters",
        ),
        (
            'cameras: [{name: a, url: x.mp4, zones: {"door\\n": [[0, 0], [1, 0], [1, 1]]}}]',
            "cameras[a].zones: zone name 'door\\n'",
        ),
        ('cameras: [{name: "a\\n", url: x.mp4}]', "cameras[#1].name: must be lowercase letters"),
        (
            'cameras: [{name: a, url: x.mp4}]\nredis: {url: "redis://h/0\\r\\nFLUSHALL"}',
            "redis.url: holds control",
        ),
        ("a: &x 1\nb: *x\ncameras: [{name: a, url: x.mp4}]", "line 2, column 4: YAML aliases (*name) are not accepted"),
    ],
)
def test_silently_accepted_before_now_refused(text, problem):
    with pytest.raises(ConfigError) as raised:
        parse_config(text, environ={})
    assert any(p.startswith(problem) for p in raised.value.problems), raised.value.problems


def test_yaml_error_does_not_echo_the_offending_line():
    with pytest.raises(ConfigError) as raised:
        parse_config("cameras: [{name: a, url: 'rtsp://u:hunter2@h/x'", environ={})
    (problem,) = raised.value.problems
    assert problem.startswith("not valid YAML: line 1, column") and "hunter2" not in problem


def _bad_model_files(folder: Path) -> dict[str, Path]:
    good = Path(__file__).resolve().parents[1] / "models" / "n-cnv.npz"
    data = good.read_bytes()
    files = {
        "empty": b"",
        "text": b"not a model\n",
        "truncated": data[: len(data) // 2],
        "tail-cut": data[:-100],
    }
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}.npz"
        paths[name].write_bytes(content)
    paths["no-meta"] = folder / "no-meta.npz"
    np.savez(paths["no-meta"], weights=np.zeros(3))
    with np.load(good) as archive:
        arrays = {name: archive[name] for name in archive.files}
    paths["edited"] = folder / "edited.npz"
    np.savez(paths["edited"], **{**arrays, "conv0_weights": arrays["conv0_weights"][:1]})
    meta = json.loads(arrays["meta"].tobytes())
    paths["unknown-arch"] = folder / "unknown-arch.npz"
    np.savez(
        paths["unknown-arch"], **{**arrays, "meta": np.frombuffer(json.dumps({**meta, "arch": "x"}).encode(), "u1")}
    )
    paths["absent"] = folder / "absent.npz"
    return paths


def test_validate_config_and_serve_check_the_model_file(tmp_path, capsys):
    for name, model in _bad_model_files(tmp_path).items():
        path = tmp_path / "binarycop.yaml"
        path.write_text(f"classifier: {{model: '{model}'}}\ncameras: [{{name: a, url: x.mp4}}]\n")
        code, output = _run_main(capsys, "validate-config", str(path))  # before: "ok" for each
        assert code == 2, (name, output)
        assert f"invalid config {path}:\n  classifier.model: " in output, (name, output)
        if name == "truncated":
            code, output = _run_main(capsys, "serve", "--config", str(path))  # before: a traceback
            assert code == 2 and "classifier.model: " in output and "Traceback" not in output


def _serve_config(tmp_path: Path, redis_url: str, http: str) -> Path:
    path = tmp_path / "binarycop.yaml"
    path.write_text(f"redis: {{url: '{redis_url}'}}\nhttp: {http}\ncameras: [{{name: a, url: x.mp4}}]\n")
    return path


def test_serve_and_exporter_on_a_port_in_use_or_a_bad_address_is_a_clear_error(redis_server, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = _serve_config(tmp_path, redis_server.url, f"{{bind: 127.0.0.1, port: {port}}}")
        result = _cli("serve", "--config", str(path))
        exporter = _cli("exporter", "--redis-url", redis_server.url, "--port", str(port))
    assert result.returncode == 2, result.stderr
    assert f"http.bind, http.port: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert exporter.returncode == 2, exporter.stderr
    assert exporter.stderr == f"exporter: --bind, --port: cannot listen on 127.0.0.1:{port}: Address already in use\n"

    path = _serve_config(tmp_path, redis_server.url, "{bind: 203.0.113.7, port: 0}")  # not this machine's
    result = _cli("serve", "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert "http.bind, http.port: cannot listen on 203.0.113.7:0: " in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_says_where_it_serves_at_once_when_piped():
    """Piped output is block-buffered: the URLs must be flushed as printed, not at exit."""
    import queue
    import signal
    import threading
    import urllib.request

    process = subprocess.Popen(
        [sys.executable, "-m", "binarycop.cli", "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    try:
        base = None
        while base is None:
            line = lines.get(timeout=90)  # queue.Empty: no status page URL while the demo runs
            if line.startswith("status page  "):
                base = line.split()[-1]
        with urllib.request.urlopen(f"{base}healthz", timeout=10) as response:
            assert response.read() == b"ok\n"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        out = process.stdout.read()
    assert process.returncode == 0 and out == ""  # progress on stderr, as every command
