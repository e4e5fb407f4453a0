"""``binarycop dashboards render``: a picture of each Grafana dashboard drawn from a real Prometheus.

Not Grafana: the same panels (grid positions, queries, legends, units) queried from Prometheus's HTTP API
and drawn with OpenCV, for the README and for a quick look where no Grafana runs.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import cv2
import numpy as np

COLUMN, ROW = 56, 34  # pixels per Grafana grid unit
BACKGROUND, PANEL, GRID, TEXT, DIM = (23, 18, 17), (31, 27, 24), (60, 55, 50), (235, 235, 235), (150, 150, 150)
PALETTE = [(114, 199, 115), (80, 200, 250), (240, 140, 90), (110, 110, 240), (210, 120, 200), (200, 200, 90)]
FONT = cv2.FONT_HERSHEY_SIMPLEX
ALL_SELECTED = {"$camera": ".*", "$site": ".*"}


class Prometheus:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def _get(self, path: str, params: dict) -> list:
        with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(params)}", timeout=30) as response:
            answer = json.loads(response.read())
        if answer.get("status") != "success":
            raise RuntimeError(f"Prometheus refused {params.get('query')!r}: {answer}")
        return answer["data"]["result"]

    def instant(self, query: str) -> list:
        return self._get("/api/v1/query", {"query": query})

    def series(self, query: str, start: float, end: float, step: float) -> list:
        return self._get("/api/v1/query_range", {"query": query, "start": start, "end": end, "step": step})


def render_dashboard(dashboard: dict, prometheus: Prometheus, minutes: float = 10) -> tuple[np.ndarray, dict]:
    """The dashboard's picture and, per panel title, how many series it drew."""
    end = time.time()
    start = end - minutes * 60
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"]) * ROW + 50
    image = np.full((height, 24 * COLUMN, 3), BACKGROUND, np.uint8)
    cv2.putText(image, f"{dashboard['title']}  (last {minutes:g} min)", (12, 32), FONT, 0.8, TEXT, 2, cv2.LINE_AA)
    drawn = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        x0, y0 = grid["x"] * COLUMN + 4, grid["y"] * ROW + 50
        box = image[y0 : y0 + grid["h"] * ROW - 6, x0 : x0 + grid["w"] * COLUMN - 6]
        box[:] = PANEL
        cv2.putText(
            box, panel["title"], (8, 20), FONT, _fit(panel["title"], 0.5, box.shape[1] - 16, 1), TEXT, 1, cv2.LINE_AA
        )
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        results = []
        for target in panel["targets"]:
            query = substitute(target["expr"], minutes * 60)
            legend = target.get("legendFormat", "")
            if panel["type"] == "timeseries":
                step = max(1.0, (end - start) / 240)
                results += [(legend, s) for s in prometheus.series(query, start, end, step)]
            else:
                results += [(legend, s) for s in prometheus.instant(query)]
        drawn[panel["title"]] = len(results)
        body = box[28:, :]
        if panel["type"] == "timeseries":
            _timeseries(body, results, unit, start, end)
        elif panel["type"] == "piechart":
            _pie(body, results)
        else:
            steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps")
            _values(body, results, unit, big=panel["type"] == "stat", steps=steps)
    return image, drawn


def render_all(dashboards: list[dict], prometheus_url: str, out: Path, minutes: float = 10) -> dict[str, dict]:
    out.mkdir(parents=True, exist_ok=True)
    prometheus = Prometheus(prometheus_url)
    report = {}
    for dashboard in dashboards:
        image, drawn = render_dashboard(dashboard, prometheus, minutes)
        path = out / f"{dashboard['uid']}.png"
        cv2.imwrite(str(path), image)
        report[str(path)] = drawn
    return report


def substitute(expr: str, range_seconds: float) -> str:
    """The query as Grafana sends it with every site and camera selected and a time range this long."""
    for name, value in {**ALL_SELECTED, "$__range": f"{int(range_seconds)}s"}.items():
        expr = expr.replace(name, value)
    return expr


def _label(legend: str, metric: dict) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), legend) or json.dumps(metric)


def _fit(text: str, scale: float, width: int, thickness: int) -> float:
    """The font scale, at most ``scale``, at which ``text`` fits in ``width`` pixels."""
    needed = cv2.getTextSize(text, FONT, scale, thickness)[0][0]
    return scale if needed <= width else scale * width / needed


