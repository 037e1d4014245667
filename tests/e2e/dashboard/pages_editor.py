"""The workflow editor's page object: the YAML view, its problems, the canvas and its forms,
found by role and label."""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import Locator, Page, expect


@dataclass
class EditorPage:
    page: Page

    def open_new(self, workspace: str = "default") -> EditorPage:
        return self.open("new", workspace)

    def open(self, workflow: str, workspace: str = "default") -> EditorPage:
        self.page.goto(f"/w/{workspace}/workflows/{workflow}/edit")
        expect(self.state).to_contain_text("No changes")
        return self

    @property
    def state(self) -> Locator:
        return self.page.locator("#editor-state")

    @property
    def yaml(self) -> Locator:
        return self.page.get_by_role("textbox", name="Definition (YAML)")

    def yaml_text(self) -> str:
        return str(
            self.page.evaluate(
                "() => [...document.querySelectorAll('#yaml-editor .cm-line')]"
                ".map(l => l.textContent).join('\\n')"
            )
        )

    def type_yaml(self, text: str) -> None:
        """Replace the whole text, as a paste does (no auto-indent)."""
        self.yaml.click()
        self.page.keyboard.press("ControlOrMeta+a")
        self.page.keyboard.insert_text(text)

    def line(self, number: int) -> Locator:
        return self.page.locator("#yaml-editor .cm-line").nth(number - 1)

    @property
    def problems(self) -> Locator:
        return self.page.get_by_role("region", name="Problems").get_by_role("listitem")

    @property
    def no_problems(self) -> Locator:
        return self.page.get_by_text("No problems: ready to save.")

    def node(self, node_id: str) -> Locator:
        return self.page.locator(f'#editor-graph g.node[data-node-id="{node_id}"]')

    def edge(self, source: str, target: str) -> Locator:
        return self.page.locator(
            f'#editor-graph g.edge[data-source="{source}"][data-target="{target}"]'
        )

    def add_node(self, search: str, title: str) -> None:
        self.page.get_by_label("Search node types").fill(search)
        self.page.get_by_role("button", name=f"Add {title}").click()

    def connect(self, source: str, target: str, branch: str | None = None) -> None:
        form = self.page.get_by_role("region", name="Connect nodes")
        form.get_by_label("From", exact=True).select_option(source)
        if branch is not None:
            form.get_by_label("Branch", exact=True).select_option(branch)
        form.get_by_label("To", exact=True).select_option(target)
        form.get_by_role("button", name="Connect").click()

    @property
    def node_form(self) -> Locator:
        return self.page.locator("#node-panel")

    def set_field(self, label: str, value: str) -> None:
        field = self.node_form.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Tab")  # a field applies on change, as when leaving it

    def save(self) -> None:
        self.page.get_by_role("button", name="Save").click()

    @property
    def save_error(self) -> Locator:
        return self.page.locator("#save-error")
