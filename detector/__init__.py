"""Faces and 32x32 crops from frames."""

from __future__ import annotations

_FROM_FACES = ("CROP_MARGIN", "CROP_SIZE", "Faces", "crop_faces", "iou_matrix", "nms", "square_boxes")

__all__ = ["CROP_MARGIN", "CROP_SIZE", "Faces", "crop_faces", "iou_matrix", "make_detector", "nms", "square_boxes"]


def make_detector(config, live: bool = False):
    """A detector for a :class:`binarycop.config.DetectorConfig`; ``live``: for a camera of the server,
    next to other cameras' threads (yuface then runs in a process of its own: it holds the GIL)."""
    if config.kind == "yuface":
        from detector.yuface import YuFaceDetector

        return YuFaceDetector(
            min_score=config.min_score, min_face_px=config.min_face_px, scales=tuple(config.scales), worker_process=live
        )
    from detector.blazeface import BlazeFaceDetector

    return BlazeFaceDetector(
        min_score=config.min_score,
        min_face_px=config.min_face_px,
        tile=config.tile_pixels(),
        tiles_per_frame=config.tiles_per_frame,
        keep_still=config.keep_still,
    )


def __getattr__(name: str):
    # Imported on first use, so that a yuface worker process (detector.yunet) does not load OpenCV
    if name in _FROM_FACES:
        from detector import faces

        return getattr(faces, name)
    raise AttributeError(f"module 'detector' has no attribute {name!r}")
