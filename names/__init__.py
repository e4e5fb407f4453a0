"""The names every part agrees on, at the bottom of the layout: any package may import this one, it imports none.

``CLASSES``: the mask classes in the order the networks output them (the ``mask_class`` metric label).
``CLASS_LABELS``: the words operators read for each class, the same on the page, the setup view, Grafana and the docs.
``CLASS_COLOURS``: each class's colour on the page and in Grafana (Okabe-Ito: told apart with colour-vision
deficiencies), always with its words beside it.
``NAME_PATTERN``: what a camera, zone or site name may be (each becomes a metric label).
``Framing``: how a face box becomes a 32x32 crop; a model file records the one it was trained with, and the
detector cuts live crops with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
CROP_MARGIN = 0.2  # extra side length around the detector's box, as a fraction of its larger side


@dataclass(frozen=True)
class Framing:
    """How a face box becomes a crop, the one definition that training, live frames, ``scan`` and ``eval-scenes``
    share: a square of the box's larger side times ``1 + margin``, its centre moved down by ``drop`` times that
    larger side (a mask worn on the chin hangs below the box's lower edge). A model file records the framing it
    was trained with (``as_meta``); models from before the record were trained with the default."""

    margin: float = CROP_MARGIN
    drop: float = 0.0

    def __post_init__(self):
        if not (0 <= self.margin <= 2 and -0.5 <= self.drop <= 0.5):
            raise ValueError(f"framing margin {self.margin}, drop {self.drop}: expected margin 0-2 and drop -0.5-0.5")

    def as_meta(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict | None) -> Framing:
        """The framing a model file's meta records; the default for a file that records none."""
        if not meta:
            return cls()
        if not isinstance(meta, dict) or set(meta) - {"margin", "drop"}:
            raise ValueError(f"framing {meta!r}: expected {{'margin': M, 'drop': D}}")
        try:
            return cls(float(meta.get("margin", CROP_MARGIN)), float(meta.get("drop", 0.0)))
        except (TypeError, ValueError):
            raise ValueError(f"framing {meta!r}: margin and drop must be numbers") from None

    def __str__(self) -> str:
        return f"square +{self.margin:.0%}" + (f", {self.drop:+.0%} down" if self.drop else "")
