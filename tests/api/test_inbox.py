"""The inbox endpoints (both backends): notifications and tasks made by notify and
task.create steps, listed, marked read / done / reopened; who sees what; a retried step
makes nothing twice; each new one is an event of its execution."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete

from conveyor.nodes.base import NodeContext, node
from conveyor.nodes.messaging import Notify, NotifyConfig, TaskConfig, TaskCreate
from conveyor.store import accounts
from conveyor.store.accounts import Role
from conveyor.store.tables import executions
from tests.api.conftest import Api, B
from tests.api.support import problem_of


def inbox_workflow(member_email: str) -> dict[str, Any]:
    return {
        "name": "order",
        "nodes": [
            {
                "id": "everyone",
                "type": "notify",
                "config": {"title": "Order {{ input.id }} in", "message": "for all"},
            },
            {
                "id": "personal",
                "type": "notify",
                "needs": ["everyone"],
                "config": {"title": "Just for you", "to": member_email.upper()},
            },
            {
                "id": "review",
                "type": "task.create",
                "needs": ["personal"],
                "config": {
                    "title": "Review order {{ input.id }}",
                    "body": "check the address",
                    "assignee": member_email,
                    "due_in": "2d",
                },
            },
            {
                "id": "outsider",
                "type": "task.create",
                "needs": ["review"],
                "config": {"title": "Call the carrier", "assignee": "carrier@example.net"},
            },
        ],
    }


async def test_steps_fill_the_inbox_and_people_work_through_it(api: Api) -> None:
    member = await api.caller(Role.MEMBER)
    other = await api.caller(Role.MEMBER)
    as_member, as_other = api.as_(member), api.as_(other)
    base = api.ws()
    done = await api.run(inbox_workflow(member.email), {"id": 7})
    assert done["status"] == "succeeded", done
    execution_id = done["id"]

    mine = (await as_member.get(f"{base}/notifications")).json()
    assert [n["title"] for n in mine] == ["Just for you", "Order 7 in"]
    assert all(n["execution_id"] == execution_id for n in mine)
    assert mine[0]["workflow_name"] == "order" and mine[0]["recipient_id"] == member.user_id
    assert mine[1]["node_id"] == "everyone" and mine[1]["message"] == "for all"
    theirs = (await as_other.get(f"{base}/notifications")).json()
    assert [n["title"] for n in theirs] == ["Order 7 in"]
    assert (await as_member.get(f"{base}/inbox")).json() == {"unread": 2, "open_tasks": 1}
    assert (await as_other.get(f"{base}/inbox")).json() == {"unread": 1, "open_tasks": 0}

    # someone else's personal notification is not there for them
    personal = mine[0]["id"]
    problem_of(await as_other.post(f"{base}/notifications/{personal}/read"), 404)
    read = await as_member.post(f"{base}/notifications/{personal}/read")
    assert read.status_code == 200, read.text
    assert read.json()["read_by"] == member.user_id and read.json()["read_at"] is not None
    again = await as_member.post(f"{base}/notifications/{personal}/read")
    assert again.json()["read_at"] == read.json()["read_at"]
    unread = (await as_member.get(f"{base}/notifications", params={"unread": "true"})).json()
    assert [n["title"] for n in unread] == ["Order 7 in"]

    # reading all as the other member marks the workspace's notification read for everyone
    everyone = await as_other.post(f"{base}/notifications/read-all")
    assert everyone.json() == {"marked": 1, "counts": {"unread": 0, "open_tasks": 0}}
    assert (await as_member.get(f"{base}/inbox")).json()["unread"] == 0

    tasks = (await as_member.get(f"{base}/tasks", params={"assignee": "me"})).json()
    assert [t["title"] for t in tasks] == ["Review order 7"]
    task = tasks[0]
    assert task["assignee_id"] == member.user_id and task["assignee_email"] == member.email
    assert task["status"] == "open" and task["body"] == "check the address"
    due = datetime.fromisoformat(task["due_at"]) - datetime.fromisoformat(task["created_at"])
    assert timedelta(days=2) - timedelta(minutes=1) < due <= timedelta(days=2)
    everyone_tasks = (await as_other.get(f"{base}/tasks")).json()
    assert [t["title"] for t in everyone_tasks] == ["Call the carrier", "Review order 7"]
    by_email = await api.http.get(f"{base}/tasks", params={"assignee": "CARRIER@example.net"})
    assert [t["title"] for t in by_email.json()] == ["Call the carrier"]
    assert by_email.json()[0]["assignee_id"] is None
    # the carrier signs up later: the task assigned to their email is theirs
    carrier_id = await api.store.write(
        accounts.create_user, "Carrier@example.net", "a long password", api.store.clock.now()
    )
    await api.store.write(
        accounts.set_role, carrier_id, api.owner.workspace_id, Role.MEMBER, api.store.clock.now()
    )
    key, _ = await api.store.write(
        accounts.create_api_key,
        api.owner.workspace_id,
        carrier_id,
        "carrier",
        Role.MEMBER,
        api.store.clock.now(),
    )
    as_carrier = api.new_client({"Authorization": f"Bearer {key}"})
    theirs = (await as_carrier.get(f"{base}/tasks", params={"assignee": "me"})).json()
    assert [t["title"] for t in theirs] == ["Call the carrier"]
    assert (await as_carrier.get(f"{base}/inbox")).json() == {"unread": 0, "open_tasks": 1}

    closed = await as_other.post(f"{base}/tasks/{task['id']}/done")
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "done" and closed.json()["done_by"] == other.user_id
    assert (await as_member.get(f"{base}/tasks", params={"assignee": "me"})).json() == []
    finished = (await api.http.get(f"{base}/tasks", params={"status": "done"})).json()
    assert [t["id"] for t in finished] == [task["id"]]
    reopened = (await as_member.post(f"{base}/tasks/{task['id']}/reopen")).json()
    assert (reopened["status"], reopened["done_at"], reopened["done_by"]) == ("open", None, None)
    assert (await as_member.get(f"{base}/inbox")).json() == {"unread": 0, "open_tasks": 1}

    types = await api.event_types(execution_id)
    assert types.count("notification.created") == 2 and types.count("task.created") == 2


async def test_a_retried_step_makes_one_notification_and_one_task(api: Api) -> None:
    attempts: list[int] = []

    @node("test.inbox_then_fail", config=TaskConfig)
    async def flaky(ctx: NodeContext, config: TaskConfig) -> dict[str, Any]:
        """Makes its notification and task, then fails on its first attempt."""
        attempts.append(ctx.attempt)
        note = await Notify().run(ctx, NotifyConfig(title=config.title))
        task = await TaskCreate().run(ctx, config)
        if ctx.attempt == 1:
            raise RuntimeError("lost after the side effects")
        return {**note, **task}

    api.conveyor.registry.register(flaky)
    definition = {
        "name": "retried",
        "nodes": [
            {
                "id": "make",
                "type": "test.inbox_then_fail",
                "config": {"title": "once"},
                "retry": {"max_attempts": 3, "initial_interval": "10ms"},
            }
        ],
    }
    done = await api.run(definition)
    assert done["status"] == "succeeded", done
    assert attempts == [1, 2]
    base = api.ws()
    notes = (await api.http.get(f"{base}/notifications")).json()
    tasks = (await api.http.get(f"{base}/tasks")).json()
    assert [n["title"] for n in notes] == ["once"] and [t["title"] for t in tasks] == ["once"]
    result = str((await api.http.get(f"{base}/executions/{done['id']}")).json()["result"])
    assert notes[0]["id"] in result and tasks[0]["id"] in result  # the second attempt's
    types = await api.event_types(done["id"])
    assert types.count("notification.created") == 1 and types.count("task.created") == 1


async def test_an_unknown_recipient_fails_the_step_without_retrying(api: Api) -> None:
    definition = {
        "name": "nobody",
        "nodes": [
            {
                "id": "n",
                "type": "notify",
                "config": {"title": "x", "to": "nobody@example.org"},
                "retry": {"max_attempts": 3, "initial_interval": "10ms"},
            }
        ],
    }
    done = await api.run(definition)
    assert done["status"] == "failed"
    assert "nobody@example.org" in done["error"]["message"]
    assert done["error"]["non_retryable"] is True
    assert (await api.http.get(f"{api.ws()}/notifications")).json() == []


async def test_viewers_read_other_workspaces_see_nothing_and_bad_queries_fail(api: Api) -> None:
    done = await api.run(inbox_workflow(api.owner.email), {"id": 1})
    assert done["status"] == "succeeded", done
    base = api.ws()
    viewer = api.as_(await api.caller(Role.VIEWER))
    notes = (await viewer.get(f"{base}/notifications")).json()
    assert [n["title"] for n in notes] == ["Order 1 in"]
    problem_of(await viewer.post(f"{base}/notifications/read-all"), 403)
    task_id = (await viewer.get(f"{base}/tasks")).json()[0]["id"]
    assert (await viewer.get(f"{base}/tasks/{task_id}")).json()["id"] == task_id
    problem_of(await viewer.post(f"{base}/tasks/{task_id}/done"), 403)

    other = api.as_(await api.caller(Role.OWNER, B))
    assert (await other.get(f"{api.ws(B)}/notifications")).json() == []
    assert (await other.get(f"{api.ws(B)}/tasks")).json() == []
    problem_of(await other.post(f"{api.ws(B)}/tasks/{task_id}/done"), 404)

    problem_of(await api.http.get(f"{base}/tasks", params={"status": "closed"}), 422)
    problem_of(await api.http.get(f"{base}/notifications", params={"limit": 0}), 422)
    problem_of(await api.http.get(f"{base}/notifications", params={"unraed": "true"}), 400)
    first = (await api.http.get(f"{base}/tasks", params={"limit": 1})).json()
    rest = await api.http.get(f"{base}/tasks", params={"before": first[0]["id"]})
    assert [t["title"] for t in first + rest.json()] == ["Call the carrier", "Review order 1"]

    # retention deleting the execution takes its notifications; its tasks stay
    def prune(conn: Connection) -> None:
        conn.execute(delete(executions).where(executions.c.id == done["id"]))

    await api.store.write(prune)
    assert (await api.http.get(f"{base}/notifications")).json() == []
    kept = (await api.http.get(f"{base}/tasks")).json()
    assert [(t["title"], t["execution_id"]) for t in kept] == [
        ("Call the carrier", None),
        ("Review order 1", None),
    ]
