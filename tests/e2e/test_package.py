"""What ``pip install .`` (not editable) ships: the wheel holds the vendored Swagger UI
that the API docs load, and the migrations."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.e2e.processes import REPO

VENDOR = REPO / "src" / "conveyor" / "api" / "static" / "vendor"


@pytest.mark.timeout(300)
def test_the_wheel_ships_the_vendored_assets(tmp_path: Path) -> None:
    # Built from a copy: setuptools leaves build/ and egg-info behind in the tree it builds.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    out = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = out.glob("conveyor-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    vendored = sorted(str(p.relative_to(REPO / "src")) for p in VENDOR.rglob("*") if p.is_file())
    assert any(n.endswith("swagger-ui-bundle.js") for n in vendored), vendored
    missing = [n for n in vendored if n not in names]
    assert not missing, missing
    assert any(n.startswith("conveyor/store/migrations/versions/") for n in names)
