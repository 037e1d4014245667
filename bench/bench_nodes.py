"""Node types for the benchmarks, loaded the way users load theirs: ``conveyor worker
--plugin bench_nodes`` with this folder on ``PYTHONPATH`` (bench/workers.py does that for W5).

``bench.burn`` keeps a CPU busy for ``milliseconds`` (a busy loop on ``time.perf_counter``,
not a sleep) and returns how long it took and how much CPU its thread used, so the harness
can subtract the work from the wall time and keep only what the engine added. It is a plain
``def`` node, as the README says CPU-bound node code should be: it runs in the worker's
thread pool, so the event loop keeps serving leases and controls meanwhile.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from conveyor.nodes.base import NodeContext, node


class BurnConfig(BaseModel):
    milliseconds: float = Field(default=10.0, gt=0, le=10_000)


@node("bench.burn", config=BurnConfig, description="Busy-loop the CPU (benchmark W5)")
def burn(ctx: NodeContext, config: BurnConfig) -> dict[str, Any]:
    seconds = config.milliseconds / 1000
    cpu = time.thread_time()
    start = time.perf_counter()
    spins = 0
    while time.perf_counter() - start < seconds:
        spins += 1
    wall = time.perf_counter() - start
    return {"ms": wall * 1000, "cpu_ms": (time.thread_time() - cpu) * 1000, "spins": spins}
