"""How much of a face's labelled box a framing keeps in the crop, measured on the real scenes.

A mask worn on the chin hangs below the detector's box; the annotators' VOC box takes it in. For each labelled face
of ``min_face_px`` or more that the detector finds (IoU >= 0.4, as ``eval-scenes`` matches), the crop is cut from
the detector's box with each framing, as the server cuts it; the figures are the share of faces whose labelled box
ends inside the crop, and the median share of the labelled box's height cut off below the crop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detector import Framing, square_boxes
from lab.scenes import MATCH_IOU, match_boxes, positions_of, read_positions, scene_split


def framing_report(root: Path, framings: list[Framing], positions: Path | None = None, min_face_px: int = 24) -> dict:
    """Per framing and per kind of face (a labelled position, else the VOC group): faces, share kept whole, median
    height share cut off below."""
    from lab.scan import offline_detector

    table = read_positions(positions, root) if positions is not None else None
    detector = offline_detector()
    rows: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for scene in scene_split(root, "all"):
        image = scene.read()
        found = detector.detect(image, with_crops=False).boxes
        matched = match_boxes(scene.boxes, found, MATCH_IOU)
        kinds = positions_of(scene, table) if table is not None else [None] * len(scene.boxes)
        for t in np.flatnonzero(scene.large(min_face_px) & (matched >= 0)):
            kind = kinds[t] or scene.groups[t]
            rows.setdefault(kind, []).append((scene.boxes[t], found[matched[t]]))
    report = {}
    for framing in framings:
        per_kind = {}
        for kind, pairs in sorted(rows.items()):
            truth = np.array([pair[0] for pair in pairs], np.float32)
            crops = square_boxes(np.array([pair[1] for pair in pairs], np.float32), framing)
            cut = np.clip(truth[:, 3] - crops[:, 3], 0, None) / np.maximum(truth[:, 3] - truth[:, 1], 1)
            per_kind[kind] = {
                "faces": len(pairs),
                "kept_whole": round(float((cut == 0).mean()), 4),
                "median_cut_below": round(float(np.median(cut)), 4),
            }
        report[str(framing)] = {"framing": framing.as_meta(), "faces": per_kind}
    detector.close()
    return report
