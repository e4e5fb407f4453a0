"""The names every part agrees on, at the bottom of the layout: any package may import this one, it imports none.

``CLASSES``: the mask classes in the order the networks output them (the ``mask_class`` metric label).
``CLASS_LABELS``: the words operators read for each class, the same on the page, the setup view, Grafana and the docs.
``CLASS_COLOURS``: each class's colour on the page and in Grafana (Okabe-Ito: told apart with colour-vision
deficiencies), always with its words beside it.
``NAME_PATTERN``: what a camera, zone or site name may be (each becomes a metric label).
"""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("correct", "nose", "nose_mouth", "chin", "no_mask")
CLASS_LABELS: dict[str, str] = {
    "correct": "worn correctly",
    "nose": "nose exposed",
    "nose_mouth": "mask on the chin (nose and mouth exposed)",
    "chin": "chin exposed",
    "no_mask": "no mask",
}
CLASS_COLOURS: dict[str, str] = {
    "correct": "#009E73",
    "nose": "#E69F00",
    "nose_mouth": "#D55E00",
    "chin": "#CC79A7",
    "no_mask": "#0072B2",
}
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
