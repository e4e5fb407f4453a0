"""YuNet's raw output for one image: the whole of what a live yuface worker process runs.

Kept apart from the rest of the package so that a spawned worker imports numpy and the ``yuface`` wheel
only, not OpenCV: on 1280x720 frames a worker holds 19 MB of its own memory instead of 25 (38 MB resident
instead of 65, the difference mostly OpenCV's shared library)."""

from __future__ import annotations

import numpy as np


def raw_detect(image: np.ndarray) -> np.ndarray:
    """YuNet's rows for a contiguous BGR image: confidence (percent), x, y, w, h, five landmarks."""
    import yuface  # imported here: only this detector needs it

    return np.asarray(yuface.c_detect(image), np.float32).reshape(-1, 16)
