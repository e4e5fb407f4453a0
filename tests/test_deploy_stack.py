"""The deployment files against the tools they are built for: ``kubectl kustomize`` renders the manifests (with
and without the kube-prometheus-stack component), a real redis-server runs the Redis command of compose and k8s,
and the image's wheel is built and run from the layout the Dockerfile gives it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import redis
import yaml

from tests.conftest import free_port, redis_server_binary

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
SPOOL = "/var/lib/binarycop/spool"
PASSWORD = 'pa ss"wo\\rd$x'  # a space, a quote, a backslash and a dollar: each must survive the shell and Redis


def _kustomize(directory: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed here (Debian's kubernetes-client embeds a kustomize too old for it)")
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _by_kind_and_name(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_kustomize_renders_the_spool_volume_the_secret_env_and_the_disruption_budgets():
    objects = _by_kind_and_name(_kustomize(K8S))
    ingester = objects[("StatefulSet", "binarycop-ingester")]["spec"]
    container = ingester["template"]["spec"]["containers"][0]
    assert {"name": "spool", "mountPath": SPOOL} in container["volumeMounts"]
    assert [claim["metadata"]["name"] for claim in ingester["volumeClaimTemplates"]] == ["spool"]
    assert ("Service", ingester["serviceName"]) in objects
    for kind, name in (("StatefulSet", "binarycop-ingester"), ("Deployment", "binarycop-exporter")):
        env = {e["name"]: e for e in objects[(kind, name)]["spec"]["template"]["spec"]["containers"][0]["env"]}
        secret = env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": "binarycop-secrets", "key": "redis-password"}
    redis_container = objects[("StatefulSet", "binarycop-redis")]["spec"]["template"]["spec"]["containers"][0]
    assert redis_container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "binarycop-secrets"
    assert "--requirepass" not in " ".join(redis_container.get("command", []) + redis_container.get("args", []))
    for name in ("binarycop-ingester", "binarycop-exporter"):
        budget = objects[("PodDisruptionBudget", name)]["spec"]
        assert budget["maxUnavailable"] == 1 and budget["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}
    monitors = [o for o in objects.values() if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert len(monitors) == 3 and all("release" not in o["metadata"]["labels"] for o in monitors)


def test_the_kube_prometheus_stack_component_labels_monitors_and_rules_only(tmp_path):
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    base = os.path.relpath(K8S, overlay)  # kustomize refuses absolute paths
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [base], "components": [f"{base}/kube-prometheus-stack"]})
    )
    objects = _kustomize(overlay)
    labelled = sorted(o["kind"] for o in objects if o["metadata"]["labels"].get("release") == "kube-prometheus-stack")
    assert labelled == ["PodMonitor", "PrometheusRule", "ServiceMonitor"]
    assert len(objects) == len(_kustomize(K8S))  # the component adds a label, no object


def _redis_script(command: list[str], port: int, directory: Path) -> list[str]:
    """The shipped ``sh -c SCRIPT`` with this test's port and folder added to redis-server's own options."""
    assert command[:2] == ["sh", "-c"] and "redis-server - " in command[2], command
    return ["sh", "-c", command[2].replace("redis-server - ", f"redis-server - --port {port} --dir {directory} ", 1)]


def _compose_redis_command() -> list[str]:
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose is not installed (.ci/run installs it)")
    env = {**os.environ, "REDIS_PASSWORD": "x", "GRAFANA_ADMIN_PASSWORD": "y"}
    rendered = subprocess.run(
        ["docker-compose", "-f", str(DOCKER / "compose.yaml"), "config"], capture_output=True, text=True, env=env
    )
    assert rendered.returncode == 0, rendered.stderr
    command = yaml.safe_load(rendered.stdout)["services"]["redis"]["command"]
    return [part.replace("$$", "$") for part in command]  # compose's escaped '$', as it hands it to the container


def _k8s_redis_command() -> list[str]:
    container = _by_kind_and_name(_kustomize(K8S))[("StatefulSet", "binarycop-redis")]
    container = container["spec"]["template"]["spec"]["containers"][0]
    return container["command"] + container["args"]


@pytest.mark.parametrize("shipped", [_compose_redis_command, _k8s_redis_command], ids=["compose", "k8s"])
def test_redis_takes_its_password_from_the_env_and_never_shows_it_in_its_args(shipped, tmp_path):
    """The shipped Redis command, run by a real redis-server: the password from $REDIS_PASSWORD is required,
    and the running process's command line does not hold it."""
    port = free_port()
    binary_dir = str(Path(redis_server_binary()).parent)
    env = {"PATH": f"{binary_dir}:/usr/bin:/bin", "REDIS_PASSWORD": PASSWORD}
    process = subprocess.Popen(_redis_script(shipped(), port, tmp_path), env=env, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password=PASSWORD, socket_timeout=5)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, password="wrong", socket_timeout=5).ping()
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()  # `exec`: the shell became redis-server
        assert b"redis-server" in cmdline and PASSWORD.encode() not in cmdline and b"requirepass" not in cmdline
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def _build_stage_copies() -> list[str]:
    """What the Dockerfile's build stage copies into /src: the files and packages the wheel is built from."""
    _, build_stage, _ = re.split(r"^FROM ", (DOCKER / "Dockerfile").read_text(), flags=re.MULTILINE)
    return [part for line in re.findall(r"^COPY (.+)$", build_stage, re.MULTILINE) for part in line.split()[:-1]]


