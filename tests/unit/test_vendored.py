"""Every vendored file of the dashboard is the one VENDORED.md lists (unmodified, pinned)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import conveyor

VENDOR = Path(conveyor.__file__).parent / "web/static/vendor"


def test_every_vendored_file_matches_its_recorded_checksum() -> None:
    listed = re.findall(r"^([0-9a-f]{64})  (\S+)$", (VENDOR / "VENDORED.md").read_text(), re.M)
    assert listed, "VENDORED.md lists no checksums"
    for digest, name in listed:
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    served = {p.relative_to(VENDOR).as_posix() for p in VENDOR.glob("*/*.js")}
    assert served == {name for _, name in listed}, "a vendored script is not listed"


def test_every_file_a_template_loads_ships_in_the_package() -> None:
    """Pages load their bundles (static/dist/, built by frontend/build.sh; .ci/bundle-check
    checks they match the sources) and vendored scripts: each must be there."""
    web = VENDOR.parent.parent
    named = set()
    for template in (web / "templates").rglob("*.html"):
        named |= set(re.findall(r'(?:src|href)="/static/([^"]+)"', template.read_text()))
    assert any(name.startswith("dist/") for name in named), "no template loads a bundle"
    missing = sorted(name for name in named if not (web / "static" / name).is_file())
    assert not missing, f"templates load files the package lacks: {missing}"
