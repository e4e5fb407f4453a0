"""Put masks on unmasked faces at the four positions, the way MaskedFace-Net was made.

Facial landmarks come from mediapipe's face mesh (468 points, bundled, offline). A mask
template with six anchor points (MaskTheFace's ``masks.cfg``: top left, nose bridge, top
right, jaw left, chin, jaw right) is warped by a homography onto six points on the face,
placed for the position:

- ``correct``: bridge of the nose to under the chin;
- ``nose``: pulled under the nose (nose exposed);
- ``chin``: bridge of the nose to under the lower lip (chin exposed);
- ``nose_mouth``: on the chin only (nose and mouth exposed).

Templates are recoloured at random, their points jittered, and their shading scaled to
the face's own lighting. Each output is a face-centred image in a class folder, named
``<source folder>__<file stem>__<class>.jpg`` so that all variants of one face share its
group in the training/held-out split (``lab.dataset``).
"""

from __future__ import annotations

import configparser
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

POSITIONS = ("correct", "nose", "nose_mouth", "chin")
OUTPUT_SIDE = 192
SHEET_CELL = 96
SKIP_TEMPLATES = ("gas",)  # a respirator hides the face in every position: not a wearing lesson

# mediapipe face mesh indices
BRIDGE_TOP = 168
SUBNASALE, LOWER_LIP, CHIN = 2, 17, 152
LEFT_OUTLINE = (234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152)  # face oval, image left, eyes to chin
RIGHT_OUTLINE = (454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152)
EYE_LEVEL_LEFT, EYE_LEVEL_RIGHT = 234, 454
NOSE_TIP = 1

PALETTE = [  # BGR colours masks come in
    (245, 245, 245),
    (40, 40, 40),
    (200, 170, 110),
    (110, 60, 20),
    (190, 160, 240),
    (150, 150, 150),
    (90, 140, 90),
    (60, 60, 160),
]


@dataclass
class Template:
    name: str
    rgba: np.ndarray  # uint8 (H, W, 4), BGRA
    anchors: np.ndarray  # float32 (6, 2): a, b, c top; d, e, f bottom
    view: str  # front, left or right


def load_templates(root: Path) -> list[Template]:
    """MaskTheFace templates with anchors from ``masks.cfg`` under ``root`` (searched recursively)."""
    configs = sorted(Path(root).rglob("masks.cfg"))
    if not configs:
        raise FileNotFoundError(f"{root}: no masks.cfg (MaskTheFace templates) found")
    templates = []
    for config_path in configs:
        parser = configparser.ConfigParser()
        parser.read(config_path)
        for name in parser.sections():
            section = parser[name]
            image_path = config_path.parent / f"{name}.png"
            if "mask_a" not in section or name.split("_")[0] in SKIP_TEMPLATES or not image_path.is_file():
                continue
            rgba = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
            if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
                continue
            anchors = [[float(v) for v in section[f"mask_{k}"].split(",")] for k in "abcdef"]
            view = "left" if name.endswith("_left") else "right" if name.endswith("_right") else "front"
            templates.append(Template(name, rgba, np.array(anchors, np.float32), view))
    if not templates:
        raise FileNotFoundError(f"{root}: masks.cfg names no usable RGBA templates")
    return templates