def _format(value: float, unit: str | None) -> str:
    if math.isnan(value):
        return "-"
    if unit == "percentunit":
        return f"{100 * value:.1f} %"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}".rstrip("0").rstrip(".")


def _timeseries(body: np.ndarray, results: list, unit: str | None, start: float, end: float) -> None:
    h, w = body.shape[:2]
    left, right, top, bottom = 60, 150, 6, 22
    values = [float(v) for _, s in results for _, v in s["values"] if not math.isnan(float(v))]
    if not values:
        cv2.putText(body, "no data", (w // 2 - 30, h // 2), FONT, 0.5, DIM, 1, cv2.LINE_AA)
        return
    low, high = (0.0, 1.0) if unit == "percentunit" else (min(0.0, min(values)), max(values) or 1.0)
    high = high if high > low else low + 1
    for i in range(5):
        y = top + int((h - top - bottom) * i / 4)
        cv2.line(body, (left, y), (w - right, y), GRID, 1)
        cv2.putText(body, _format(high - (high - low) * i / 4, unit), (4, y + 4), FONT, 0.35, DIM, 1, cv2.LINE_AA)
    minutes = (end - start) / 60
    cv2.putText(body, f"-{minutes:g} min", (left, h - 6), FONT, 0.35, DIM, 1, cv2.LINE_AA)
    cv2.putText(body, "now", (w - right - 24, h - 6), FONT, 0.35, DIM, 1, cv2.LINE_AA)
    for index, (legend, series) in enumerate(results):
        color = PALETTE[index % len(PALETTE)]
        points = [
            (
                left + int((w - left - right) * (float(t) - start) / (end - start)),
                top + int((h - top - bottom) * (high - float(v)) / (high - low)),
            )
            for t, v in series["values"]
            if not math.isnan(float(v))
        ]
        if len(points) > 1:
            cv2.polylines(body, [np.array(points, np.int32)], False, color, 2, cv2.LINE_AA)
        y = top + 14 + 16 * index
        cv2.line(body, (w - right + 8, y - 4), (w - right + 22, y - 4), color, 3)
        cv2.putText(body, _label(legend, series["metric"])[:18], (w - right + 26, y), FONT, 0.4, TEXT, 1, cv2.LINE_AA)


THRESHOLD_COLOURS = {"red": (80, 80, 230), "orange": (60, 160, 250), "green": (114, 199, 115)}


def _values(body: np.ndarray, results: list, unit: str | None, big: bool, steps: list | None = None) -> None:
    if not results:
        cv2.putText(body, "no data", (10, 30), FONT, 0.5, DIM, 1, cv2.LINE_AA)
        return
    scale = 1.1 if big and len(results) <= 2 else 0.45
    step = int(44 * scale) if big else 18
    for index, (legend, series) in enumerate(results[: max(1, (body.shape[0] - 10) // step)]):
        value = _format(float(series["value"][1]), unit)
        label = _label(legend, series["metric"])
        color = PALETTE[index % len(PALETTE)] if big else TEXT
        if steps:  # Grafana's threshold colours: the last step the value reaches
            number = float(series["value"][1])
            reached = [step for step in steps if step["value"] is None or number >= step["value"]]
            color = THRESHOLD_COLOURS.get(reached[-1]["color"], color) if reached else color
        y = 10 + step * (index + 1) - (step // 4)
        text = f"{label}: {value}"
        thickness = 2 if big else 1
        size = _fit(text, scale, body.shape[1] - 20, thickness)
        cv2.putText(body, text, (10, y), FONT, size, color, thickness, cv2.LINE_AA)


def _pie(body: np.ndarray, results: list) -> None:
    values = [(legend, s, max(0.0, float(s["value"][1]))) for legend, s in results]
    total = sum(v for _, _, v in values)
    h, w = body.shape[:2]
    if not total:
        cv2.putText(body, "no data", (10, 30), FONT, 0.5, DIM, 1, cv2.LINE_AA)
        return
    radius = min(h, w // 2) // 2 - 6
    center = (radius + 10, h // 2)
    angle = -90.0
    for index, (legend, series, value) in enumerate(values):
        sweep = 360 * value / total
        color = PALETTE[index % len(PALETTE)]
        cv2.ellipse(body, center, (radius, radius), 0, angle, angle + sweep, color, -1, cv2.LINE_AA)
        angle += sweep
        text = f"{_label(legend, series['metric'])} {value:.0f}"
        cv2.putText(body, text, (2 * radius + 20, 20 + 18 * index), FONT, 0.42, color, 1, cv2.LINE_AA)
