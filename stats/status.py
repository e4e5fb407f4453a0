"""Per-camera counts and compliance for the built-in status page (from Redis, like /metrics)."""

from __future__ import annotations

from accel.arch import CLASSES
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


PAGE = """<!doctype html>
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
<script>
const cell = v => `<td>${v}</td>`;
async function refresh(){
  try{
    const status = await (await fetch('/api/status')).json();
    const rows = Object.entries(status.cameras).map(([name, c]) => '<tr>' + cell(name) +
      `<td class="${c.up ? 'up' : 'down'}">${c.up ? 'up' : 'down'}</td>` +
      ['correct','nose','nose_mouth','chin','no_mask'].map(k => cell(c.classes[k] ?? 0)).join('') +
      cell(c.compliance === null ? '–' : (100 * c.compliance).toFixed(1) + ' %') +
      cell(Object.values(c.people).reduce((a, b) => a + b, 0)) +
      ['processed','dropped','failed'].map(k => cell(c.frames[k] ?? 0)).join('') + '</tr>');
    document.getElementById('rows').innerHTML = rows.join('') || '<tr><td colspan="12">no cameras yet</td></tr>';
  }catch(e){document.getElementById('rows').innerHTML='<tr><td colspan="12">server unreachable</td></tr>';}
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""
