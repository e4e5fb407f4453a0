"""What the built-in page shows, as JSON (``/api/status``): the venue's headline, and per camera and per site,
compliance of people now (the last minutes, with the people it rests on and a Wilson interval), the last hour
minute by minute, and camera health.

Compliance is the share of *people* (each confirmed track counted once, with the class most of its frames show) who
wore the mask correctly, as the alerts read it. The per-frame face counts, which weigh a person by the time they
stay in view, are kept beside it under ``faces``, a secondary figure.

Everything comes from Redis (checked by :mod:`stats.snapshot` and :mod:`stats.history`), except what only the
process running a camera knows (its redacted URL, detector and model), passed in as ``local``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from pathlib import Path

from names import CLASSES
from stats.exporter import metric_families
from stats.history import Bucket
from stats.redis_store import BUILD_KEY, CAMERA_SEEN_KEY, FRAME_OUTCOMES, NO_SITE, SITE_KEY
from stats.schema import CAMERA_ERROR_KEY, LAST_FRAME_KEY
from stats.snapshot import camera_error

# The alert rules' figures (dashboards/rules/binarycop.rules.yml; tests/test_page.py checks they agree): compliance
# of people under THRESHOLD pages, but only with at least this many people a minute (an empty hall never pages).
THRESHOLD = 0.8
CAMERA_MIN_PEOPLE_PER_MINUTE = 1
SITE_MIN_PEOPLE_PER_MINUTE = 2
NOW_MINUTES = 5  # "now": the last five minute buckets, the current one included (the rules' rate5m)
CHART_MINUTES = 60
Z_95 = 1.959964


def wilson_interval(correct: int, total: int, z: float = Z_95) -> list[float] | None:
    """The 95 % Wilson score interval of the share ``correct / total``; None without faces.

    Example:
        >>> wilson_interval(3, 3), wilson_interval(300, 300)
        ([0.4385, 1.0], [0.9874, 1.0])
    """
    if total <= 0:
        return None
    share = correct / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def _zero_classes() -> dict[str, int]:
    return dict.fromkeys(CLASSES, 0)


def _share(classes: dict[str, int]) -> dict:
    """By class, their total and the share worn correctly (None when there are none)."""
    total = sum(classes.values())
    return {
        "classes": classes,
        "total": total,
        "compliance": round(classes["correct"] / total, 4) if total else None,
    }


def _sum_people(buckets: list[tuple[int, Bucket]], camera_names: set[str] | None = None) -> dict[str, int]:
    """People by class in ``buckets``, of ``camera_names`` (None: every camera)."""
    people = _zero_classes()
    for _, bucket in buckets:
        for (kind, camera, *rest), count in bucket.items():
            if kind == "people" and (camera_names is None or camera in camera_names):
                people[rest[1]] += count
    return people


def _window(buckets: list[tuple[int, Bucket]], camera_names: set[str], min_people_per_minute: float) -> dict:
    """People, faces, frames and reconnects of ``camera_names`` summed over ``buckets``; compliance of people with
    its interval and ``enough`` (as many people as the alert rule needs before it pages); faces' share beside."""
    faces = _zero_classes()
    frames, reconnects = dict.fromkeys(FRAME_OUTCOMES, 0), 0
    for _, bucket in buckets:
        for (kind, camera, *rest), count in bucket.items():
            if camera not in camera_names:
                continue
            if kind == "faces":
                faces[rest[1]] += count
            elif kind == "frames":
                frames[rest[0]] += count
            elif kind == "reconnects":
                reconnects += count
    people = _share(_sum_people(buckets, camera_names))
    people["interval"] = wilson_interval(people["classes"]["correct"], people["total"])
    people["enough"] = people["total"] >= min_people_per_minute * len(buckets)
    faces_share = _share(faces)
    return {"minutes": len(buckets), "people": people, "faces": faces_share, "frames": frames, "reconnects": reconnects}


def _chart(buckets: list[tuple[int, Bucket]], camera_names: set[str]) -> dict:
    """Minute by minute: people counted by class, and faces seen (the secondary figure); arrays, oldest first."""
    faces = []
    people = {name: [] for name in CLASSES}
    for minute, bucket in buckets:
        faces.append(sum(n for (kind, camera, *_), n in bucket.items() if kind == "faces" and camera in camera_names))
        for name, count in _sum_people([(minute, bucket)], camera_names).items():
            people[name].append(count)
    return {"start_minute": buckets[0][0] if buckets else None, "people": people, "faces": faces}


def _totals(counts: dict[str, dict[str, str]], now: float) -> dict[str, dict]:
    """Per camera since counting began: up (fresh), faces and people by class, frames, reconnects (from /metrics'
    view)."""
    cameras: dict[str, dict] = {}

    def entry(name: str) -> dict:
        return cameras.setdefault(name, _totals_empty())

    for family in metric_families(counts, now):
        for sample in family.samples:
            labels = sample.labels
            if family.name == "binarycop_faces_classified":
                entry(labels["camera"])["faces"][labels["mask_class"]] += int(sample.value)
            elif family.name == "binarycop_people":
                entry(labels["camera"])["people"][labels["mask_class"]] += int(sample.value)
            elif family.name == "binarycop_frames":
                entry(labels["camera"])["frames"][labels["outcome"]] = int(sample.value)
            elif family.name == "binarycop_camera_up":
                entry(labels["camera"])["up"] = sample.value == 1.0
            elif family.name == "binarycop_camera_reconnects":
                entry(labels["camera"])["reconnects"] = int(sample.value)
    return cameras


