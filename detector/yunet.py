"""Face detection with YuNet (libfacedetection.train, Apache-2.0; ``models/detector/``) run by onnxruntime.

YuNet finds the masked faces BlazeFace misses (``binarycop eval-scenes``: see the README's detector table). One
onnxruntime session per process serves every camera: each run uses one thread and releases the GIL, and at most
one run per core goes at a time (:class:`YuNetRunner`), so cameras share the cores without oversubscribing them.

The network sees the frame zero-padded to a multiple of 32 (BGR, float 0-255, NCHW) and answers, per stride
8, 16 and 32, a class and an objectness score, a box and five landmarks per cell; :func:`decode` turns them into
boxes the way ``cv2.FaceDetectorYN`` does (a test checks it box for box).

The network's cost is about proportional to the pixels it examines (31 ms of a core per 1280x720 frame), so a
camera's frames are examined at the lowest scale that still sees every face it is following (:class:`ScalePlan`: the
smallest face found in recent frames is kept at ``TARGET_PX`` or more), with the frame at full resolution every
``full_every`` frames for faces too small for that scale (backing off to every 25th while those frames find no such
face); between those, the tracker holds small faces it could not have seen (``Coverage``). When all faces in view
are large, a frame costs a quarter; when a small face is in view, every frame is examined at full resolution. A
frame in which nothing moved since the last pass (frame differencing at 1/16 of the side, :mod:`detector.motion`) is
not examined at all: the faces stay where that pass found them, cut again from the new frame, and every 25th frame
is examined whatever the motion. Alternatively (``tile``: a side in pixels), frames are cut into overlapping tiles
scheduled by :class:`detector.tiles.RegionScheduler` (still tiles keep their faces), with the whole frame at half
size for faces too large for a tile.

YuNet's boxes are framed differently from BlazeFace's (narrower, taller towards the forehead); they are mapped onto
BlazeFace's framing (``to_blazeface_framing``), the framing the classifier was trained on.
"""

from __future__ import annotations

import os
import random
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from detector.faces import FRAMING, MIN_FACE_TOLERANCE, Faces, Framing, iou_matrix, large_enough_faces, nms
from detector.motion import REFRESH_FRAMES, MotionGate
from detector.tiles import WHOLE, Coverage, RegionScheduler, centred_in

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "detector"
MODEL = MODEL_DIR / "yunet_s_dynamic.onnx"
STRIDES = (8, 16, 32)
CANDIDATE_SCORE = 0.3  # the setup view pixelates detections down to this score (counted faces need min_score)
NMS_IOU = 0.3  # cv2.FaceDetectorYN's default
TOP_K = 5000
# A reduced-scale pass keeps the smallest followed face at least this large. Below it YuNet still finds faces (from
# ~16 px) but loses more of them; above it, reduced boxes are framed about as well at any size: on real scenes, the
# class of a face cut from a half-size pass's box agrees with the full-size pass's for 87 % of faces of 32-40 px at
# the examined scale, 89 % of 40-64 px and 91 % of larger ones (the classifier is that sensitive to framing at any
# scale; a person's class is the vote of all its frames, full-size ones among them).
TARGET_PX = 36
SCALE_STEPS = (0.5, 0.75, 1.0)  # reduced scales used (few input shapes: onnxruntime plans each shape once)
FOUND_PX = 20  # a face this large at the examined scale is found, if not framed well: absent from a pass, it has left
RECENT_FRAMES = 5  # the faces of this many recent frames decide the scale
MOTION_MARGIN_PX = 64  # a changed region is examined with this much around it (or the largest face's side, if more)

# Median YuNet box against BlazeFace's on the same face: width 0.915 and height 1.174 of BlazeFace's, centre 0.004
# widths right of and 0.051 heights above it. Measured in two steps: the libfacedetection wheel's boxes against
# BlazeFace's (562 faces, real photos and MaskedFace-Net: 0.903, 1.161, -0.0105, -0.0645), then these boxes against
# the wheel's (486 faces of 150 real scenes: 1.013, 1.011, +0.0162, +0.0117 of the wheel's sides).
# ``to_blazeface_framing`` undoes that, so crops are framed as the classifier's training crops were.
WIDTH_RATIO, HEIGHT_RATIO = 0.915, 1.174
CENTRE_SHIFT_X, CENTRE_SHIFT_Y = 0.0041, -0.0509


