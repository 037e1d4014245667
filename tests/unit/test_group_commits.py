"""GroupCommits: the counts of transitions per group commit."""

from conveyor.store.commits import BATCH_BOUNDS, GroupCommits


def test_batch_sizes_fall_in_power_of_two_buckets_and_add_up() -> None:
    commits = GroupCommits()
    for size in (1, 1, 2, 3, 5, 200, 300):
        commits.record(size)
    assert commits.commits == 7
    assert commits.transitions == 512
    assert commits.largest == 300
    assert commits.mean == 512 / 7
    cumulative = dict(commits.cumulative())
    assert cumulative["1"] == 2
    assert cumulative["2"] == 3
    assert cumulative["4"] == 4
    assert cumulative["8"] == 5
    assert cumulative[str(BATCH_BOUNDS[-1])] == 6
    assert cumulative["+Inf"] == 7
    assert "group commits 7 carrying 512 transitions (mean 73.1, largest 300)" in (
        commits.summary()
    )


def test_nothing_recorded_reads_as_zero() -> None:
    commits = GroupCommits()
    assert commits.mean == 0.0
    assert commits.cumulative()[-1] == ("+Inf", 0)