def _models(counts: dict[str, dict[str, str]], now: float) -> list[str]:
    """backend/model of the ingesters that reported in the last 30 s (from build info)."""
    reported = counts.get(BUILD_KEY, {}).items()
    return sorted({"/".join(name.split("|")[1:]) for name, at in reported if now - float(at) < 30})


def camera_status(
    counts: dict[str, dict[str, str]],
    history: list[tuple[int, Bucket]] | None = None,
    now: float = 0.0,
    local: dict[str, dict] | None = None,
    today: tuple[float, list[tuple[int, Bucket]]] | None = None,
) -> dict:
    """``/api/status`` from a clean snapshot (:func:`stats.snapshot.clean_counts`), the last hour's buckets
    (:func:`stats.history.read_history`, oldest first), what this process knows of its own cameras (``local``:
    camera -> {"url", "detector", "model"}) and today's people buckets with the day's start
    (:class:`stats.today.TodayPeople`). The fields are listed in docs/page.md."""
    history = history or []
    local = local or {}
    recent = history[-NOW_MINUTES:]
    cameras = _totals(counts, now)
    for name in local:  # a camera of this process not yet in Redis (its first frame not counted yet)
        cameras.setdefault(name, _totals_empty())
    sites = counts.get(SITE_KEY, {})
    seen = counts.get(CAMERA_SEEN_KEY, {})
    models = _models(counts, now)
    for name, camera in cameras.items():
        camera["people"], camera["faces"] = _share(camera["people"]), _share(camera["faces"])
        camera["frames"] = {outcome: camera["frames"].get(outcome, 0) for outcome in FRAME_OUTCOMES}
        camera["site"] = sites.get(name, local.get(name, {}).get("site") or NO_SITE)
        camera["seen_ago_s"] = round(now - float(seen[name]), 1) if name in seen else None
        _health(camera, name, counts, now)
        mine = local.get(name, {})
        camera["url"] = mine.get("url")
        camera["detector"] = mine.get("detector")
        camera["model"] = mine.get("model") or (models[0] if len(models) == 1 else None)
        camera["now"] = _window(recent, {name}, CAMERA_MIN_PEOPLE_PER_MINUTE)
        camera["chart"] = _chart(history, {name})
    by_site: dict[str, list[str]] = {}
    for name, camera in sorted(cameras.items()):
        if camera["site"] != NO_SITE:
            by_site.setdefault(camera["site"], []).append(name)
    return {
        "now": round(now, 3),
        "threshold": THRESHOLD,
        "now_minutes": NOW_MINUTES,
        "chart_minutes": CHART_MINUTES,
        "venue": _venue(cameras, history, today),
        "cameras": dict(sorted(cameras.items())),
        "sites": {
            site: {
                "cameras": names,
                "up": sum(cameras[name]["up"] for name in names),
                "now": _window(recent, set(names), SITE_MIN_PEOPLE_PER_MINUTE),
                "chart": _chart(history, set(names)),
            }
            for site, names in sorted(by_site.items())
        },
    }


def _venue(cameras: dict[str, dict], history: list[tuple[int, Bucket]], today) -> dict:
    """The headline over every camera: people's compliance now and today, cameras up, people in the last hour."""
    names = set(cameras)
    now = _window(history[-NOW_MINUTES:], names, SITE_MIN_PEOPLE_PER_MINUTE)["people"]
    day_start, day_buckets = today if today is not None else (None, [])
    return {
        "cameras": len(cameras),
        "up": sum(camera["up"] for camera in cameras.values()),
        "now": now,
        "today": {**_share(_sum_people(day_buckets, names)), "since": day_start},
        "people_last_hour": sum(_sum_people(history, names).values()),
    }


def _health(camera: dict, name: str, counts: dict[str, dict[str, str]], now: float) -> None:
    """``last_error`` (null or {"reason", "message", "since"}) and ``last_frame_age_s`` (null: no frame yet)."""
    last_frame = counts.get(LAST_FRAME_KEY, {}).get(name)
    camera["last_frame_age_s"] = round(max(0.0, now - float(last_frame)), 1) if last_frame else None
    camera["last_error"] = camera_error(counts.get(CAMERA_ERROR_KEY, {}).get(name, ""))


def _totals_empty() -> dict:
    return {"up": False, "faces": _zero_classes(), "people": _zero_classes(), "frames": {}, "reconnects": 0}


def status_json(status: dict) -> str:
    """JSON with ``<``, ``>`` and ``&`` as escapes: a name or URL holding markup stays inert even where the JSON is
    pasted into HTML or sniffed as it."""
    return json.dumps(status).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


PAGE_DIR = Path(__file__).resolve().parent / "page"


def page_with_policy(html_name: str, script_name: str) -> tuple[str, str, str]:
    """(page, its script, its Content-Security-Policy): the script inlined, and only it allowed to run."""
    script = (PAGE_DIR / script_name).read_text()
    style = (PAGE_DIR / "page.css").read_text()
    html = (PAGE_DIR / html_name).read_text().replace("/*STYLE*/", style).replace("/*SCRIPT*/", script)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html, script, policy


# The page's script builds the DOM with textContent and setAttribute only: names come from Redis and config,
# which are data, never markup.
PAGE, SCRIPT, PAGE_POLICY = page_with_policy("index.html", "page.js")
