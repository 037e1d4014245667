"""A model, not a measurement: workspaces partitioned across K PostgreSQL clusters, each a
group-committing primary, under a uniform and a skewed (Zipf) workspace load.

Run from the repository root (no database, no Conveyor import; standard library only)::

    python bench/simulate_shards.py
    python bench/simulate_shards.py --commit-ms 2.1 --transition-ms 0.35 --zipf 1.1

The model, per cluster: one commit queue. When the primary is free and transitions are
waiting, it commits up to ``--max-batch`` of them together in ``commit-ms + n *
transition-ms`` (the flush, then the work per transition: the group commit the store does).
One commit at a time is not a simplification for Conveyor on PostgreSQL: every write
transaction sends a NOTIFY, and PostgreSQL serialises the commits of notifying transactions
on one cluster-wide lock held until the commit is flushed (``PreCommit_Notify`` in
src/backend/commands/async.c), so they cannot share a WAL flush.
An execution of ``--steps`` steps is ``steps + 2`` transitions in a row (the claim, the start
of the first step, each finished step with the start of the next, and the finish), each
issued ``--step-ms`` after the previous one committed (the worker's own time: workers are
stateless and assumed plentiful, so only the database is a resource). Executions arrive as a
Poisson process; each belongs to a workspace drawn from the distribution, and a workspace
lives on exactly one cluster (no execution spans workspaces).

Two placements: ``hash`` (workspace id hashed onto a cluster, what a router without load
information does) and ``balanced`` (workspaces placed largest first onto the least loaded
cluster, what a rebalancer that moves workspaces converges to). The largest workspace alone
caps the speedup: it cannot be split.

Calibrate ``--commit-ms`` and ``--transition-ms`` from bench/scaling.py (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import math
import random
from dataclasses import dataclass


@dataclass
class Model:
    commit_ms: float
    transition_ms: float
    max_batch: int
    steps: int
    step_ms: float

    @property
    def transitions(self) -> int:
        return self.steps + 2

    def capacity(self) -> float:
        """Executions/s one cluster sustains with full batches."""
        batch = self.max_batch
        per_batch_s = (self.commit_ms + batch * self.transition_ms) / 1000
        return batch / per_batch_s / self.transitions


def zipf_shares(workspaces: int, s: float) -> list[float]:
    weights = [1 / (rank**s) for rank in range(1, workspaces + 1)] if s > 0 else [1.0] * workspaces
    total = sum(weights)
    return [w / total for w in weights]


def place(shares: list[float], clusters: int, how: str) -> list[int]:
    if how == "hash":
        return [
            int.from_bytes(hashlib.sha256(f"ws-{i}".encode()).digest()[:8], "big") % clusters
            for i in range(len(shares))
        ]
    load = [0.0] * clusters
    placement = [0] * len(shares)
    for i in sorted(range(len(shares)), key=lambda i: -shares[i]):
        target = min(range(clusters), key=lambda c: load[c])
        placement[i] = target
        load[target] += shares[i]
    return placement


def cluster_shares(shares: list[float], placement: list[int], clusters: int) -> list[float]:
    out = [0.0] * clusters
    for share, cluster in zip(shares, placement, strict=True):
        out[cluster] += share
    return out


def simulate(
    model: Model, rate: float, shares: list[float], seconds: float, seed: int = 1
) -> list[float]:
    """Completion latencies (ms) of executions that arrive in ``seconds`` at ``rate``/s
    on clusters whose load shares are ``shares``."""
    rng = random.Random(seed)
    latencies: list[float] = []
    for cluster, share in enumerate(shares):
        if share <= 0:
            continue
        latencies += _one_cluster(model, rate * share, seconds, rng, cluster)
    return latencies


def _one_cluster(
    model: Model, rate: float, seconds: float, rng: random.Random, _cluster: int
) -> list[float]:
    # Events: (time s, kind, execution, transitions left). kind 0 = a transition is ready.
    events: list[tuple[float, int, int, int]] = []
    started: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if t > seconds:
            break
        started.append(t)
        heapq.heappush(events, (t, 0, len(started) - 1, model.transitions))
    queue: list[tuple[int, int]] = []
    busy_until = 0.0
    latencies: list[float] = []
    while events or queue:
        # The next commit starts when the primary is free and something is ready.
        now = busy_until if queue else max(busy_until, events[0][0])
        while events and events[0][0] <= now:
            _, _, execution, left = heapq.heappop(events)
            queue.append((execution, left))
        batch, queue = queue[: model.max_batch], queue[model.max_batch :]
        busy_until = now + (model.commit_ms + len(batch) * model.transition_ms) / 1000
        for execution, left in batch:
            if left == 1:
                latencies.append((busy_until - started[execution]) * 1000)
            else:
                ready = busy_until + model.step_ms / 1000
                heapq.heappush(events, (ready, 0, execution, left - 1))
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--commit-ms", type=float, default=2.0, help="one flush (pgbench -c 1)")
    parser.add_argument(
        "--transition-ms", type=float, default=0.4, help="primary time per transition"
    )
    parser.add_argument("--max-batch", type=int, default=256, help="transitions per commit")
    parser.add_argument("--steps", type=int, default=5, help="steps per execution")
    parser.add_argument("--step-ms", type=float, default=1.0, help="worker time per step")
    parser.add_argument("--workspaces", type=int, default=1000)
    parser.add_argument("--zipf", type=float, default=1.1, help="skew exponent (0: uniform)")
    parser.add_argument("--clusters", default="1,2,4,8")
    parser.add_argument("--load", type=float, default=0.7, help="offered, of the ideal capacity")
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated arrival window")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = Model(args.commit_ms, args.transition_ms, args.max_batch, args.steps, args.step_ms)
    per_cluster = model.capacity()
    print(
        f"model: commit {args.commit_ms} ms + {args.transition_ms} ms per transition, batches "
        f"up to {args.max_batch}, {model.transitions} transitions per execution, "
        f"{args.workspaces} workspaces; one cluster sustains {per_cluster:,.0f} executions/s "
        f"({per_cluster * args.steps:,.0f} steps/s)\n"
    )
    print(
        "| clusters | workspaces | placement | largest cluster's share | max executions/s "
        f"| offered/s ({args.load:.0%} of K x one) | p50 ms | p99 ms | busiest cluster |"
    )
    print("|--:|---|---|--:|--:|--:|--:|--:|--:|")
    for clusters in (int(c) for c in args.clusters.split(",")):
        for label, s in (("uniform", 0.0), (f"Zipf {args.zipf:g}", args.zipf)):
            shares = zipf_shares(args.workspaces, s)
            for how in ("hash", "balanced"):
                if clusters == 1 and how == "balanced":
                    continue
                loads = cluster_shares(shares, place(shares, clusters, how), clusters)
                top = max(loads)
                sustainable = per_cluster / top
                offered = args.load * clusters * per_cluster
                busiest = offered * top / per_cluster
                latencies = simulate(model, offered, loads, args.seconds)
                p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
                print(
                    f"| {clusters} | {label} | {how} | {top:.1%} | {sustainable:,.0f} "
                    f"| {offered:,.0f} | {p50:,.0f} | {p99:,.0f} "
                    f"| {busiest:.0%} of its capacity{' (overloaded)' if busiest >= 1 else ''} |"
                )


if __name__ == "__main__":
    main()
