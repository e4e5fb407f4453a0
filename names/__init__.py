"""The names every part agrees on, at the bottom of the layout: any package may import this one, it imports none.

``CLASSES``: the mask classes in the order the networks output them (the ``mask_class`` metric label).
``NAME_PATTERN``: what a camera, zone or site name may be (each becomes a metric label).
"""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("correct", "nose", "nose_mouth", "chin", "no_mask")
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
