"""Grafana dashboards: their structure, every panel's query against a real Prometheus scraping a real pipeline,
and `binarycop dashboards push` against a stand-in for Grafana's API."""

from __future__ import annotations

import asyncio
import json
import re
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
from names import CLASSES
from stats.status import THRESHOLD
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


def _datasources(dashboard: dict) -> list[tuple[str, dict]]:
    """(where, datasource) for every panel, panel target and query variable."""
    found = [
        (f"variable {v['name']}", v["datasource"]) for v in dashboard["templating"]["list"] if v["type"] == "query"
    ]
    for panel in dashboard["panels"]:
        found.append((panel["title"], panel["datasource"]))
        found += [(f"{panel['title']} / {t['refId']}", t["datasource"]) for t in panel["targets"] if "datasource" in t]
    return found


def test_dashboards_are_in_grafanas_import_form_with_a_datasource_variable():
    """What Grafana's UI import needs: a datasource input, a datasource variable every query reads through, and no
    datasource uid of the dashboard's own (provisioning resolves the variable to the default datasource)."""
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "binarycop.yaml").read_text())["datasources"][0]
    assert datasource["uid"] == DATASOURCE_UID and datasource["isDefault"] is True
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "binarycop.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["folderUid"] == "binarycop"
    dashboards = load_dashboards()
    assert sorted(d["uid"] for d in dashboards) == ["binarycop-operations", "binarycop-operator"]
    for dashboard in dashboards:
        assert dashboard["__inputs"] == [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": dashboard["__inputs"][0]["description"],
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ]
        variable = dashboard["templating"]["list"][0]
        assert (variable["name"], variable["type"], variable["query"]) == ("datasource", "datasource", "prometheus")
        assert variable["current"]["value"] == "${DS_PROMETHEUS}"  # the import form's answer lands here
        for where, used in _datasources(dashboard):
            assert used == {"type": "prometheus", "uid": "${datasource}"}, where
        assert DATASOURCE_UID not in json.dumps(dashboard)
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), dashboard["uid"]
        for panel in dashboard["panels"]:
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        required = {item["id"] for item in dashboard["__requires"] if item["type"] == "panel"}
        assert required == {panel["type"] for panel in dashboard["panels"]}


def _page_colours() -> dict[str, str]:
    script = (ROOT / "stats" / "page" / "page.js").read_text()
    found = re.findall(r"(\w+): '(#[0-9a-fA-F]{6})'", re.search(r"const COLOURS = \{([^}]*)\}", script).group(1))
    return {name: colour.lower() for name, colour in found}


