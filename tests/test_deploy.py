"""Deployment files: compose, Prometheus, Alertmanager and Kubernetes, checked by the real tools where they run
here (docker compose or docker-compose, promtool, amtool) and against the project's own config validator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from binarycop.config import Config, parse_config

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
ENV = {"REDIS_URL": "redis://redis:6379/0", "REDIS_PASSWORD": "x", "CAMERA_PASSWORD": "y"}
SPOOL = "/var/lib/binarycop/spool"  # where the image, compose and k8s keep the spool volume


def _compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_is_valid_and_ingesters_scale():
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (.ci/run installs docker-compose)")
    env = {**os.environ, "REDIS_PASSWORD": "x", "GRAFANA_ADMIN_PASSWORD": "y"}
    result = subprocess.run(
        [*command, "-f", str(DOCKER / "compose.yaml"), "config"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == {"redis", "ingester", "exporter", "prometheus", "alertmanager", "grafana"}
    ingester = services["ingester"]
    assert "ports" not in ingester and "container_name" not in ingester  # --scale needs neither
    assert ingester["cpus"] and ingester["mem_limit"]  # CPU-bound: bounded per replica
    assert f"ingester-spool:{SPOOL}:rw" in ingester["volumes"]
    for name in ("prometheus", "alertmanager", "exporter"):  # no authentication: loopback only
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), services[name]["ports"]
    assert "--storage.tsdb.retention.time=30d" in services["prometheus"]["command"]
    # without the passwords the file refuses to start, naming what to set
    bare = {k: v for k, v in os.environ.items() if k not in ("REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD")}
    refused = subprocess.run(
        [*command, "-f", str(DOCKER / "compose.yaml"), "config"], capture_output=True, text=True, env=bare
    )
    assert refused.returncode != 0 and "REDIS_PASSWORD" in refused.stderr


def test_compose_mounts_exist_and_dockerfile_runs_unprivileged_with_a_healthcheck():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name}: {source} does not exist"
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    user = [line for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert user and user[-1].split()[1] not in ("root", "0")


@pytest.mark.parametrize("path", [DOCKER / "config" / "binarycop.yaml", K8S / "binarycop.yaml"])
def test_shipped_configs_validate(path):
    config = parse_config(path.read_text(), str(path), environ=ENV)
    assert config.http.bind == "0.0.0.0" and config.http.metrics == "local"
    assert str(config.ingester.spool_dir) == SPOOL  # on the volume, not in the container's layer
    assert all(camera.site for camera in config.cameras)
    # what serve hands its helper ingesters through their pipe (binarycop.ingesters) reads back the same
    assert Config.model_validate(json.loads(json.dumps(config.model_dump(mode="json")))) == config


def test_prometheus_config_passes_promtool(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: .ci/run installs Debian's prometheus package"
    config = yaml.safe_load((ROOT / "dashboards" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/binarycop.rules.yml"]  # where compose mounts them
    config["rule_files"] = [str(ROOT / "dashboards" / "rules" / "binarycop.rules.yml")]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(local)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_config_passes_amtool():
    amtool = shutil.which("amtool")
    assert amtool, "amtool not found: .ci/run installs Debian's prometheus-alertmanager package"
    result = subprocess.run(
        [amtool, "check-config", str(ROOT / "dashboards" / "alertmanager.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _k8s_objects() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    objects = []
    for resource in kustomization["resources"]:
        objects += [doc for doc in yaml.safe_load_all((K8S / resource).read_text()) if doc]
    for generator in kustomization["configMapGenerator"]:
        assert all((K8S / name).is_file() for name in generator["files"])
    return objects


def test_kubernetes_manifests_probe_the_right_endpoints():
    objects = _k8s_objects()
    assert all({"apiVersion", "kind", "metadata"} <= set(o) and o["metadata"].get("name") for o in objects)
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    config = parse_config((K8S / "binarycop.yaml").read_text(), environ=ENV)
    for kind, name in (("StatefulSet", "binarycop-ingester"), ("Deployment", "binarycop-exporter")):
        deployment = by_name[(kind, name)]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        port_name = container["readinessProbe"]["httpGet"]["port"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert port_name in ports
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        if name == "binarycop-ingester":
            assert ports[port_name] == config.http.port
            assert deployment["spec"]["replicas"] > 1
    assert by_name[("PodMonitor", "binarycop-ingester")]["spec"]["podMetricsEndpoints"][0]["port"] == "http"


def test_kubernetes_prometheus_rule_equals_the_rules_file():
    rule = next(o for o in _k8s_objects() if o["kind"] == "PrometheusRule")
    rules = yaml.safe_load((ROOT / "dashboards" / "rules" / "binarycop.rules.yml").read_text())
    assert rule["spec"]["groups"] == rules["groups"]


def test_every_package_is_installed_and_copied_into_the_image():
    import tomllib

    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {name.removesuffix("*") for name in include} == packages
    copied = {line.split()[1] for line in (DOCKER / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")}
    assert packages <= copied, f"not in the image: {sorted(packages - copied)}"
