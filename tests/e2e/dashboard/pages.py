"""Page objects: what a person finds on each dashboard page, by role and label."""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Locator, Page


@dataclass
class SignInPage:
    page: Page

    def open(self) -> SignInPage:
        self.page.goto("/signin")
        return self

    @property
    def email(self) -> Locator:
        return self.page.get_by_label("Email")

    @property
    def password(self) -> Locator:
        return self.page.get_by_label("Password")

    @property
    def alert(self) -> Locator:
        return self.page.get_by_role("alert")

    def sign_in(self, email: str, password: str) -> None:
        self.email.fill(email)
        self.password.fill(password)
        self.page.get_by_role("button", name="Sign in").click()


@dataclass
class Layout:
    """What every signed-in page shares: the navigation and the running indicator."""

    page: Page

    def nav(self, name: str) -> Locator:
        return self.page.get_by_role("navigation", name="Main").get_by_role("link", name=name)

    @property
    def running(self) -> Locator:
        return self.page.locator("#running-indicator [data-running-count]")

    def sign_out(self) -> None:
        self.page.locator("details.user-menu summary").click()
        self.page.get_by_role("button", name="Sign out").click()


@dataclass
class WorkflowsPage(Layout):
    def open(self, workspace: str = "default") -> WorkflowsPage:
        self.page.goto(f"/w/{workspace}/workflows")
        return self

    def row(self, name: str) -> Locator:
        return self.page.get_by_role("row").filter(has=self.page.get_by_role("link", name=name))

    def create(self, yaml: str) -> None:
        self.page.get_by_label("Definition (YAML)").fill(yaml)
        self.page.get_by_role("button", name="Create workflow").click()