def test_panels_colour_like_the_status_page():
    """Compliance turns green where the page does (THRESHOLD), counts carry no compliance colours, and every
    per-class panel gives each class the page's colour."""
    colours = _page_colours()
    assert sorted(colours) == sorted(CLASSES)
    compliance_steps = [{"color": "red", "value": None}, {"color": "green", "value": THRESHOLD}]
    for dashboard in load_dashboards():
        for panel in dashboard["panels"]:
            defaults = panel["fieldConfig"]["defaults"]
            steps = defaults.get("thresholds", {}).get("steps")
            if defaults.get("unit") == "percentunit":
                assert steps == compliance_steps, panel["title"]
            elif steps:
                assert steps != compliance_steps and all(step["value"] != 0.95 for step in steps), panel["title"]
            if any(t.get("legendFormat") == "{{mask_class}}" for t in panel["targets"]):
                overrides = {
                    o["matcher"]["options"]: next(p["value"] for p in o["properties"] if p["id"] == "color")
                    for o in panel["fieldConfig"]["overrides"]
                }
                fixed = {c: {**v, "fixedColor": v["fixedColor"].lower()} for c, v in overrides.items()}
                assert fixed == {c: {"mode": "fixed", "fixedColor": colours[c]} for c in CLASSES}, panel["title"]
    by_title = {panel["title"]: panel for dashboard in load_dashboards() for panel in dashboard["panels"]}
    pending = by_title["Counts waiting for Redis"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert pending == [{"color": "green", "value": None}, {"color": "red", "value": 1}]


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
        if self.path == "/api/dashboards/import":
            return self._import(body)
        self._answer(404, {"message": "not found"})

    def _import(self, body: dict) -> None:
        """Grafana's import: every ``__inputs`` entry must be answered by an input of its name, type and plugin
        (else 400, as Grafana's template evaluator refuses it), then each ``${NAME}`` is replaced by the answer."""
        if body.get("folderUid") not in self.folders:
            return self._answer(400, {"message": "folder not found"})
        answers = {item["name"]: item for item in body.get("inputs", [])}
        text = json.dumps(body["dashboard"])
        for wanted in body["dashboard"].get("__inputs", []):
            answer = answers.get(wanted["name"])
            if answer is None or (answer["type"], answer["pluginId"]) != (wanted["type"], wanted["pluginId"]):
                return self._answer(400, {"message": f"dashboard template input missing: {wanted['name']}"})
            if answer["type"] == "datasource" and answer["value"] not in self.datasources:
                return self._answer(400, {"message": f"data source not found: {answer['value']}"})
            text = text.replace("${" + wanted["name"] + "}", answer["value"])
        dashboard = json.loads(text)
        uid = dashboard["uid"]
        self.dashboards[uid] = {"imported": dashboard, "body": body}
        self._answer(200, {"uid": uid, "title": dashboard["title"], "imported": True, "importedUrl": f"/d/{uid}/x"})

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


def test_dashboards_push_imports_them_as_grafanas_ui_does(grafana_stand_in):
    """A mock: Grafana cannot run here; see the grafana_stand_in fixture. The recorded import request answers the
    dashboard's datasource input; what Grafana makes of it reads every query through the chosen datasource."""
    first = push_dashboards(grafana_stand_in, _GrafanaStandIn.token, prometheus_url="http://prometheus:9090")
    assert {r["uid"]: r["imported"] for r in first} == {"binarycop-operations": True, "binarycop-operator": True}
    assert _GrafanaStandIn.datasources[DATASOURCE_UID]["url"] == "http://prometheus:9090"
    assert set(_GrafanaStandIn.folders) == {"binarycop"}
    recorded = _GrafanaStandIn.dashboards["binarycop-operator"]
    request = recorded["body"]
    assert request["overwrite"] is True and request["dashboard"]["id"] is None
    assert request["inputs"] == [
        {"name": "DS_PROMETHEUS", "type": "datasource", "pluginId": "prometheus", "value": DATASOURCE_UID}
    ]
    assert request["dashboard"]["panels"] == json.loads((DASHBOARDS / "operator.json").read_text())["panels"]
    imported = recorded["imported"]
    assert "${DS_PROMETHEUS}" not in json.dumps(imported)
    assert imported["templating"]["list"][0]["current"]["value"] == DATASOURCE_UID
    assert all(used["uid"] == "${datasource}" for _, used in _datasources(imported))

    _GrafanaStandIn.datasources["venue-prom"] = {"uid": "venue-prom"}  # an operator's own Prometheus datasource
    second = push_dashboards(grafana_stand_in, _GrafanaStandIn.token, datasource_uid="venue-prom")
    assert [r["imported"] for r in second] == [True, True]
    assert _GrafanaStandIn.dashboards["binarycop-operations"]["imported"]["templating"]["list"][0]["current"] == {
        "text": "venue-prom",
        "value": "venue-prom",
    }
    assert sum(1 for method, path in _GrafanaStandIn.requests if (method, path) == ("POST", "/api/folders")) == 1
    with pytest.raises(PushError, match="answered 400.*data source not found: nowhere"):
        push_dashboards(grafana_stand_in, _GrafanaStandIn.token, datasource_uid="nowhere")


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
