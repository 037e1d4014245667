"""docs/architecture.md tells the truth: every file it names exists, it points at no design
document outside the repository, and its diagram shows every layer, the API server included."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"
PACKAGE = REPO / "src" / "conveyor"


def _text() -> str:
    return DOC.read_text()


def test_every_named_file_exists() -> None:
    named = set(re.findall(r"`([\w/.-]+\.(?:py|md))`", _text()))
    named |= set(re.findall(r"\b([\w-]+\.md)\b", _text()))
    assert named
    files = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*") if p.is_file()}
    everywhere = {p.name for p in REPO.rglob("*.md") if ".venv" not in p.parts}
    missing = [n for n in named if n not in files and n not in everywhere]
    assert not missing, missing


def test_the_diagram_shows_every_layer_and_nothing_is_later() -> None:
    text = _text()
    diagram = text.split("```")[1]
    assert "later" not in diagram.lower(), diagram
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    (contract,) = config["tool"]["importlinter"]["contracts"]
    layers = [name for layer in contract["layers"] for name in layer.split(" | ")]
    words = {"cli": "CLI", "server": "conveyor server", "api": "FastAPI", "live": "live.Feed"}
    for layer in layers:
        short = layer.removeprefix("conveyor.")
        if short in ("settings", "durations", "errors"):
            continue  # below the diagram: named in the layer line
        assert words.get(short, short) in diagram, short
    line = re.search(r"Layers only import downward \(`([^`]+)`\)", text)
    assert line is not None
    assert [n.strip() for n in re.split(r"[>|]", line[1])] == [
        name.removeprefix("conveyor.") for name in layers
    ]
