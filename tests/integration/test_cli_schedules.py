"""``conveyor schedules ...`` as users run it (real processes, both backends)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tests.integration.test_cli import conveyor

DEFINITION = """
name: reports
nodes:
  - id: a
    type: transform
    config: {output: 1}
triggers:
  - type: schedule
    id: quarterly
    cron: "*/15 * * * *"
    timezone: America/New_York
"""
KEY = {"CONVEYOR_SECRET_KEY": os.environ["CONVEYOR_SECRET_KEY"]}


def test_list_show_disable_enable_backfill_delete(tmp_path: Path, database_url: str) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        done = conveyor(*args, cwd=tmp_path, database=database_url, env=KEY)
        return done.returncode, done.stdout, done.stderr

    (tmp_path / "reports.yaml").write_text(DEFINITION)
    assert run("workflows", "apply", "reports.yaml")[0] == 0
    code, stdout, stderr = run("schedules", "list", "reports", "--json")
    assert code == 0, stderr
    (schedule,) = json.loads(stdout)
    schedule_id = schedule["id"]
    assert schedule["key"] == "quarterly" and len(schedule["next_fire_times"]) == 5

    code, stdout, _ = run("schedules", "show", schedule_id)
    assert code == 0
    times = re.findall(r"^  (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00)$", stdout, re.M)
    assert len(times) == 5 and all(t[14:16] in ("00", "15", "30", "45") for t in times)

    assert "disabled" in run("schedules", "disable", schedule_id)[1]
    assert "enabled" in run("schedules", "enable", schedule_id)[1]

    window = ("--start", "2026-01-05T10:00:00Z", "--end", "2026-01-05T11:00:00Z")
    code, stdout, _ = run("schedules", "backfill", schedule_id, *window, "--dry-run")
    assert code == 0 and "4 occurrences" in stdout and "would start 4" in stdout
    code, stdout, _ = run("schedules", "backfill", schedule_id, *window)
    assert code == 0 and "started 4 executions" in stdout
    code, stdout, _ = run("schedules", "backfill", schedule_id, *window)
    assert code == 0 and "started 0 executions" in stdout and "4 had already" in stdout

    # Bad input exits 2 with one clear line.
    for args, message in (
        (("--start", "yesterday", "--end", "2026-01-05T11:00:00Z"), "not an ISO 8601"),
        (("--start", "2026-01-05T10:00:00", "--end", "2026-01-05T11:00:00"), "time zone"),
        (("--start", "2025-01-01T00:00:00Z", "--end", "2026-01-01T00:00:00Z"), "at most 1000"),
    ):
        code, _, stderr = run("schedules", "backfill", schedule_id, *args)
        assert code == 2 and message in stderr, stderr
    code, _, stderr = run("schedules", "show", "no-such-schedule")
    assert code == 2 and "not found" in stderr

    assert run("schedules", "delete", schedule_id)[0] == 0
    assert json.loads(run("schedules", "list", "--json")[1]) == []
