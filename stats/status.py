"""Per-camera counts and compliance for the built-in status page (from Redis, like /metrics)."""

from __future__ import annotations

import base64
import hashlib

from names import CLASSES
from stats.exporter import metric_families


def camera_status(counts: dict[str, dict[str, str]]) -> dict:
    """{"cameras": {name: {"up", "classes": {class: n}, "frames": {outcome: n}, "compliance"}}}."""
    cameras: dict[str, dict] = {}

    def entry(name: str) -> dict:
        return cameras.setdefault(
            name,
            {
                "up": False,
                "classes": dict.fromkeys(CLASSES, 0),
                "people": dict.fromkeys(CLASSES, 0),
                "frames": {},
                "compliance": None,
            },
        )

    for family in metric_families(counts):
        for sample in family.samples:
            labels = sample.labels
            if family.name == "binarycop_faces_classified":
                classes = entry(labels["camera"])["classes"]
                classes[labels["mask_class"]] = classes.get(labels["mask_class"], 0) + int(sample.value)
            elif family.name == "binarycop_people":
                people = entry(labels["camera"])["people"]
                people[labels["mask_class"]] = people.get(labels["mask_class"], 0) + int(sample.value)
            elif family.name == "binarycop_frames":
                entry(labels["camera"])["frames"][labels["outcome"]] = int(sample.value)
            elif family.name == "binarycop_camera_up":
                entry(labels["camera"])["up"] = sample.value == 1.0
    for camera in cameras.values():
        total = sum(camera["classes"].values())
        camera["compliance"] = round(camera["classes"]["correct"] / total, 4) if total else None
    return {"cameras": dict(sorted(cameras.items()))}


# The page's script builds rows with textContent only: names come from Redis, and Redis is data, never markup.
SCRIPT = """
const CLASSES = ['correct', 'nose', 'nose_mouth', 'chin', 'no_mask'];
const OUTCOMES = ['processed', 'dropped', 'failed'];
function row(cells) {
  const tr = document.createElement('tr');
  for (const [text, className] of cells) {
    const td = document.createElement('td');
    td.textContent = String(text);
    if (className) td.className = className;
    tr.appendChild(td);
  }
  return tr;
}
function message(text) {
  const tr = document.createElement('tr'), td = document.createElement('td');
  td.colSpan = 12;
  td.textContent = text;
  tr.appendChild(td);
  return tr;
}
async function refresh() {
  const body = document.getElementById('rows');
  try {
    const status = await (await fetch('/api/status')).json();
    const rows = Object.entries(status.cameras).map(([name, c]) => row([
      [name],
      [c.up ? 'up' : 'down', c.up ? 'up' : 'down'],
      ...CLASSES.map(k => [Number(c.classes[k] ?? 0)]),
      [c.compliance === null ? '–' : (100 * Number(c.compliance)).toFixed(1) + ' %'],
      [Object.values(c.people).reduce((a, b) => a + Number(b), 0)],
      ...OUTCOMES.map(k => [Number(c.frames[k] ?? 0)]),
    ]));
    body.replaceChildren(...(rows.length ? rows : [message('no cameras yet')]));
  } catch (e) {
    body.replaceChildren(message('server unreachable'));
  }
}
refresh(); setInterval(refresh, 2000);
"""
PAGE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>binarycop</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse}td,th{padding:.35rem .8rem;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}.up{color:#2a7}.down{color:#c33}
</style></head><body>
<h1>binarycop: face-mask compliance</h1>
<p>Faces classified per camera (every detect frame counts). Refreshes every 2 s.
Raw figures: <a href="/metrics">/metrics</a>.</p>
<table><thead><tr><th>camera</th><th>state</th><th>correct</th><th>nose</th><th>nose_mouth</th>
<th>chin</th><th>no_mask</th><th>compliance</th><th>people</th><th>frames processed</th><th>dropped</th>
<th>failed</th></tr></thead>
<tbody id="rows"><tr><td colspan="12">loading…</td></tr></tbody></table>
<script>"""
    + SCRIPT
    + """</script></body></html>
"""
)
# Only this page's own script may run (an injected one, or an inline handler, is refused by the browser).
PAGE_POLICY = (
    "default-src 'none'; script-src 'sha256-"
    + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    + "'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
