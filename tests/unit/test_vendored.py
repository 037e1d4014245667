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
