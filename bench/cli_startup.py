"""CLI startup: wall time of `conveyor --help` and `conveyor --version`, median of N runs.

    python bench/cli_startup.py [--runs 15] [--target 0.3]

Each run is a fresh process of the `conveyor` script next to this interpreter (the
virtualenv's entry point, exactly what a person types), so the time includes interpreter
start-up and every import the command line does before it answers. Exits 2 with
`BENCHMARK FAILED: ...` when a command fails or a median is above the target.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--help"], ["--version"])


def entry_point() -> str:
    script = Path(sys.executable).parent / "conveyor"
    if not script.exists():
        sys.exit(f"BENCHMARK FAILED: no conveyor script at {script} (pip install -e .)")
    return str(script)


def wall_times(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, check=False, timeout=60)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            sys.exit(f"BENCHMARK FAILED: {' '.join(command)} exited {done.returncode}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="processes per command")
    parser.add_argument("--target", type=float, default=0.3, help="seconds; fail above it")
    args = parser.parse_args()
    script = entry_point()
    # One unmeasured run per command warms the file cache (.pyc files, shared libraries).
    slow = []
    for arguments in COMMANDS:
        wall_times([script, *arguments], 1)
        times = wall_times([script, *arguments], args.runs)
        median = statistics.median(times)
        print(
            f"conveyor {' '.join(arguments):<10} median {median:.3f}s  "
            f"min {min(times):.3f}s  max {max(times):.3f}s  ({args.runs} runs)"
        )
        if median > args.target:
            slow.append(f"conveyor {' '.join(arguments)} median {median:.3f}s > {args.target}s")
    if slow:
        print("BENCHMARK FAILED: " + "; ".join(slow))
        sys.exit(2)


if __name__ == "__main__":
    main()
