"""``binarycop dashboards push``: create or update the Grafana dashboards through Grafana's HTTP API.

The dashboards (stable uids ``binarycop-operator`` and ``binarycop-operations``) live as JSON under
``dashboards/grafana/dashboards`` in Grafana's import form: an ``__inputs`` entry ``DS_PROMETHEUS`` and a
``datasource`` template variable every panel reads through, no datasource uid of their own. The same files are
provisioned from disk by docker/compose.yaml (the variable then takes the default datasource) or imported through
Grafana's UI (which asks for the datasource). Pushing imports them the way the UI does (``/api/dashboards/import``,
the datasource answered by uid) into a folder ``binarycop`` and, given a Prometheus URL, first creates that
datasource (default uid ``binarycop-prometheus``) if Grafana lacks it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from binarycop.config import redact_url

log = logging.getLogger(__name__)
DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards" / "grafana" / "dashboards"
FOLDER_UID = "binarycop"
DATASOURCE_UID = "binarycop-prometheus"


class PushError(RuntimeError):
    """Grafana refused or could not be reached; the message says which and why."""


def load_dashboards(directory: Path = DASHBOARDS) -> list[dict]:
    files = sorted(directory.glob("*.json"))
    if not files:
        raise PushError(f"no dashboard JSON files in {directory}")
    dashboards = []
    for path in files:
        try:
            dashboard = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise PushError(f"{path}: not valid JSON: {error}") from None
        if not dashboard.get("uid"):
            raise PushError(f"{path}: the dashboard has no uid (updates need a stable one)")
        dashboards.append(dashboard)
    return dashboards


def import_request(dashboard: dict, datasource_uid: str = DATASOURCE_UID) -> dict:
    """Grafana's import request for ``dashboard``: every one of its ``__inputs`` answered (a datasource input by
    ``datasource_uid``), into the ``binarycop`` folder, replacing an older version."""
    inputs = []
    for item in dashboard.get("__inputs", []):
        if item.get("type") != "datasource":
            raise PushError(f"dashboard {dashboard['uid']}: input {item.get('name')} is not a datasource input")
        inputs.append(
            {"name": item["name"], "type": "datasource", "pluginId": item["pluginId"], "value": datasource_uid}
        )
    return {"dashboard": {**dashboard, "id": None}, "folderUid": FOLDER_UID, "overwrite": True, "inputs": inputs}


def push_dashboards(
    url: str,
    token: str | None,
    prometheus_url: str | None = None,
    directory: Path = DASHBOARDS,
    datasource_uid: str = DATASOURCE_UID,
):
    """Import (create or replace) every dashboard reading the datasource ``datasource_uid``; returns one result
    per dashboard (uid, title, url, imported)."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException

    dashboards = load_dashboards(directory)
    api = GrafanaApi.from_url(url, credential=token or None, timeout=10)
    shown = redact_url(url)
    try:
        try:
            api.folder.get_folder(FOLDER_UID)
        except GrafanaClientError as error:
            if error.status_code != 404:
                raise
            api.folder.create_folder("binarycop", uid=FOLDER_UID)
            log.info("created folder binarycop in %s", shown)
        if prometheus_url:
            _ensure_datasource(api, prometheus_url, datasource_uid)
        results = []
        for dashboard in dashboards:
            answer = api.client.POST("/dashboards/import", json=import_request(dashboard, datasource_uid))
            results.append(
                {
                    "uid": answer.get("uid") or dashboard["uid"],
                    "title": dashboard["title"],
                    "url": answer.get("importedUrl"),
                    "imported": bool(answer.get("imported")),
                }
            )
    except GrafanaException as error:
        raise PushError(f"Grafana at {shown} answered {error.status_code}: {error.message}") from None
    except Exception as error:  # noqa: BLE001 - connection errors come from niquests/urllib3 in many types
        raise PushError(f"Grafana at {shown} unreachable: {type(error).__name__}: {error}") from None
    return results


def _ensure_datasource(api, prometheus_url: str, uid: str) -> None:
    from grafana_client.client import GrafanaClientError

    try:
        api.datasource.get_datasource_by_uid(uid)
    except GrafanaClientError as error:
        if error.status_code != 404:
            raise
        api.datasource.create_datasource(
            {
                "name": "Prometheus (binarycop)",
                "uid": uid,
                "type": "prometheus",
                "access": "proxy",
                "url": prometheus_url,
            }
        )
        log.info("created datasource %s -> %s", uid, redact_url(prometheus_url))
