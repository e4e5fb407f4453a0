"""``binarycop dashboards push``: create or update the Grafana dashboards through Grafana's HTTP API.

The dashboards (stable uids ``binarycop-operator`` and ``binarycop-operations``) live as JSON under
``dashboards/grafana/dashboards``; the same files are provisioned from disk by docker/compose.yaml and the
Kubernetes manifests. Pushing puts them in a folder ``binarycop`` and, given a Prometheus URL, creates the
datasource they name (uid ``binarycop-prometheus``) if Grafana lacks it.
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


def push_dashboards(url: str, token: str | None, prometheus_url: str | None = None, directory: Path = DASHBOARDS):
    """Create or update every dashboard; returns one result per dashboard (uid, title, url, version)."""
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
            _ensure_datasource(api, prometheus_url)
        results = []
        for dashboard in dashboards:
            body = {"dashboard": {**dashboard, "id": None}, "folderUid": FOLDER_UID, "overwrite": True}
            body["message"] = "binarycop dashboards push"
            answer = api.dashboard.update_dashboard(body)
            results.append(
                {
                    "uid": answer.get("uid", dashboard["uid"]),
                    "title": dashboard["title"],
                    "url": answer.get("url"),
                    "version": answer.get("version"),
                    "status": answer.get("status"),
                }
            )
    except GrafanaException as error:
        raise PushError(f"Grafana at {shown} answered {error.status_code}: {error.message}") from None
    except Exception as error:  # noqa: BLE001 - connection errors come from niquests/urllib3 in many types
        raise PushError(f"Grafana at {shown} unreachable: {type(error).__name__}: {error}") from None
    return results


def _ensure_datasource(api, prometheus_url: str) -> None:
    from grafana_client.client import GrafanaClientError

    try:
        api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    except GrafanaClientError as error:
        if error.status_code != 404:
            raise
        api.datasource.create_datasource(
            {
                "name": "Prometheus (binarycop)",
                "uid": DATASOURCE_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": prometheus_url,
            }
        )
        log.info("created datasource %s -> %s", DATASOURCE_UID, redact_url(prometheus_url))
