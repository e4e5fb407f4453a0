"""Grafana dashboards: their structure, every panel's query against a real Prometheus scraping a real pipeline,
and `binarycop dashboards push` against a stand-in for Grafana's API."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest
import yaml

from binarycop.config import Config, HttpConfig, RedisConfig
from binarycop.dashboard_render import Prometheus, render_all, substitute
from binarycop.democlip import CLIP
from binarycop.grafana import DASHBOARDS, DATASOURCE_UID, PushError, load_dashboards, push_dashboards
from binarycop.server import Server
from tests.conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
PROVISIONING = ROOT / "dashboards" / "grafana" / "provisioning"
RULES = ROOT / "dashboards" / "rules" / "binarycop.rules.yml"


def _queries() -> list[tuple[str, str, str]]:
    return [
        (dashboard["uid"], panel["title"], target["expr"])
        for dashboard in load_dashboards()
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def test_dashboards_have_stable_uids_and_use_the_provisioned_datasource():
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "binarycop.yaml").read_text())["datasources"][0]
    assert datasource["uid"] == DATASOURCE_UID
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "binarycop.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["folderUid"] == "binarycop"
    dashboards = load_dashboards()
    assert sorted(d["uid"] for d in dashboards) == ["binarycop-operations", "binarycop-operator"]
    for dashboard in dashboards:
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), dashboard["uid"]
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        for variable in dashboard["templating"]["list"]:
            assert variable["datasource"]["uid"] == DATASOURCE_UID


def _job(name: str, port: int) -> dict:
    return {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_class_panels_name_and_colour_the_classes_as_the_page_does():
    """Grafana shows `mask_class` values in the words and colours of names/ (the status page's), not raw label
    values in Grafana's default palette."""
    from names import CLASS_COLOURS, CLASS_LABELS

    operator = json.loads((ROOT / "dashboards/grafana/dashboards/operator.json").read_text())
    class_panels = [
        p for p in operator["panels"] if any(t.get("legendFormat") == "{{mask_class}}" for t in p["targets"])
    ]
    assert len(class_panels) == 3
    for panel in class_panels:
        shown = {
            o["matcher"]["options"]: {prop["id"]: prop["value"] for prop in o["properties"]}
            for o in panel["fieldConfig"]["overrides"]
        }
        assert {name: props["displayName"] for name, props in shown.items()} == CLASS_LABELS, panel["title"]
        assert {name: props["color"]["fixedColor"] for name, props in shown.items()} == CLASS_COLOURS, panel["title"]
    page_script = (ROOT / "stats/page/page.js").read_text()
    assert all(f"{name}: '{colour}'" in page_script for name, colour in CLASS_COLOURS.items())


def test_every_panel_query_returns_data_from_a_real_prometheus(redis_server, tmp_path):
    """A real pipeline (bundled clip, looping) writes to a real Redis; `binarycop exporter` serves the counts and
    the ingester its own gauges; a real Prometheus scrapes both every second with the rule files loaded. Then
    every dashboard panel's query, and the variables' label queries, must return data."""
    prometheus_binary = shutil.which("prometheus")
    assert prometheus_binary, "prometheus not found: .ci/run installs Debian's prometheus package"
    camera = {"name": "entrance", "url": str(CLIP), "detect_fps": 5, "site": "hall-a", "loop": True}
    config = Config(redis=RedisConfig(url=redis_server.url), http=HttpConfig(port=0, metrics="local"), cameras=[camera])
    exporter_port, prometheus_port = free_port(), free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-m", "binarycop.cli", "-q", "exporter", "--redis-url", redis_server.url]
        + ["--port", str(exporter_port)],
    )
    prometheus = f"http://127.0.0.1:{prometheus_port}"
    failures: list[str] = []

    async def scenario():
        server = Server(config, redis_server.url)
        await server.start()
        prometheus_config = tmp_path / "prometheus.yml"
        prometheus_config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        _job("binarycop-exporter", exporter_port),
                        _job("binarycop-ingester", server.port),
                    ],
                }
            )
        )
        process = subprocess.Popen(
            [prometheus_binary, f"--config.file={prometheus_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
            + [f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:

            def has(expr: str) -> bool:
                try:
                    return bool(Prometheus(prometheus).instant(expr))
                except OSError:
                    return False

            await wait_until(lambda: has('ALERTS{alertname="BinarycopComplianceLow"}'), 90, "rules to evaluate")
            await wait_until(lambda: has("increase(binarycop_people_total[5m]) > 0"), 60, "people counted")
            for uid, title, expr in _queries():
                result = await asyncio.to_thread(Prometheus(prometheus).instant, substitute(expr, 300))
                if not result:
                    failures.append(f"{uid} / {title}: {expr}")
            series = await asyncio.to_thread(
                _get_json, f"{prometheus}/api/v1/series?" + urllib.parse.urlencode({"match[]": "binarycop_camera_info"})
            )
            assert {(s["camera"], s["site"]) for s in series["data"]} == {("entrance", "hall-a")}
            drawn = await asyncio.to_thread(render_all, load_dashboards(), prometheus, tmp_path / "png", 1)
            for path, panels in drawn.items():
                picture = cv2.imread(path)
                assert picture is not None and picture.shape[1] == 24 * 56, path
                assert all(panels.values()), (path, panels)
        finally:
            process.terminate()
            process.wait(timeout=30)
            await server.stop()

    try:
        asyncio.run(scenario())
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)
    assert not failures, "panels without data:\n" + "\n".join(failures)
    assert len(_queries()) >= 18


class _GrafanaStandIn(BaseHTTPRequestHandler):
    """The few endpoints of Grafana's HTTP API that a push uses, with Grafana's status codes and answers."""

    token = "glsa_test_token"
    folders: dict = {}
    datasources: dict = {}
    dashboards: dict = {}
    requests: list = []

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self._answer(401, {"message": "invalid API key"})
            return False
        return True

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.requests.append(("GET", self.path))
        if not self._authorised():
            return
        if self.path.startswith("/api/folders/"):
            uid = self.path.rsplit("/", 1)[1]
            return (
                self._answer(200, self.folders[uid])
                if uid in self.folders
                else self._answer(404, {"message": "folder not found"})
            )
        if self.path.startswith("/api/datasources/uid/"):
            uid = self.path.rsplit("/", 1)[1]
            return (
                self._answer(200, self.datasources[uid])
                if uid in self.datasources
                else self._answer(404, {"message": "Data source not found"})
            )
        self._answer(404, {"message": "not found"})  # fmt: skip

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(("POST", self.path))
        if not self._authorised():
            return
        if self.path == "/api/folders":
            self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"]}
            return self._answer(200, self.folders[body["uid"]])
        if self.path == "/api/datasources":
            self.datasources[body["uid"]] = body
            return self._answer(200, {"message": "Datasource added", "datasource": body})
        if self.path == "/api/dashboards/db":
            dashboard = body["dashboard"]
            if body.get("folderUid") not in self.folders:
                return self._answer(400, {"message": "folder not found"})
            version = self.dashboards.get(dashboard["uid"], {}).get("version", 0) + 1
            self.dashboards[dashboard["uid"]] = {"version": version, "body": body}
            return self._answer(
                200, {"status": "success", "uid": dashboard["uid"], "url": f"/d/{dashboard['uid']}", "version": version}
            )
        self._answer(404, {"message": "not found"})

    def log_message(self, *args):
        pass


@pytest.fixture
def grafana_stand_in():
    """No Grafana server can be installed here (not in Debian, PyPI or npm), so `dashboards push` talks to this
    stand-in over real HTTP; the grafana-client library and its requests are real."""
    for table in (_GrafanaStandIn.folders, _GrafanaStandIn.datasources, _GrafanaStandIn.dashboards):
        table.clear()
    _GrafanaStandIn.requests.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GrafanaStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_dashboards_push_creates_then_updates(grafana_stand_in):
    """A mock: Grafana cannot run here; see the grafana_stand_in fixture."""
    first = push_dashboards(grafana_stand_in, _GrafanaStandIn.token, prometheus_url="http://prometheus:9090")
    assert {r["uid"]: r["version"] for r in first} == {"binarycop-operations": 1, "binarycop-operator": 1}
    assert _GrafanaStandIn.datasources[DATASOURCE_UID]["url"] == "http://prometheus:9090"
    assert set(_GrafanaStandIn.folders) == {"binarycop"}
    stored = _GrafanaStandIn.dashboards["binarycop-operator"]["body"]
    assert stored["overwrite"] is True and stored["dashboard"]["id"] is None
    assert stored["dashboard"]["panels"] == json.loads((DASHBOARDS / "operator.json").read_text())["panels"]

    second = push_dashboards(grafana_stand_in, _GrafanaStandIn.token)
    assert {r["uid"]: r["version"] for r in second} == {"binarycop-operations": 2, "binarycop-operator": 2}
    assert sum(1 for method, path in _GrafanaStandIn.requests if (method, path) == ("POST", "/api/folders")) == 1


def test_dashboards_push_names_a_refused_token(grafana_stand_in):
    """A mock: Grafana cannot run here; see the grafana_stand_in fixture."""
    with pytest.raises(PushError, match="answered 401"):
        push_dashboards(grafana_stand_in, "wrong-token")
    result = subprocess.run(
        [sys.executable, "-m", "binarycop.cli", "dashboards", "push", "--url", grafana_stand_in, "--token", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "answered 401" in result.stderr and "nope" not in result.stderr


def test_dashboards_push_names_an_unreachable_grafana():
    url = f"http://admin:hunter2@127.0.0.1:{free_port()}"
    with pytest.raises(PushError, match="unreachable") as error:
        push_dashboards(url, None)
    assert "hunter2" not in str(error.value)