class Landmarks:
    """Face mesh landmarks in pixels, (468, 2), or None where no face is found."""

    def __init__(self):
        import mediapipe as mp  # heavy; only synthesis needs it

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=0.3
        )

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray | None:
        result = self._mesh.process(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        if not result.multi_face_landmarks:
            return None
        height, width = image_bgr.shape[:2]
        points = result.multi_face_landmarks[0].landmark
        return np.array([[p.x * width, p.y * height] for p in points], np.float32)


def _axis(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Origin (top of the nose bridge), unit vector down the face, and bridge-to-chin length."""
    down = points[CHIN] - points[BRIDGE_TOP]
    length = max(float(np.linalg.norm(down)), 1e-6)
    return points[BRIDGE_TOP], down / length, length


def height_of(points: np.ndarray, index: int) -> float:
    """Where landmark ``index`` lies along the bridge-to-chin axis (0 bridge, 1 chin)."""
    origin, unit, length = _axis(points)
    return float(np.dot(points[index] - origin, unit) / length)


def _contour_at(points: np.ndarray, side: tuple[int, ...], height: float) -> np.ndarray:
    """The face outline on one side at ``height``; below the jaw, the outline at 0.9 carried straight down."""
    origin, unit, length = _axis(points)
    chain = points[list(side)]
    heights = (chain - origin) @ unit / length
    order = np.argsort(heights)
    clamped = min(height, 0.9)
    point = np.array([np.interp(clamped, heights[order], chain[order, k]) for k in (0, 1)], np.float32)
    return point + (height - clamped) * length * unit


def mask_heights(points: np.ndarray, position: str, rng: np.random.Generator) -> tuple[float, float]:
    """Top and bottom edge of the mask along the face axis for ``position``."""
    if position not in POSITIONS:
        raise ValueError(f"unknown position {position!r}; expected one of {POSITIONS}")
    below_nose = height_of(points, SUBNASALE) + 0.04
    below_lip = height_of(points, LOWER_LIP) + 0.05
    top, bottom = {
        "correct": (0.17, 1.05),
        "nose": (below_nose, 1.05),
        "chin": (0.17, below_lip + 0.04),
        "nose_mouth": (below_lip, 1.18),
    }[position]
    return top + float(rng.normal(0, 0.015)), bottom + float(rng.normal(0, 0.02))


def mask_points(points: np.ndarray, position: str, rng: np.random.Generator) -> np.ndarray:
    """Six destination points (a, b, c top; d, e, f bottom) for a mask worn at ``position``."""
    origin, unit, length = _axis(points)
    top, bottom = mask_heights(points, position, rng)
    span = bottom - top
    corner_top, corner_bottom = top + 0.16 * span, top + 0.67 * span  # where MaskTheFace's anchors sit
    destination = np.array(
        [
            _contour_at(points, LEFT_OUTLINE, corner_top),
            origin + top * length * unit,
            _contour_at(points, RIGHT_OUTLINE, corner_top),
            _contour_at(points, LEFT_OUTLINE, corner_bottom),
            origin + bottom * length * unit,
            _contour_at(points, RIGHT_OUTLINE, corner_bottom),
        ],
        np.float32,
    )
    return destination + rng.normal(0, 0.01 * length, destination.shape).astype(np.float32)


def face_view(points: np.ndarray) -> str:
    """front, left or right: which template variant fits the head's turn."""
    left, right = points[EYE_LEVEL_LEFT, 0], points[EYE_LEVEL_RIGHT, 0]
    ratio = (points[NOSE_TIP, 0] - left) / max(right - left, 1e-6)
    return "left" if ratio < 0.38 else "right" if ratio > 0.62 else "front"


def recolour(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The template in a random colour (shading kept), or as it is."""
    if rng.random() < 0.35:
        return rgba
    shading = cv2.cvtColor(rgba[..., :3], cv2.COLOR_BGR2GRAY).astype(np.float32)
    shading /= max(float(np.percentile(shading[rgba[..., 3] > 0], 90)) if (rgba[..., 3] > 0).any() else 255, 1)
    colour = np.array(PALETTE[rng.integers(len(PALETTE))] if rng.random() < 0.7 else rng.integers(0, 256, 3))
    colour = np.clip(colour + rng.normal(0, 12, 3), 0, 255)
    bgr = np.clip(shading[..., None] * colour[None, None], 0, 255).astype(np.uint8)
    return np.dstack([bgr, rgba[..., 3]])


def put_mask(image: np.ndarray, points: np.ndarray, template: Template, position: str, rng) -> np.ndarray:
    """``image`` with ``template`` warped onto the face at ``position``, lit like the face."""
    destination = mask_points(points, position, rng)
    homography, _ = cv2.findHomography(template.anchors, destination)
    rgba = recolour(template.rgba, rng)
    height, width = image.shape[:2]
    warped = cv2.warpPerspective(rgba, homography, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)
    alpha = cv2.GaussianBlur(warped[..., 3].astype(np.float32) / 255, (3, 3), 0)[..., None]
    skin = _skin_brightness(image, points)
    light = np.clip(skin / 170 * rng.uniform(0.85, 1.1), 0.35, 1.15)
    mask_bgr = np.clip(warped[..., :3].astype(np.float32) * light, 0, 255)
    return (image * (1 - alpha) + mask_bgr * alpha).astype(np.uint8)


def _skin_brightness(image: np.ndarray, points: np.ndarray) -> float:
    x1, y1 = points[[EYE_LEVEL_LEFT, BRIDGE_TOP]].min(axis=0).astype(int)
    x2, y2 = points[[EYE_LEVEL_RIGHT, CHIN]].max(axis=0).astype(int)
    region = image[max(y1, 0) : max(y2, y1 + 1), max(x1, 0) : max(x2, x1 + 1)]
    if not region.size:
        return 170.0
    return float(np.median(cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)))


def _with_room(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image grown (edges replicated) to hold the face square, so a mask hanging below a tight
    face crop is drawn whole instead of being cut at the border and smeared by the later padding."""
    low, high = points.min(axis=0), points.max(axis=0)
    half = float((high - low).max()) * 0.75
    centre = (low + high) / 2
    pad = int(np.ceil(max(0.0, half - centre.min(), *(centre + half - image.shape[1::-1])))) + 2
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return padded, points + pad


def face_square(image: np.ndarray, points: np.ndarray, side: int = OUTPUT_SIDE) -> np.ndarray:
    """A face-centred square (1.5x the landmarks' extent, edges replicated), ``side`` pixels."""
    low, high = points.min(axis=0), points.max(axis=0)
    centre, half = (low + high) / 2, float((high - low).max()) * 0.75
    x1, y1 = np.round(centre - half).astype(int)
    x2, y2 = np.round(centre + half).astype(int)
    pad = max(0, -x1, -y1, x2 - image.shape[1], y2 - image.shape[0])
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
    patch = padded[y1 + pad : y2 + pad, x1 + pad : x2 + pad]
    return cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA)


def synthesise(faces: Path, out: Path, templates_root: Path, seed: int = 0, limit: int | None = None) -> dict:
    """Four masked variants of every face under ``faces``; a contact sheet at ``out/contact_sheet.png``."""
    from lab.dataset import _images

    if not Path(faces).is_dir():
        raise FileNotFoundError(f"--faces {faces}: no such directory")
    templates = load_templates(templates_root)
    rng = np.random.default_rng(seed)
    landmarks = Landmarks()
    for position in POSITIONS:
        (out / position).mkdir(parents=True, exist_ok=True)
    paths = _images(Path(faces))[:limit]
    written, missed, sheet_rows = 0, 0, []
    for index, path in enumerate(paths):
        image = cv2.imread(str(path))
        points = landmarks(image) if image is not None else None
        if points is None:
            missed += 1
            continue
        image, points = _with_room(image, points)
        view = face_view(points)
        fitting = [t for t in templates if t.view == view] or templates
        row = [face_square(image, points, SHEET_CELL)]
        stem = f"{path.parent.name}__{path.stem}"
        for position in POSITIONS:
            template = fitting[rng.integers(len(fitting))]
            masked = put_mask(image, points, template, position, rng)
            cv2.imwrite(str(out / position / f"{stem}__{position}.jpg"), face_square(masked, points))
            row.append(face_square(masked, points, SHEET_CELL))
            written += 1
        if len(sheet_rows) < 24 and index % max(len(paths) // 24, 1) == 0:
            sheet_rows.append(np.concatenate(row, axis=1))
        if (index + 1) % 200 == 0:
            print(f"synth: {index + 1}/{len(paths)} faces", file=sys.stderr)
    sheet = out / "contact_sheet.png"
    if sheet_rows:
        cv2.imwrite(str(sheet), contact_sheet(sheet_rows))
    return {"faces": len(paths), "no_landmarks": missed, "written": written, "contact_sheet": str(sheet)}


def contact_sheet(rows: list[np.ndarray], columns: int = 2) -> np.ndarray:
    """Rows of (original, correct, nose, nose_mouth, chin) cells, ``columns`` rows side by side, titled."""
    header = np.full((22, rows[0].shape[1], 3), 255, np.uint8)
    for index, name in enumerate(("face", *POSITIONS)):
        cv2.putText(header, name, (index * SHEET_CELL + 3, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 0, 1, cv2.LINE_AA)
    blank = np.full_like(rows[0], 255)
    rows = rows + [blank] * (-len(rows) % columns)
    per_column = len(rows) // columns
    stacks = [np.concatenate([header, *rows[c * per_column : (c + 1) * per_column]]) for c in range(columns)]
    gap = np.full((stacks[0].shape[0], 8, 3), 255, np.uint8)
    return np.concatenate([part for stack in stacks for part in (stack, gap)][:-1], axis=1)
