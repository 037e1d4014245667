"""``conveyor server`` runs the scheduler: a schedule created over real HTTP fires, its
occurrences are listed by the API and counted in /metrics, read with the operator's scrape
token (both backends)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_server import API, WORKSPACE, ServerProcess, api_key

SCRAPE_TOKEN = "scrape-token-of-the-e2e-server"


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        database_url,
        tmp_path / "server.log",
        concurrency=2,
        env={"CONVEYOR_METRICS_TOKEN": SCRAPE_TOKEN},
    )
    try:
        process.wait_ready(within=30)
        yield process
    finally:
        process.close()


@pytest.mark.timeout(90)
def test_the_server_fires_a_schedule_created_over_http(server: ServerProcess) -> None:
    headers = {"authorization": f"Bearer {api_key(server.base_url)}"}
    base = f"{API}/workspaces/{WORKSPACE}"
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        definition = {
            "name": "served",
            "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}],
        }
        assert client.post(f"{base}/workflows", json={"definition": definition}).is_success
        created = client.post(
            f"{base}/workflows/served/schedules",
            json={"id": "often", "cron": "*/1 * * * * *", "overlap": "allow"},
        )
        assert created.status_code == 201, created.text
        url = f"{base}/schedules/{created.json()['id']}"
        deadline = time.monotonic() + 45
        while True:
            fires = client.get(f"{url}/fires", params={"status": "started"}).json()
            if len(fires) >= 3:
                break
            assert time.monotonic() < deadline, server.log_path.read_text()[-3000:]
            time.sleep(0.2)
        execution = client.get(f"{base}/executions/{fires[-1]['execution_id']}").json()
        assert execution["trigger_type"] == "schedule"
        assert client.post(f"{url}/disable").json()["enabled"] is False
        assert client.get("/metrics").status_code == 403  # a member's key
        scraped = httpx.get(
            f"{server.base_url}/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}
        )
        assert scraped.status_code == 200, scraped.text
        metrics = scraped.text
        line = next(
            x
            for x in metrics.splitlines()
            if x.startswith("conveyor_schedule_occurrences_total") and 'status="started"' in x
        )
        assert float(line.split()[-1]) >= 3
