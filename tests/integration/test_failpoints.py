"""Failpoint specs: parsing, keys, the n-th hit, raising and parking (exit is exercised by
the e2e suites, in worker processes)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import failpoints


@pytest.fixture(autouse=True)
def _disarm() -> Iterator[None]:
    yield
    failpoints.disarm()


def test_unarmed_points_do_nothing() -> None:
    failpoints.hit("commit.after")
    failpoints.hit("no.such.point")  # not checked when nothing is armed: it costs nothing


@pytest.mark.parametrize(
    "spec",
    ["nope=exit", "commit.after=explode", "commit.after=park", "commit.after=exit:/tmp/x"],
)
def test_bad_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="failpoint"):
        failpoints.arm(spec)


def test_raise_fires_on_the_nth_hit_of_its_key_only() -> None:
    assert failpoints.arm("step.before_start:b=raise@2; commit.after=raise") == [
        "commit.after",
        "step.before_start:b",
    ]
    failpoints.hit("step.before_start", "a")  # another node: never
    failpoints.hit("step.before_start", "b")  # the first hit of b passes
    with pytest.raises(failpoints.FailpointError):
        failpoints.hit("step.before_start", "b")
    failpoints.hit("step.before_start", "b")  # only the second
    with pytest.raises(failpoints.FailpointError):
        failpoints.hit("commit.after")


def test_park_blocks_until_released(tmp_path: Path) -> None:
    release = tmp_path / "go"
    failpoints.arm(f"lease.renew=park:{release}")
    passed = threading.Event()

    def parked() -> None:
        failpoints.hit("lease.renew")
        passed.set()

    thread = threading.Thread(target=parked, daemon=True)
    thread.start()
    marker = tmp_path / "go.parked"
    for _ in range(500):
        if marker.exists():
            break
        passed.wait(0.01)
    assert marker.exists() and not passed.is_set()
    release.touch()
    assert passed.wait(10)
    thread.join(10)


async def test_async_park_lets_the_loop_run(tmp_path: Path) -> None:
    import asyncio

    release = tmp_path / "go"
    failpoints.arm(f"claim.after=park:{release}")
    waiting = asyncio.create_task(failpoints.reached("claim.after"))
    for _ in range(500):
        if (tmp_path / "go.parked").exists():
            break
        await asyncio.sleep(0.01)
    assert not waiting.done()
    release.touch()
    await asyncio.wait_for(waiting, 10)
