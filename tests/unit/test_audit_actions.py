"""The audit trail's pure parts: an action named from a route's path, and details kept
small and free of secrets."""

from __future__ import annotations

import pytest

from conveyor.api.audit import action_of
from conveyor.store.audit import MAX_TEXT, redact


@pytest.mark.parametrize(
    ("method", "template", "params", "expected"),
    [
        ("POST", "/workspaces/{ws}/executions/{execution_id}/cancel", {}, "execution.cancel"),
        ("PUT", "/workspaces/{ws}/workflows/{workflow}", {}, "workflow.apply"),
        ("POST", "/workspaces/{ws}/workflows/{workflow}/schedules", {}, "schedule.create"),
        ("POST", "/workspaces/{ws}/executions/bulk", {}, "execution.bulk"),
        ("DELETE", "/workspaces/{ws}/api-keys/{key_id}", {}, "api_key.revoke"),
        ("PATCH", "/workspaces/{ws}", {}, "workspace.update"),
        ("POST", "/w/{ws}/workflows/{name}/{action}", {"action": "archive"}, "workflow.archive"),
        ("POST", "/w/{ws}/credentials/{name}", {}, "credential.set"),
        ("POST", "/w/{ws}/settings/limits", {}, "workspace.update"),
        ("POST", "/auth/login", {}, "signin.succeeded"),
        ("POST", "/signout", {}, "signout"),
        ("POST", "/workspaces/{ws}/some-things/{thing_id}/frob", {}, "some_thing.frob"),
    ],
)
def test_actions_are_named_from_the_route(
    method: str, template: str, params: dict[str, str], expected: str
) -> None:
    assert action_of(method, template, params)[0] == expected


def test_the_target_is_the_last_path_parameter_but_an_action() -> None:
    assert action_of("POST", "/w/{ws}/inbox/tasks/{task_id}/{action}", {"action": "done"}) == (
        "task.done",
        "task_id",
    )
    assert action_of("POST", "/workspaces/{ws}/executions/bulk", {})[1] is None


def test_details_mask_secret_names_and_stay_small() -> None:
    found = redact(
        {
            "name": "x" * 500,
            "Password": "hunter2",
            "nested": {"token": "t", "ok": [1, {"secret": "s"}]},
            "many": list(range(100)),
        }
    )
    assert found["name"] == "x" * MAX_TEXT
    assert found["Password"] == "***"
    assert found["nested"] == {"token": "***", "ok": [1, {"secret": "***"}]}
    assert len(found["many"]) == 20
