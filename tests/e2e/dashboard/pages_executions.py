"""The executions page (the monitor) as a person finds it: by role, label and text."""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Locator, expect

from tests.e2e.dashboard.pages import Layout


@dataclass
class ExecutionsPage(Layout):
    def open(self, query: str = "", workspace: str = "default") -> ExecutionsPage:
        self.page.goto(f"/w/{workspace}/executions" + (f"?{query}" if query else ""))
        return self

    def wait_live(self) -> None:
        """Until the page's live channel is connected (it replays what happened since the
        page was made, so waiting here is for events that must arrive after the wait)."""
        expect(self.page.locator('[data-live-status="live"]')).to_be_attached()

    @property
    def running_now(self) -> Locator:
        """The big number at the top of the monitor."""
        return self.page.locator("[data-monitor-running]")

    def count(self, status: str) -> Locator:
        return self.page.locator(f'[data-count-status="{status}"]')

    @property
    def filters(self) -> Locator:
        return self.page.get_by_role("search", name="Filter executions")

    def status_filter(self, status: str) -> Locator:
        return self.filters.get_by_role("group", name="Status").get_by_label(status, exact=True)

    def apply_filters(self) -> None:
        self.filters.get_by_role("button", name="Apply filters").click()

    @property
    def table(self) -> Locator:
        return self.page.get_by_role("table")

    @property
    def rows(self) -> Locator:
        return self.table.locator("tbody tr")

    def row(self, execution_id: str) -> Locator:
        return self.rows.filter(has=self.page.get_by_role("link", name=execution_id))

    @property
    def bulk(self) -> Locator:
        return self.page.get_by_role("group", name="Bulk actions")

    @property
    def dialog(self) -> Locator:
        return self.page.get_by_role("dialog")

    @property
    def bulk_result(self) -> Locator:
        return self.page.locator("#bulk-result")