def to_blazeface_framing(boxes: np.ndarray) -> np.ndarray:
    """YuNet boxes (N, 4) xyxy re-framed the way BlazeFace frames the same faces."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    width = (boxes[:, 2] - boxes[:, 0]) / WIDTH_RATIO
    height = (boxes[:, 3] - boxes[:, 1]) / HEIGHT_RATIO
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2 - CENTRE_SHIFT_X * width
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2 - CENTRE_SHIFT_Y * height
    return np.stack([centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2], 1)


def padded_input(image_bgr: np.ndarray) -> np.ndarray:
    """The network's input for a BGR image: (1, 3, H', W') float32, zero-padded to multiples of 32."""
    height, width = image_bgr.shape[:2]
    padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
    blob = np.zeros((1, 3, padded_h, padded_w), np.float32)
    blob[0, :, :height, :width] = image_bgr.transpose(2, 0, 1)
    return blob


def cut_by_edges(boxes: np.ndarray, regions: np.ndarray, width: int, height: int, reach: float = 0.1) -> np.ndarray:
    """(N,) which boxes reach an edge of a region they lie in (within ``reach`` of their side, or past it) where that
    edge is not the frame's: what was found there may be part of a face the region cut."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    regions = np.asarray(regions, np.float32).reshape(-1, 4)
    if not len(boxes) or not len(regions):
        return np.zeros(len(boxes), bool)
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])[:, None] * reach
    b, r = boxes[:, None], regions[None]
    inside = centred_in(boxes, regions)
    left = (r[..., 0] > 0) & (b[..., 0] <= r[..., 0] + side)
    top = (r[..., 1] > 0) & (b[..., 1] <= r[..., 1] + side)
    right = (r[..., 2] < width) & (b[..., 2] >= r[..., 2] - side)
    bottom = (r[..., 3] < height) & (b[..., 3] >= r[..., 3] - side)
    return (inside & (left | top | right | bottom)).any(axis=1)


def decode(
    outputs: dict[str, np.ndarray], padded_h: int, padded_w: int, min_score: float, nms_iou: float = NMS_IOU
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) xyxy and scores (N,) from YuNet's outputs for one image of the padded size, best first:
    score = sqrt(cls * obj), centre = (cell + offset) * stride, size = exp(d) * stride, then NMS."""
    boxes, scores = [], []
    for stride in STRIDES:
        cols, rows = padded_w // stride, padded_h // stride
        cls = np.clip(outputs[f"cls_{stride}"].reshape(-1), 0, 1)
        obj = np.clip(outputs[f"obj_{stride}"].reshape(-1), 0, 1)
        score = np.sqrt(cls * obj)
        keep = np.flatnonzero(score >= min_score)
        if not len(keep):
            continue
        delta = outputs[f"bbox_{stride}"].reshape(-1, 4)[keep]
        row, col = np.divmod(keep, cols)
        assert rows * cols == len(cls), f"stride {stride}: {len(cls)} cells for a {padded_w}x{padded_h} input"
        centre_x = (col.astype(np.float32) + delta[:, 0]) * stride
        centre_y = (row.astype(np.float32) + delta[:, 1]) * stride
        width, height = np.exp(delta[:, 2]) * stride, np.exp(delta[:, 3]) * stride
        x1, y1 = centre_x - width / 2, centre_y - height / 2
        boxes.append(np.stack([x1, y1, x1 + width, y1 + height], 1))
        scores.append(score[keep])
    if not boxes:
        return np.empty((0, 4), np.float32), np.empty(0, np.float32)
    boxes, scores = np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32)
    kept = cv2.dnn.NMSBoxes(_xywh(boxes).tolist(), scores.tolist(), min_score, nms_iou, top_k=TOP_K)
    kept = np.asarray(kept, np.int64).reshape(-1)
    return boxes[kept], scores[kept]


