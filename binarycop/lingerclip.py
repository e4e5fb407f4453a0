"""Is a person's class, voted over all their frames, right more often than one frame's? Measured on clips whose
people are known: the bundled demo clip, and a clip with lingering people built here.

The lingering clip puts MaskedFace-Net faces (held out from training first, and *not* filtered by the classifier, so
frames are misread as they would be) in four places of a generated background. In each place people come one after
another: most pass by in 2-4 s, some stay 20-90 s, and those who stay wear the mask wrongly more often (a queue at a
counter), so the per-frame face figure, which weighs each person by their time in view, drifts from the truth.

``measure`` runs the server's own detector, classifier and tracker (its default settings, at ``detect_fps``) over a
clip and compares with the truth: compliance of people as the tracker counts it, and of faces per frame; and per
person, how often the class voted over all their frames, the first ``min_hits`` frames' vote (what the tracker counted
before) and a single frame are right. ``python -m binarycop.lingerclip --data ../shared/data`` prints both clips'
figures as JSON (docs/metrics-and-alerts.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

from binarycop.config import ClassifierConfig, DetectorConfig, TrackingConfig
from binarycop.democlip import CLIP, FACE_PX, FPS, HEIGHT, SLOTS, TRUTH, WIDTH, _background, _positions

LINGER_PX = 64  # faces as a camera over a doorway sees them: small enough that single frames are misread at times
NOISE_SIGMA = 6  # sensor noise, new in every frame
PASS_SECONDS, STAY_SECONDS, GAP_SECONDS = (2, 4), (20, 90), 1.5
STAY_SHARE = 0.3
PASSING = {"correct": 0.6, "nose": 0.2, "nose_mouth": 0.1, "chin": 0.1}  # class shares of those passing by
STAYING = {"correct": 0.3, "nose": 0.4, "nose_mouth": 0.2, "chin": 0.1}  # of those who stay


def _schedule(rng: np.random.Generator, seconds: float, passing: dict, staying: dict) -> list[list[tuple]]:
    """Per place, the people in turn as (first frame, last frame + 1, class)."""
    places = []
    for _ in SLOTS:
        people, frame = [], int(rng.uniform(0, 2) * FPS)
        while True:
            stays = rng.random() < STAY_SHARE
            low, high = STAY_SECONDS if stays else PASS_SECONDS
            shares = staying if stays else passing
            name = str(rng.choice(list(shares), p=list(shares.values())))
            end = frame + int(rng.uniform(low, high) * FPS)
            if end > seconds * FPS:
                break
            people.append((frame, end, name))
            frame = end + int(GAP_SECONDS * FPS)
        places.append(people)
    return places


def _synthetic_faces(data: Path, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """MaskedFace-Net faces at LINGER_PX, those held out from training first."""
    from lab.dataset import split_of

    faces = {}
    for name in SLOTS:
        paths = sorted((data / "maskedface" / name).glob("*.jpg"))
        held = [p for p in paths if split_of(f"ffhq:{p.stem[:5]}")]
        chosen = (list(rng.permutation(held)) + list(rng.permutation([p for p in paths if p not in held])))[:80]
        faces[name] = [cv2.resize(cv2.imread(str(p)), (LINGER_PX, LINGER_PX), cv2.INTER_AREA) for p in chosen]
    return faces


REAL_MIN_PX = 40
REAL_CONTEXT = 1.8  # a real face is cut with this much of its surroundings (a head, not a face box)
REAL_PASSING = {"correct": 0.55, "nose": 0.15, "nose_mouth": 0.1, "chin": 0.05, "no_mask": 0.15}
REAL_STAYING = {"correct": 0.3, "nose": 0.3, "nose_mouth": 0.2, "chin": 0.05, "no_mask": 0.15}


def _real_faces(data: Path, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """Real faces of known class cut from ``scenes/`` (>= REAL_MIN_PX): masks worn wrongly by their hand-labelled
    position (``positions.csv``), correct and no mask by their VOC label."""
    import csv
    import xml.etree.ElementTree as ElementTree

    scenes = data / "scenes"
    boxes: dict[str, list[tuple[str, list[int]]]] = defaultdict(list)
    for row in csv.DictReader((scenes / "positions.csv").open()):
        boxes[row["position"]].append((row["image"], [int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")]))
    labels = {"with_mask": "correct", "without_mask": "no_mask"}
    for path in sorted((scenes / "annotations").glob("*.xml")):
        root = ElementTree.parse(path).getroot()
        for item in root.iter("object"):
            name = labels.get(item.findtext("name"))
            if name:
                box = [int(float(item.findtext(f"bndbox/{k}"))) for k in ("xmin", "ymin", "xmax", "ymax")]
                boxes[name].append((root.findtext("filename"), box))
    faces = {}
    for name in REAL_STAYING:
        large = [(image, box) for image, box in boxes[name] if min(box[2] - box[0], box[3] - box[1]) >= REAL_MIN_PX]
        chosen = [large[i] for i in rng.permutation(len(large))[:80]]
        faces[name] = [
            face for face in (_cut(scenes / "images" / image, box) for image, box in chosen) if face is not None
        ]
    return faces


def _cut(path: Path, box: list[int]) -> np.ndarray | None:
    """The face of ``box`` with REAL_CONTEXT of its surroundings, square, at LINGER_PX."""
    image = cv2.imread(str(path))
    if image is None:
        return None
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = REAL_CONTEXT * max(box[2] - box[0], box[3] - box[1]) / 2
    x1, y1 = int(max(0, centre_x - half)), int(max(0, centre_y - half))
    x2, y2 = int(min(image.shape[1], centre_x + half)), int(min(image.shape[0], centre_y + half))
    if min(x2 - x1, y2 - y1) < REAL_MIN_PX:
        return None
    return cv2.resize(image[y1:y2, x1:x2], (LINGER_PX, LINGER_PX), interpolation=cv2.INTER_AREA)


def _place(slot: int, frame: int) -> tuple[int, int]:
    """Top-left corner of place ``slot`` at ``frame``: a slow sway, as people stand and shift."""
    gap = WIDTH // len(SLOTS)
    drift = int(10 * math.sin(2 * math.pi * frame / 37 + slot))
    return gap * slot + (gap - LINGER_PX) // 2 + drift, (HEIGHT - LINGER_PX) // 2 + int(6 * math.cos(frame / 23 + slot))


def build_lingering(
    data: Path, out: Path, seconds: float = 240, seed: int = 0, real: bool = False
) -> tuple[Path, Path]:
    """Write ``out``/lingering.mp4 and its truth ``lingering.json`` (people with their class and frames, and every
    frame's faces as [person, x1, y1, x2, y2]); ``real``: real faces from ``scenes/`` instead of MaskedFace-Net's."""
    rng = np.random.default_rng(seed)
    background = _background(rng)
    faces = _real_faces(data, rng) if real else _synthetic_faces(data, rng)
    passing, staying = (REAL_PASSING, REAL_STAYING) if real else (PASSING, STAYING)
    inset = int(LINGER_PX * (1 - 1 / REAL_CONTEXT) / 2) if real else 0  # where the face is in its picture
    people, pictures = [], []
    for slot, schedule in enumerate(_schedule(rng, seconds, passing, staying)):
        for first, end, name in schedule:
            pool = faces[name]
            pictures.append(pool.pop(0) if len(pool) > 1 else pool[0])
            people.append({"place": slot, "first": first, "end": end, "class": name})
    out.mkdir(parents=True, exist_ok=True)
    clip, truth = out / "lingering.mp4", out / "lingering.json"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    truth_frames = []
    for index in range(int(seconds * FPS)):  # written as drawn: minutes of frames do not fit in memory
        image, here = background.copy(), []
        for person_id, person in enumerate(people):
            if person["first"] <= index < person["end"]:
                x, y = _place(person["place"], index)
                image[y : y + LINGER_PX, x : x + LINGER_PX] = pictures[person_id]
                here.append([person_id, x + inset, y + inset, x + LINGER_PX - inset, y + LINGER_PX - inset])
        writer.write(np.clip(image + rng.normal(0, NOISE_SIGMA, image.shape), 0, 255).astype(np.uint8))
        truth_frames.append(here)
    writer.release()
    truth.write_text(json.dumps({"fps": FPS, "people": people, "frames": truth_frames}) + "\n")
    return clip, truth


def demo_truth() -> dict:
    """The bundled demo clip's truth in the lingering clip's form: its people, and each frame's faces' boxes."""
    demo = json.loads(TRUTH.read_text())
    frames = []
    for index in range(len(demo["frames"])):
        here = [(i, p["place"]) for i, p in enumerate(demo["people"]) if p["first"] <= index < p["end"]]
        boxes = [(i, *_positions(index)[place]) for i, place in here]
        frames.append([[i, x, y, x + FACE_PX, y + FACE_PX] for i, x, y in boxes])
    return {"fps": demo["fps"], "people": demo["people"], "frames": frames}


def _sampled(count: int, fps: float, detect_fps: float) -> list[int]:
    step = fps / detect_fps
    return sorted({int(round(i * step)) for i in range(int(count / step + 0.5))} & set(range(count)))


def _follow(
    clip: Path, truth: dict, detect_fps: float, detector_config: DetectorConfig | None = None
) -> tuple[list, dict, Counter]:
    """The server's detector, classifier and tracker over the clip's sampled frames. Returns (people the tracker
    counted as (zone, class)), per track [(person or None, class) per frame], faces by class)."""
    from accel import make_classifier
    from detector import make_detector
    from detector.tracking import FaceTracker

    tracking, classifier_config = TrackingConfig(), ClassifierConfig()
    detector = make_detector(detector_config or DetectorConfig())
    classifier = make_classifier(classifier_config.backend, classifier_config.model)
    tracker = FaceTracker(
        min_hits=tracking.min_hits,
        max_misses=max(1, math.ceil(tracking.lost_after_seconds * detect_fps)),
        decide_after=max(1, math.ceil(tracking.decide_after_seconds * detect_fps)),
    )
    counted, tracks, faces_by_class = [], defaultdict(list), Counter()
    capture = cv2.VideoCapture(str(clip))
    wanted, index = set(_sampled(len(truth["frames"]), truth["fps"], detect_fps)), -1
    try:
        while True:
            ok, frame = capture.read()
            index += 1
            if not ok:
                break
            if index not in wanted:
                continue
            faces = detector.detect(frame, True, tracker.pending_boxes())
            faces.class_ids = classifier.classify(faces.crops) if len(faces) else np.empty(0, np.int64)
            faces.zone_ids = np.zeros(len(faces), np.int64)
            decided, _ = tracker.follow(faces)
            counted += [classifier.classes[class_id] for _, class_id in decided]
            for track, person, class_id in _people_of_faces(faces, truth["frames"][index]):
                tracks[track].append((person, classifier.classes[class_id]))
                faces_by_class[classifier.classes[class_id]] += 1
    finally:
        capture.release()
        detector.close()
    counted += [classifier.classes[class_id] for _, class_id in tracker.finish()]
    return counted, tracks, faces_by_class


def _people_of_faces(faces, here: list[list[int]]) -> list[tuple[int, int | None, int]]:
    """Each face as (track id, the known person its box overlaps most (IoU >= 0.3) or None, class id)."""
    from detector import iou_matrix

    boxes = np.array([box[1:] for box in here], np.float32).reshape(-1, 4)
    overlaps = iou_matrix(faces.boxes, boxes) if len(faces) and len(boxes) else np.zeros((len(faces), 0))
    matched = []
    for face, (track, class_id) in enumerate(zip(faces.track_ids.tolist(), faces.class_ids.tolist())):
        best = int(np.argmax(overlaps[face])) if overlaps.shape[1] else -1
        matched.append((track, here[best][0] if best >= 0 and overlaps[face, best] >= 0.3 else None, class_id))
    return matched


def _share(names: list[str]) -> float | None:
    return round(sum(name == "correct" for name in names) / len(names), 4) if names else None


def measure(clip: Path, truth: dict, detect_fps: float = 5, detector: DetectorConfig | None = None) -> dict:
    """Compliance of people and of faces against the truth, and per person how often each way of deciding a track's
    class is right (tracks matched to a known person by most of their frames; tracks of fewer than min_hits frames
    are not people), with ``detector`` (default: the server's)."""
    counted, tracks, faces_by_class = _follow(clip, truth, detect_fps, detector)
    min_hits = TrackingConfig().min_hits
    decide_after = math.ceil(TrackingConfig().decide_after_seconds * detect_fps)
    voted, first_frames, single, strays = [], [], [], 0
    for frames in tracks.values():
        person = Counter(p for p, _ in frames).most_common(1)[0][0]
        if len(frames) < min_hits:
            continue
        if person is None:
            strays += 1
            continue
        true_class = truth["people"][person]["class"]
        classes = [name for _, name in frames]
        voted.append(Counter(classes[:decide_after]).most_common(1)[0][0] == true_class)
        first_frames.append(Counter(classes[:min_hits]).most_common(1)[0][0] == true_class)
        single.append(sum(name == true_class for name in classes) / len(classes))
    faces_total = sum(faces_by_class.values())
    return {
        "people_true": len(truth["people"]),
        "compliance_true": _share([person["class"] for person in truth["people"]]),
        "people_counted": len(counted),
        "compliance_people_counted": _share(counted),
        "compliance_faces_per_frame": round(faces_by_class["correct"] / faces_total, 4) if faces_total else None,
        "tracks_matched": len(voted),
        "tracks_of_no_person": strays,
        "right_voted_all_frames": round(float(np.mean(voted)), 4) if voted else None,
        "right_first_min_hits_frames": round(float(np.mean(first_frames)), 4) if first_frames else None,
        "right_single_frame": round(float(np.mean(single)), 4) if single else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--seconds", type=float, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--detector",
        action="append",
        metavar="KIND[@SCALES][:SETTING=VALUE,...]",
        help="measure with this detector (repeat to compare, e.g. yunet:keep_still=false; default: the server's)",
    )
    args = parser.parse_args()
    from binarycop.config import detector_name, detector_spec

    detectors = [detector_spec(text) for text in args.detector or []] or [DetectorConfig()]
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        clips = {"demo": (CLIP, demo_truth())}
        for name, real in (("lingering", False), ("lingering_real_faces", True)):
            clip, truth = build_lingering(args.data, Path(tmp) / name, args.seconds, args.seed, real)
            clips[name] = clip, json.loads(truth.read_text())
        for detector in detectors:
            measured = {name: measure(clip, truth, detector=detector) for name, (clip, truth) in clips.items()}
            figures[detector_name(detector)] = measured
    print(json.dumps(figures if len(detectors) > 1 else figures[detector_name(detectors[0])], indent=2))


if __name__ == "__main__":
    sys.exit(main())
