"""What the editor page computes on the server: the text it opens with, and its policy."""

from __future__ import annotations

from conveyor.engine.definition import WorkflowDefinition
from conveyor.web.csp import CSP, with_style_nonce
from conveyor.web.pages.editor import compact


def test_a_stored_definition_opens_without_its_defaults_and_stores_the_same_again() -> None:
    written = {
        "name": "x",
        "nodes": [
            {"id": "a", "type": "wait", "config": {"duration": 90}},
            {"id": "b", "type": "transform", "needs": "a", "config": {"output": 1}},
        ],
        "settings": {"priority": 5},
    }
    stored = WorkflowDefinition.model_validate(written).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    opened = compact(stored)
    assert opened == {
        "name": "x",
        "settings": {"priority": 5},
        "nodes": [
            {"id": "a", "type": "wait", "config": {"duration": 90}},
            {"id": "b", "type": "transform", "config": {"output": 1}, "needs": ["a"]},
        ],
    }
    again = WorkflowDefinition.model_validate(opened)
    assert again.model_dump(mode="json", by_alias=True, exclude_none=True) == stored


def test_the_style_nonce_allows_styles_only() -> None:
    policy = with_style_nonce("abc123")
    assert "style-src 'self' 'nonce-abc123';" in policy
    assert "script-src 'self';" in policy
    assert policy.replace(" 'nonce-abc123'", "") == CSP
