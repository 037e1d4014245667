"""The execution page as a person finds it: status, graph nodes, steps and the actions."""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Locator

from tests.e2e.dashboard.pages import Layout


@dataclass
class ExecutionPage(Layout):
    def open(self, execution_id: str, workspace: str = "default") -> ExecutionPage:
        self.page.goto(f"/w/{workspace}/executions/{execution_id}")
        return self

    def current_id(self) -> str:
        return self.page.url.rstrip("/").rsplit("/", 1)[-1].split("#")[0]

    @property
    def status(self) -> Locator:
        return self.page.get_by_role("heading", level=1).locator(".badge")

    @property
    def error(self) -> Locator:
        return self.page.locator('[data-field="error"]')

    @property
    def blocked(self) -> Locator:
        return self.page.locator('[data-field="blocked"]')

    @property
    def relations(self) -> Locator:
        return self.page.get_by_role("navigation", name="Related executions")

    @property
    def timeline(self) -> Locator:
        return self.page.locator("#execution-timeline")

    def node(self, node_id: str) -> Locator:
        return self.page.locator(f'#execution-graph g.node[data-node-id="{node_id}"]')

    def step(self, node_id: str) -> Locator:
        return self.page.locator(f'details.step[data-node-id="{node_id}"]')

    def action(self, name: str) -> Locator:
        return self.page.get_by_role("group", name="Execution actions").get_by_role(
            "button", name=name, exact=True
        )
