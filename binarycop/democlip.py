"""The bundled demo clip: MaskedFace-Net faces of known classes on a generated background.

``python -m binarycop.democlip --data ../shared/data`` rebuilds it. Every face placed is
checked through the real detectors (YuNet at full and at half resolution, the scales a camera
of the server examines it at, and BlazeFace) and the shipped model on the decoded video; a face
that is not found or not classified as its label by any of them is replaced, so
``demo_clip.json`` holds the exact classes the pipeline reports for every frame of the clip, and its people
(``people``: one per place and face set, with their frames): what ``binarycop_people_total`` counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from binarycop.config import CameraConfig, Config, HttpConfig

ASSETS = Path(__file__).resolve().parent / "assets"
CLIP = ASSETS / "demo_clip.mp4"
TRUTH = ASSETS / "demo_clip.json"
WIDTH, HEIGHT, FPS = 640, 360, 10
SEGMENT_FRAMES, SEGMENTS = 20, 4
GAP_FRAMES = 15  # background only between face sets: the people leave before the next ones arrive
SLOTS = ("correct", "nose", "nose_mouth", "chin")
FACE_PX = 140
ATTEMPTS = 200  # face sets tried per segment (each failing face is replaced by the next of its class)
COUNTED = (
    "people: each face of a face set is one person, counted once (binarycop_people_total), with the class of all "
    "their frames; faces: every face in every sampled frame (binarycop_faces_classified_total), a secondary figure"
)


def demo_config(bind: str = "127.0.0.1", port: int = 8080, loop: bool = True, realtime: bool = True) -> Config:
    camera = CameraConfig(name="demo", url=str(CLIP), detect_fps=5, site="demo", loop=loop, realtime=realtime)
    return Config(http=HttpConfig(bind=bind, port=port), cameras=[camera])


def sampled_frames(detect_fps: float = 5) -> list[int]:
    """Indices of the clip frames a file source samples at ``detect_fps`` (by the clip's timestamps)."""
    truth = json.loads(TRUTH.read_text())
    step = truth["fps"] / detect_fps
    return sorted(
        {int(round(i * step)) for i in range(int(len(truth["frames"]) / step + 0.5))} & set(range(len(truth["frames"])))
    )


def expected_counts(detect_fps: float = 5) -> dict[str, int]:
    """Faces per class the pipeline reports for one pass over the clip at ``detect_fps``."""
    truth = json.loads(TRUTH.read_text())
    counts = dict.fromkeys(SLOTS, 0)
    for index in sampled_frames(detect_fps):
        for name in truth["frames"][index]:
            counts[name] += 1
    return counts


def expected_people() -> dict[str, int]:
    """People per class in one pass over the clip (the truth's ``people``: each face set's faces are one person
    each, counted once however many frames they are in)."""
    truth = json.loads(TRUTH.read_text())
    counts = dict.fromkeys(truth["classes"], 0)
    for person in truth["people"]:
        counts[person["class"]] += 1
    return counts


def people_of(frames: list[list[str]]) -> list[dict]:
    """The people in the clip's frames (each frame lists its faces' classes by place): a face set runs over
    consecutive frames with faces; each place in it is one person, {"place", "class", "first", "end"} (frames)."""
    people: list[dict] = []
    current: dict[int, dict] = {}
    for index, names in enumerate(frames + [[]]):
        if not names:
            people += current.values()
            current = {}
        for place, name in enumerate(names):
            current.setdefault(place, {"place": place, "class": name, "first": index, "end": index})["end"] = index + 1
    return people


def _background(rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    base = np.stack([90 + 60 * x / WIDTH, 110 + 40 * y / HEIGHT, 140 - 50 * x / WIDTH], axis=-1)
    noise = rng.normal(0, 6, (HEIGHT, WIDTH, 1))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _positions(frame: int) -> list[tuple[int, int]]:
    gap = WIDTH // len(SLOTS)
    drift = int(8 * np.sin(2 * np.pi * frame / SEGMENT_FRAMES))
    return [(gap * i + (gap - FACE_PX) // 2 + drift, (HEIGHT - FACE_PX) // 2 + drift // 2) for i in range(len(SLOTS))]


def _render(background: np.ndarray, faces: list[np.ndarray], frame: int) -> np.ndarray:
    image = background.copy()
    for (x, y), face in zip(_positions(frame), faces):
        image[y : y + FACE_PX, x : x + FACE_PX] = face
    return image


def _write(frames: list[np.ndarray], path: Path) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for frame in frames:
        writer.write(frame)
    writer.release()


def clip_frames() -> list[np.ndarray]:
    """Every frame of the bundled clip, decoded (BGR)."""
    return decode_video(CLIP)


def decode_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def _failing_slots(frames: list[np.ndarray], detector, classifier, offset: int) -> set[int]:
    from detector import iou_matrix

    failing: set[int] = set()
    for index, frame in enumerate(frames):
        faces = detector.detect(frame)
        truth = np.array([[x, y, x + FACE_PX, y + FACE_PX] for x, y in _positions(offset + index)], np.float32)
        classes = classifier.classify(faces.crops) if len(faces) else np.empty(0, np.int64)
        overlaps = iou_matrix(truth, faces.boxes) if len(faces) else np.zeros((len(truth), 0))
        for slot, name in enumerate(SLOTS):
            hits = np.flatnonzero(overlaps[slot] >= 0.3) if overlaps.shape[1] else []
            if len(hits) != 1 or classifier.classes[classes[hits[0]]] != name:
                failing.add(slot)
        if len(faces) != len(SLOTS) and not failing:  # a stray detection: try other faces everywhere
            failing.update(range(len(SLOTS)))
    return failing


def build(data: Path, seed: int = 0) -> None:
    from accel import make_classifier
    from binarycop.config import DetectorConfig
    from detector import make_detector
    from lab.dataset import split_of

    rng = np.random.default_rng(seed)
    detectors = [
        make_detector(DetectorConfig(full_frame_every=1)),
        make_detector(DetectorConfig(scales=[0.5], full_frame_every=1)),
        make_detector(DetectorConfig(kind="blazeface")),
    ]
    classifier = make_classifier("cpu", "n-cnv")
    pools = {}
    for name in SLOTS:  # faces held out from training first
        paths = sorted((data / "maskedface" / name).glob("*.jpg"))
        held = [p for p in paths if split_of(f"ffhq:{p.stem[:5]}")]
        pools[name] = list(rng.permutation(held)) + list(rng.permutation([p for p in paths if p not in held]))
    background = _background(rng)
    all_frames, truth_frames = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for segment in range(SEGMENTS):
            chosen = [pools[name].pop(0) for name in SLOTS]
            for _attempt in range(ATTEMPTS):
                faces = [cv2.resize(cv2.imread(str(p)), (FACE_PX, FACE_PX), cv2.INTER_AREA) for p in chosen]
                offset = len(all_frames)
                frames = [_render(background, faces, offset + i) for i in range(SEGMENT_FRAMES)]
                _write(all_frames + frames, Path(tmp) / "clip.mp4")
                decoded = decode_video(Path(tmp) / "clip.mp4")[offset:]
                failing = set().union(*(_failing_slots(decoded, d, classifier, offset) for d in detectors))
                if not failing:
                    break
                for slot in failing:
                    chosen[slot] = pools[SLOTS[slot]].pop(0)
            else:
                raise RuntimeError(f"segment {segment}: no face set passed detection and classification")
            print(f"segment {segment}: faces {[p.name for p in chosen]}", file=sys.stderr)
            all_frames += frames + [background.copy() for _ in range(GAP_FRAMES)]
            truth_frames += [list(SLOTS)] * SEGMENT_FRAMES + [[]] * GAP_FRAMES
    ASSETS.mkdir(exist_ok=True)
    _write(all_frames, CLIP)
    truth = {"fps": FPS, "classes": list(SLOTS), "segments": SEGMENTS, "counted": COUNTED, "frames": truth_frames}
    truth["people"] = people_of(truth_frames)
    TRUTH.write_text(json.dumps(truth) + "\n")
    print(f"wrote {CLIP} ({CLIP.stat().st_size} bytes) and {TRUTH}", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--seed", type=int, default=0)
    build(parser.parse_args().data, parser.parse_args().seed)
