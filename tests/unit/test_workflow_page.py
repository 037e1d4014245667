"""The workflow page's pure helpers: which two versions its diff compares, and how each line
of a unified diff is classified for colour and screen readers."""

from __future__ import annotations

from conveyor.web.pages.workflow import diff_lines, diff_pair


def test_the_diff_compares_the_previous_version_with_the_latest_by_default() -> None:
    assert diff_pair([3, 2, 1], (None, None)) == (2, 3)
    assert diff_pair([3, 2, 1], (1, 3)) == (1, 3)
    assert diff_pair([3, 2, 1], (3, 1)) == (3, 1)


def test_a_version_that_does_not_exist_falls_back_to_the_default_pair() -> None:
    assert diff_pair([3, 2, 1], (1, 9)) == (2, 3)
    assert diff_pair([3, 2, 1], (None, 1)) == (2, 3)


def test_one_version_has_nothing_to_compare() -> None:
    assert diff_pair([1], (None, None)) is None
    assert diff_pair([], (1, 1)) is None


def test_each_line_of_a_unified_diff_has_its_kind() -> None:
    unified = "--- a v1\n+++ a v2\n@@ -1,3 +1,3 @@\n name: a\n-  duration: 2s\n+  duration: 5s\n"
    assert diff_lines(unified) == [
        ("file", "--- a v1"),
        ("file", "+++ a v2"),
        ("hunk", "@@ -1,3 +1,3 @@"),
        ("same", " name: a"),
        ("removed", "-  duration: 2s"),
        ("added", "+  duration: 5s"),
    ]
    assert diff_lines("") == []
    # Inside a hunk, a removed line that starts with "--" is still a removed line.
    assert diff_lines("--- a\n+++ b\n@@ -1 +1 @@\n---- x\n+++ y\n")[3:] == [
        ("removed", "---- x"),
        ("added", "+++ y"),
    ]
