"""The layout keeps its direction: the app (``binarycop``) wires the stages; a stage never imports another stage,
the app or the lab; the lab uses the runtime (``accel``) and ``detector``'s public names, never the app; everything
may import ``names`` (the class list, the label pattern), which imports nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP, LAB, BOTTOM, STAGES = "binarycop", "lab", "names", ("ingest", "detector", "accel", "stats")
PACKAGES = (APP, LAB, BOTTOM, *STAGES)
# Imports against the direction that are meant, each with its reason.
ALLOWED = {
    ("lab.dataset", "binarycop.config"): "crops framed by the server's default detector settings",
    ("lab.scan", "binarycop.config"): "offline figures use the server's default detector settings",
}


def imports(package: str):
    """``(module, imported module)`` for every absolute import in ``package``, lazy ones inside functions too."""
    for path in sorted((ROOT / package).rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                yield from ((module, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield module, node.module


def against_direction(module: str, imported: str) -> bool:
    source, target = module.split(".")[0], imported.split(".")[0]
    if source == target or target not in PACKAGES or target == BOTTOM:
        return False
    if source in (*STAGES, BOTTOM):
        return True  # a stage imports only itself and third-party code
    if source == LAB:
        return target == APP or (target != "accel" and imported != target)  # detector only through its __init__
    return False  # the app imports anything


def violations() -> list[tuple[str, str]]:
    found = {pair for package in PACKAGES for pair in imports(package) if against_direction(*pair)}
    return sorted(found)


def test_no_import_against_the_direction():
    unexpected = [pair for pair in violations() if pair not in ALLOWED]
    assert unexpected == [], f"imports against the direction (app -> stages; runtime never into the lab): {unexpected}"


def test_every_allowed_exception_is_still_needed():
    assert sorted(ALLOWED) == [pair for pair in violations() if pair in ALLOWED]


def import_graph() -> str:
    """The layout as a Mermaid graph: an arrow from each package to each package it imports (lazy imports too)."""
    edges = {
        (module.split(".")[0], imported.split(".")[0])
        for package in PACKAGES
        for module, imported in imports(package)
        if imported.split(".")[0] in PACKAGES and imported.split(".")[0] != module.split(".")[0]
    }
    return "\n".join(["```mermaid", "graph TD", *(f"  {a} --> {b}" for a, b in sorted(edges)), "```"])


def test_architecture_picture_is_drawn_from_the_code():
    picture = import_graph()
    assert "  binarycop --> lab" in picture and "  lab --> accel" in picture
    assert picture in (ROOT / "docs" / "architecture.md").read_text(), "regenerate: python tests/test_layout.py"


@pytest.mark.parametrize(
    "module, imported, wrong",
    [
        ("stats.status", "accel.arch", True),  # a stage into another stage
        ("accel.finn", "lab.fpga_estimate", True),  # the runtime into the lab
        ("detector.yunet", "binarycop.config", True),  # a stage into the app
        ("lab.scenes", "detector.faces", True),  # the lab into a stage's internals
        ("lab.train", "binarycop.cli", True),  # the lab into the app
        ("lab.scenes", "detector", False),
        ("lab.train", "accel.nets", False),
        ("binarycop.cli", "lab.train", False),
        ("binarycop.server", "stats.redis_store", False),
        ("accel.cpu", "accel.engine", False),
        ("names", "accel.arch", True),  # the bottom into anything of ours
        ("stats.web", "aiohttp", False),
        ("stats.status", "names", False),
    ],
)
def test_direction_rule(module, imported, wrong):
    assert against_direction(module, imported) is wrong


if __name__ == "__main__":
    print(import_graph())  # the picture in docs/architecture.md