def _merged(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Detections of several passes merged (NMS) and re-framed the way BlazeFace frames faces."""
    if not len(boxes):
        return boxes.reshape(0, 4).astype(np.float32), scores.astype(np.float32)
    keep = nms(boxes, scores)
    return to_blazeface_framing(boxes[keep]), scores[keep]


def _sides(boxes: np.ndarray) -> np.ndarray:
    return np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def _xywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


class ScalePlan:
    """The scale factor of each frame of one camera: 1 on the first frame and on the full-resolution schedule (and
    while a face smaller than ``TARGET_PX`` is in view, or with ``full_every`` 1); else the smallest step that keeps
    the smallest face found in the last ``RECENT_FRAMES`` frames at ``TARGET_PX`` or more (the lowest step when none
    was found). The second full frame comes after ``phase`` frames (default: drawn at random), so cameras started
    together do not all run full frames at once.

    The schedule backs off while it finds nothing: a full frame whose faces the reduced passes already size well
    doubles the interval to the next one, up to ``longest`` frames; a full frame that finds a face too small for the
    reduced scale in use (or one only full resolution sizes well) brings the interval back to ``full_every``. A
    crowd of large faces thus pays for a full frame every ``longest`` frames, and a scene where small faces come and
    go every ``full_every``; a small newcomer among large faces alone is found at most ``longest`` frames late."""

    def __init__(self, full_every: int = 1, phase: int | None = None, longest: int = REFRESH_FRAMES):
        self.full_every = max(1, full_every)
        self.longest = max(self.full_every, longest)
        self.interval = self.full_every  # frames from this full frame to the next, unless it is the first
        self._frame = -1
        self._next_full = 0
        self._full = False  # the frame just planned is a scheduled full frame
        self._phase = phase if phase is not None else random.randint(1, self.full_every)
        self._smallest: deque[float] = deque(maxlen=RECENT_FRAMES)  # per recent frame, its smallest face

    def next_factor(self) -> float:
        self._frame += 1
        self._full = self.full_every > 1 and self._frame >= self._next_full
        if self.full_every == 1 or self._full:
            self._next_full = self._frame + (self._phase if self._frame == 0 else self.interval)
            return 1.0
        return self._reduced()

    def _reduced(self) -> float:
        return _step_for(min(self._smallest, default=np.inf))

    def record(self, boxes: np.ndarray) -> None:
        """The faces (xyxy, frame pixels) found in the frame just planned."""
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) if len(boxes) else []
        smallest = float(np.min(sides)) if len(sides) else np.inf
        if self._full and self._frame > 0:  # the first frame's faces are all new: it says nothing of the schedule
            needed = _step_for(smallest)  # a face this frame found needs more than the reduced passes give it
            small = needed > self._reduced() or needed == 1.0
            self.interval = self.full_every if small else min(self.longest, 2 * self.interval)
            self._next_full = self._frame + self.interval
        self._full = False
        self._smallest.append(smallest)


def _step_for(side: float) -> float:
    """The lowest scale step that keeps a face of ``side`` pixels at ``TARGET_PX`` or more (1 if none does)."""
    return next((step for step in SCALE_STEPS if step * side >= TARGET_PX), 1.0)


class YuNetRunner:
    """One onnxruntime session of the YuNet model for the whole process, one thread per run; at most ``slots``
    runs (default: one per core) go at once, so many cameras' detector threads share the cores."""

    _shared: dict[tuple[str, int], YuNetRunner] = {}
    _shared_lock = threading.Lock()

    def __init__(self, model: Path = MODEL, slots: int | None = None):
        import onnxruntime as ort  # imported here: only this detector needs it

        if not Path(model).is_file():
            raise FileNotFoundError(f"YuNet model not found: {model}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types for unreadable models
            raise ValueError(f"{model}: not a readable ONNX model ({type(error).__name__})") from None
        self.output_names = [output.name for output in self.session.get_outputs()]
        wanted = {f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES}
        inputs = [model_input.name for model_input in self.session.get_inputs()]
        if inputs != ["input"] or not wanted <= set(self.output_names):
            raise ValueError(f"{model}: not a YuNet model (inputs {inputs}, outputs {sorted(self.output_names)})")
        self._slots = threading.BoundedSemaphore(slots or os.cpu_count() or 1)

    @classmethod
    def shared(cls, model: Path | None = None, slots: int | None = None) -> YuNetRunner:
        """The process's runner of ``model`` (default :data:`MODEL`, read when called)."""
        model = model or MODEL
        key = (str(model), slots or 0)
        with cls._shared_lock:
            if key not in cls._shared:
                cls._shared[key] = cls(model, slots)
            return cls._shared[key]

    def run(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        with self._slots:
            values = self.session.run(self.output_names, {"input": blob})
        return dict(zip(self.output_names, values))


class YuNetDetector:
    """Finds faces in BGR frames with YuNet at each of ``scales`` (1: the frame as it is, 2: upscaled twice).

    Without ``tile`` (0 or None, auto), each frame is examined whole at the scale :class:`ScalePlan` picks
    (``full_every``; with ``full_backoff``, up to every ``REFRESH_FRAMES`` frames while full frames find no small
    face); with ``keep_still``, a frame in which nothing moved since the last pass is not examined
    (:class:`detector.motion.MotionGate`): its faces are the last pass's, cut again from the new frame. With ``tile``
    (a side in pixels), the tiles are examined at full size as the region scheduler plans (``tiles_per_frame``,
    ``keep_still``: see :mod:`detector.tiles`) and the whole frame at ``whole_scale`` every few frames, for faces too
    large for a tile."""

    def __init__(
        self,
        min_score: float = 0.5,
        min_face_px: int = 24,
        scales: tuple[float, ...] = (1.0,),
        tile: int | None = 0,
        tiles_per_frame: int = 0,
        keep_still: bool = False,
        whole_scale: float = 0.5,
        full_every: int = 1,
        full_backoff: bool = False,
        runner: YuNetRunner | None = None,
        framing: Framing = FRAMING,
    ):
        if not scales or any(not 0.25 <= scale <= 4 for scale in scales):
            raise ValueError(f"yunet scales {list(scales)}: expected one or more factors between 0.25 and 4")
        self.min_score = min_score
        self.min_face_px = min_face_px
        self.scales = tuple(float(scale) for scale in scales)
        self.tile = tile
        self.tiles_per_frame = tiles_per_frame
        self.keep_still = keep_still
        self.whole_scale = whole_scale
        self.full_every = full_every
        self.full_longest = REFRESH_FRAMES if full_backoff else full_every
        self.framing = framing
        self._plan = ScalePlan(full_every, longest=self.full_longest)
        self.runner = runner or YuNetRunner.shared()
        self.inferences = 0
        self.pixels = 0  # pixels the network has examined (its cost is about proportional to them)
        self._schedulers: dict[tuple[int, int], RegionScheduler] = {}
        self._gate = MotionGate() if keep_still else None  # without tiles: still frames keep the last pass's faces
        self._last_pass = (np.empty((0, 4), np.float32), np.empty(0, np.float32), None)

    def close(self) -> None:
        """Nothing to release: the session is shared by the process."""

    def reset(self) -> None:
        """Forget what earlier frames showed (still regions, visits, face sizes): the next frame is examined whole."""
        self._schedulers.clear()
        self._plan = ScalePlan(self.full_every, longest=self.full_longest)
        if self._gate is not None:
            self._gate.reset()

    def tile_side(self, width: int, height: int) -> int:
        """The tile side used for frames of this size (0: no tiling; auto: none, the scale plan instead)."""
        if not self.tile:
            return 0
        return self.tile if max(width, height) > self.tile else 0

    def detect(self, frame_bgr: np.ndarray, with_crops: bool = True, focus: np.ndarray | None = None) -> Faces:
        """Faces in the frame; ``focus`` (tiles only): boxes of faces not yet confirmed, whose tiles go first."""
        height, width = frame_bgr.shape[:2]
        side = self.tile_side(width, height)
        if side:
            boxes, scores, coverage = self._detect_tiled(frame_bgr, side, focus)
            boxes, scores = _merged(boxes, scores)
        else:
            boxes, scores, coverage = self._detect_moving(frame_bgr)
        return large_enough_faces(frame_bgr, boxes, scores, self.min_face_px, with_crops, coverage, self.framing)

    def detect_undecoded(self, motion_grey: Callable[[], np.ndarray | None]) -> Faces | None:
        """No faces, without the frame's pixels, when the last pass found none and nothing moved since (``keep_still``
        without tiles): most frames of a camera that looks at an empty room. Else None (decode, then :meth:`detect`).
        """
        if self._gate is None or self.tile or len(self._last_pass[0]):
            return None
        grey = motion_grey()
        if grey is None or not self._gate.is_still(grey):
            return None
        boxes, scores, coverage = self._last_pass
        return large_enough_faces(None, boxes, scores, self.min_face_px, False, coverage, self.framing)

    def _detect_moving(self, frame_bgr: np.ndarray):
        """The untiled path: the whole frame, or (``keep_still``) only where it changed since last examined, at the
        scale the plan picks; the last pass's faces elsewhere are kept. Returns boxes, scores and coverage."""
        regions = None
        if self._gate is not None:
            last_boxes = self._last_pass[0]
            margin = max(MOTION_MARGIN_PX, float(_sides(last_boxes).max(initial=0)))
            regions = self._gate.regions(frame_bgr, margin)
            if regions is not None and not len(regions):
                return self._last_pass  # still: the faces are where the last pass found them
        factor = self._plan.next_factor()
        if regions is None:
            found = [self._detect_scaled(frame_bgr, scale * factor) for scale in self.scales]
        else:
            found = [
                self._detect_region(frame_bgr, region, scale * factor) for region in regions for scale in self.scales
            ]
        boxes, scores = _merged(
            np.concatenate([found_boxes for found_boxes, _ in found]),
            np.concatenate([found_scores for _, found_scores in found]),
        )
        if regions is not None:  # faces of the last pass outside the examined regions stay, unless found again
            kept_boxes, kept_scores, _ = self._last_pass
            kept = ~centred_in(kept_boxes, regions).any(axis=1)
            if len(boxes) and kept.any():
                kept &= iou_matrix(kept_boxes, boxes).max(axis=1) < NMS_IOU
            # a still face that a region's edge cuts is found as a box of its part: the whole one found before stays
            cut = cut_by_edges(boxes, regions, frame_bgr.shape[1], frame_bgr.shape[0])
            if cut.any() and len(kept_boxes):
                overlaps = iou_matrix(boxes[cut], kept_boxes) >= NMS_IOU
                found = np.ones(len(boxes), bool)
                found[np.flatnonzero(cut)[overlaps.any(axis=1)]] = False
                boxes, scores = boxes[found], scores[found]
                kept |= overlaps.any(axis=0)
            boxes = np.concatenate([boxes, kept_boxes[kept]]).astype(np.float32)
            scores = np.concatenate([scores, kept_scores[kept]]).astype(np.float32)
        coverage = None
        if factor < 1:  # faces too small for this scale were not looked for: the tracker holds them
            coverage = Coverage(np.empty((0, 4), np.int64), FOUND_PX / (factor * max(self.scales)))
        self._last_pass = boxes, scores, coverage
        self._plan.record(boxes[_sides(boxes) >= self.min_face_px * MIN_FACE_TOLERANCE])
        return boxes, scores, coverage

    def _detect_region(self, frame_bgr: np.ndarray, region: np.ndarray, scale: float):
        x0, y0, x1, y1 = (int(v) for v in region)
        boxes, scores = self._detect_scaled(frame_bgr[y0:y1, x0:x1], scale)
        return boxes + np.array([x0, y0, x0, y0], np.float32), scores

    @property
    def still_frames(self) -> int:
        """Frames not examined because nothing had moved since the last pass (``keep_still``, without tiles)."""
        return self._gate.still if self._gate is not None else 0

    @property
    def partial_frames(self) -> int:
        """Frames examined only where they changed (``keep_still``, without tiles)."""
        return self._gate.partial if self._gate is not None else 0

    def _detect_tiled(self, frame_bgr: np.ndarray, side: int, focus: np.ndarray | None):
        height, width = frame_bgr.shape[:2]
        key = (side, max(width, height))
        if key not in self._schedulers:
            # a face smaller than the tiles' overlap (20 % of a side) lies whole in some tile; a larger one may be
            # cut by every tile, and is left to the whole-frame pass
            reliable = 0.2 * side / max(width, height)
            self._schedulers[key] = RegionScheduler(side, self.tiles_per_frame, self.keep_still, reliable)
        scheduler = self._schedulers[key]
        plan = scheduler.plan(frame_bgr, focus)
        boxes, scores = [plan.kept_boxes], [plan.kept_scores]
        for region in plan.examine:
            x0, y0, x1, y1 = scheduler.region(region)
            if region == WHOLE:  # the whole frame, for faces too large for a tile
                found_boxes, found_scores = self._detect_scaled(frame_bgr, self.whole_scale)
            else:
                found_boxes, found_scores = self._detect_scaled(frame_bgr[y0:y1, x0:x1], 1.0)
                found_boxes = found_boxes + np.array([x0, y0, x0, y0], np.float32)
            scheduler.record(region, found_boxes, found_scores)
            boxes.append(found_boxes)
            scores.append(found_scores)
        return np.concatenate(boxes), np.concatenate(scores), plan.coverage

    def candidates(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) of everything in the whole frame that may be a face, whatever its size and down to
        :data:`CANDIDATE_SCORE`, at scale 1 and the configured scales (as YuNet frames them and as the crops are
        framed): what the setup view pixelates besides the counted faces. Not counted, not cropped."""
        found = []
        for scale in sorted({1.0, *self.scales}):
            boxes, _ = self._detect_scaled(frame_bgr, scale, min(self.min_score, CANDIDATE_SCORE))
            found += [boxes, to_blazeface_framing(boxes)]
        return np.concatenate(found)

    def _detect_scaled(
        self, image_bgr: np.ndarray, scale: float, min_score: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        image = image_bgr
        if scale != 1:
            image = cv2.resize(image_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        blob = padded_input(image)
        self.inferences += 1
        self.pixels += blob.shape[2] * blob.shape[3]
        threshold = self.min_score if min_score is None else min_score
        boxes, scores = decode(self.runner.run(blob), blob.shape[2], blob.shape[3], threshold)
        return boxes / scale, scores