def _site_copies() -> list[tuple[str, str]]:
    """The Dockerfile's ``COPY SOURCE ${SITE}/TARGET`` lines: data files put beside the installed packages."""
    text = (DOCKER / "Dockerfile").read_text()
    return re.findall(r"^COPY (\S+) \$\{SITE\}/(\S+)$", text, re.MULTILINE)


def test_the_image_installs_a_wheel_in_a_second_stage():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    stages = re.findall(r"^FROM .*$", dockerfile, re.MULTILINE)
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    assert "pip wheel" in dockerfile and "pip install --no-cache-dir /wheels/*.whl" in dockerfile
    assert "-e ." not in dockerfile and f"VOLUME {SPOOL}" in dockerfile


def test_the_wheel_runs_from_the_image_layout(tmp_path):
    """Build the wheel as the image's first stage does, install it (not editable) into a folder, lay the data
    files beside it as the Dockerfile's COPY lines do, and load the model, the detector and the dashboards."""
    wheels, site, source = tmp_path / "wheels", tmp_path / "site", tmp_path / "src"
    source.mkdir()
    for copied in _build_stage_copies():  # the build stage's context, so setuptools writes nothing into ROOT
        if (ROOT / copied).is_dir():
            shutil.copytree(ROOT / copied, source / copied, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / copied, source)
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--wheel-dir"]
    built = subprocess.run([*build, str(wheels), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("binarycop-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "stats/page/index.html" in names and "binarycop/assets/demo_clip.mp4" in names
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)]
    installed = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    assert not list(site.glob("__editable__*")) and (site / "accel" / "__init__.py").is_file()
    copies = _site_copies()
    assert {target.split("/")[0] for _, target in copies} == {"models", "dashboards", "finn"}
    for source, target in copies:
        for path in ROOT.glob(source):
            destination = site / target / path.name if target.endswith("/") else site / target
            if path.is_dir():
                shutil.copytree(path, destination)
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, destination)
    check = (
        "import accel, detector.yunet, binarycop.grafana as g, accel.finn.folding as f;"
        f"assert accel.__file__.startswith({str(site)!r}), accel.__file__;"
        "accel.load_model('n-cnv'); assert detector.yunet.MODEL.is_file(); assert len(g.load_dashboards()) == 2;"
        "assert f.FOLDING_DIR.is_dir()"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["sym_shape_infer_temp.onnx", "7bcd623c-edd7-11f1-bd51-02fc00000001.data"])
def test_onnxruntimes_leftovers_are_ignored_by_git(name):
    result = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", name], capture_output=True)
    assert result.returncode == 0, f"{name} would not be ignored"
    assert not (ROOT / name).exists()
