"""Faces and 32x32 crops from frames."""

from __future__ import annotations

_FROM_FACES = ("CROP_MARGIN", "CROP_SIZE", "Faces", "crop_faces", "iou_matrix", "nms", "square_boxes")

__all__ = ["CROP_MARGIN", "CROP_SIZE", "Faces", "crop_faces", "iou_matrix", "make_detector", "nms", "square_boxes"]


def make_detector(config):
    """A detector for a :class:`binarycop.config.DetectorConfig`: YuNet (the default) or BlazeFace."""
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
    # Imported on first use: ``import detector`` stays light for what needs only make_detector
    if name in _FROM_FACES:
        from detector import faces

        return getattr(faces, name)
    raise AttributeError(f"module 'detector' has no attribute {name!r}")
