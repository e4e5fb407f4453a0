"""Faces and 32x32 crops from frames."""

from detector.faces import CROP_MARGIN, CROP_SIZE, Faces, crop_faces, iou_matrix, nms, square_boxes

__all__ = ["CROP_MARGIN", "CROP_SIZE", "Faces", "crop_faces", "iou_matrix", "make_detector", "nms", "square_boxes"]


def make_detector(config):
    """A detector for a :class:`binarycop.config.DetectorConfig`."""
    if config.kind == "yuface":
        from detector.yuface import YuFaceDetector

        return YuFaceDetector(min_score=config.min_score, min_face_px=config.min_face_px, scales=tuple(config.scales))
    from detector.blazeface import BlazeFaceDetector

    return BlazeFaceDetector(
        min_score=config.min_score,
        min_face_px=config.min_face_px,
        tile=config.tile_pixels(),
        tiles_per_frame=config.tiles_per_frame,
        keep_still=config.keep_still,
    )
