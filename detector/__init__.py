"""Faces and 32x32 crops from frames."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from names import Framing

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from detector.faces import Faces

_FROM_FACES = (
    "CROP_MARGIN",
    "CROP_SIZE",
    "FRAMING",
    "Faces",
    "crop_faces",
    "iou_matrix",
    "nms",
    "square_boxes",
)
CHECK_FRAME = (360, 640)  # height, width of the blank frame a detector is tried on before it gets a camera

__all__ = [
    "CROP_MARGIN",
    "CROP_SIZE",
    "FRAMING",
    "DetectorError",
    "FaceDetector",
    "Faces",
    "Framing",
    "crop_faces",
    "iou_matrix",
    "check_detector",
    "make_detector",
    "nms",
    "square_boxes",
]


class FaceDetector(Protocol):
    """What every detector does (YuNet, BlazeFace): faces from BGR frames, one camera's frames in order."""

    def detect(self, frame_bgr: np.ndarray, with_crops: bool = True, focus: np.ndarray | None = None) -> Faces:
        """Faces in one frame; ``focus``: boxes (N, 4) where faces are expected (examined first)."""

    def detect_undecoded(self, motion_grey: Callable[[], np.ndarray | None]) -> Faces | None:
        """The faces of a frame not yet decoded, where it needs no pixels (nobody was in view at the last pass and
        nothing moved since, judged on ``motion_grey()``, the frame's grey copy from a reduced decode); else None:
        the frame is decoded and goes to :meth:`detect`."""

    def reset(self) -> None:
        """Forget the frames before: the next frame is examined as a camera's first."""

    def close(self) -> None:
        """Release the detector's resources."""

    def candidates(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) of everything in the whole frame that may be a face, whatever its size or score: what the
        setup view pixelates besides the counted faces (run once per picture, not per frame)."""


def make_detector(config, framing: Framing | None = None) -> FaceDetector:
    """A detector for a :class:`binarycop.config.DetectorConfig`: YuNet (the default) or BlazeFace, cutting its crops
    with ``framing`` (the classifier's: ``Classifier.framing``; today's default when None)."""
    framing = framing or Framing()
    if config.kind == "yunet":
        from detector.yunet import YuNetDetector

        return YuNetDetector(
            min_score=config.min_score,
            min_face_px=config.min_face_px,
            scales=tuple(config.scales),
            tile=config.tile_pixels(),
            tiles_per_frame=config.tiles_per_frame,
            keep_still=config.keep_still,
            full_every=config.full_frame_every,
            full_backoff=config.full_frame_backoff,
            framing=framing,
        )
    from detector.blazeface import BlazeFaceDetector

    return BlazeFaceDetector(
        min_score=config.min_score,
        min_face_px=config.min_face_px,
        tile=config.tile_pixels(),
        tiles_per_frame=config.tiles_per_frame,
        keep_still=config.keep_still,
        framing=framing,
    )


class DetectorError(ValueError):
    """A detector that cannot be built or run (a model file truncated, not the detector's, or not runnable)."""


def check_detector(config) -> None:
    """Build the detector for ``config`` and run it once on a blank frame, so that a model that cannot load or run
    is an error before any camera depends on it (a camera with a dead detector would process nothing)."""
    import numpy as np

    try:
        detector = make_detector(config)
        try:
            detector.detect(np.zeros((*CHECK_FRAME, 3), np.uint8), with_crops=True)
        finally:
            detector.close()
    except (ValueError, OSError) as error:  # our own messages (file missing, not a YuNet model)
        raise DetectorError(f"{config.kind}: {error}") from None
    except Exception as error:  # noqa: BLE001 - onnxruntime and mediapipe raise types of their own
        raise DetectorError(f"{config.kind}: the detector cannot run ({type(error).__name__})") from None


def __getattr__(name: str):
    # Imported on first use: ``import detector`` stays light for what needs only make_detector
    if name in _FROM_FACES:
        from detector import faces

        return getattr(faces, name)
    raise AttributeError(f"module 'detector' has no attribute {name!r}")
