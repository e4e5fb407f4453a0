"""Faces and 32x32 crops from frames."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from names import Framing

if TYPE_CHECKING:
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

__all__ = [
    "CROP_MARGIN",
    "CROP_SIZE",
    "FRAMING",
    "FaceDetector",
    "Faces",
    "Framing",
    "crop_faces",
    "iou_matrix",
    "make_detector",
    "nms",
    "square_boxes",
]


class FaceDetector(Protocol):
    """What every detector does (YuNet, BlazeFace): faces from BGR frames, one camera's frames in order."""

    def detect(self, frame_bgr: np.ndarray, with_crops: bool = True, focus: np.ndarray | None = None) -> Faces:
        """Faces in one frame; ``focus``: boxes (N, 4) where faces are expected (examined first)."""

    def reset(self) -> None:
        """Forget the frames before: the next frame is examined as a camera's first."""

    def close(self) -> None:
        """Release the detector's resources."""


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


def __getattr__(name: str):
    # Imported on first use: ``import detector`` stays light for what needs only make_detector
    if name in _FROM_FACES:
        from detector import faces

        return getattr(faces, name)
    raise AttributeError(f"module 'detector' has no attribute {name!r}")
