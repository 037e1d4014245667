"""Group-commit counts: how many write transactions a store ran, and how many runner
transitions shared each group commit (``Store.apply``).

Counted in memory per process (a few integer additions per commit, no lock: the store's
committer runs on one event loop). ``conveyor worker`` logs them when it stops, and
``/metrics`` exposes the server's own (its embedded worker's) as a histogram, so an operator
sees whether a busy worker is batching."""

from __future__ import annotations

from dataclasses import dataclass, field

# Upper bounds of the batch-size buckets (transitions per group commit); the last bucket
# is unbounded. Powers of two up to the store's largest batch.
BATCH_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class GroupCommits:
    """Counters since the store was opened."""

    write_transactions: int = 0  # every write transaction, group commits included
    commits: int = 0  # group commits of runner transitions
    transitions: int = 0  # transitions they carried
    largest: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BATCH_BOUNDS) + 1))

    def record(self, size: int) -> None:
        self.commits += 1
        self.transitions += size
        self.largest = max(self.largest, size)
        for i, bound in enumerate(BATCH_BOUNDS):
            if size <= bound:
                self.buckets[i] += 1
                return
        self.buckets[-1] += 1

    @property
    def mean(self) -> float:
        return self.transitions / self.commits if self.commits else 0.0

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus-style ``le`` buckets: (bound, commits of at most that many)."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, n in zip((*map(str, BATCH_BOUNDS), "+Inf"), self.buckets, strict=True):
            total += n
            out.append((bound, total))
        return out

    def summary(self) -> str:
        return (
            f"write transactions {self.write_transactions}, group commits {self.commits} "
            f"carrying {self.transitions} transitions (mean {self.mean:.1f}, "
            f"largest {self.largest})"
        )
