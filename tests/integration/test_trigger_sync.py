"""Saving a version brings its declared triggers in step, by id (both backends)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from conveyor.app import Conveyor
from conveyor.errors import DefinitionError
from conveyor.store import triggers
from conveyor.store.tables import schedules, webhooks


def definition(*trigger_list: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "synced",
        "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}],
        "triggers": list(trigger_list),
    }


NIGHTLY = {"type": "schedule", "id": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris"}
HOOK = {"type": "webhook", "id": "github", "auth": {"mode": "signature", "scheme": "github"}}


async def rows(conveyor: Conveyor, table: Any) -> list[Any]:
    def read(conn: Any) -> list[Any]:
        return list(conn.execute(select(table).order_by(table.c.created_at)).mappings())

    return await conveyor.store.read(read)


async def test_unchanged_triggers_keep_their_rows(conveyor: Conveyor) -> None:
    first = await conveyor.apply(definition(NIGHTLY, HOOK))
    created = {c.key: c for c in first.triggers}
    assert {c.change for c in created.values()} == {"created"}
    assert created["github"].secret is not None and created["github"].secret.startswith("whsec_")
    assert created["nightly"].secret is None
    hook_row = (await rows(conveyor, webhooks))[0]
    # Encrypted at rest: the stored value is not the secret and decrypts to it.
    assert created["github"].secret not in hook_row["secret"]
    assert conveyor.keyring.decrypt(hook_row["secret"], f"webhook:{hook_row['id']}") == (
        created["github"].secret
    )

    # A new version that changes only a node: both triggers untouched.
    changed = definition(NIGHTLY, HOOK)
    changed["nodes"][0]["config"]["output"] = 2
    second = await conveyor.apply(changed)
    assert second.version == 2 and second.triggers == ()
    assert [r["id"] for r in await rows(conveyor, schedules)] == [created["nightly"].id]
    assert [r["token"] for r in await rows(conveyor, webhooks)] == [created["github"].token]


async def test_changed_timing_recomputes_and_removed_triggers_are_deleted(
    conveyor: Conveyor,
) -> None:
    await conveyor.apply(definition(NIGHTLY, HOOK))

    def set_next(conn: Any) -> None:
        conn.execute(schedules.update().values(next_fire_at=conveyor.store.clock.now()))

    await conveyor.store.write(set_next)
    edited = await conveyor.apply(definition({**NIGHTLY, "input": {"x": 1}}))
    assert {(c.key, c.change) for c in edited.triggers} == {
        ("nightly", "updated"),
        ("github", "deleted"),
    }
    (row,) = await rows(conveyor, schedules)
    assert row["next_fire_at"] is not None  # input changed, timing did not
    retimed = await conveyor.apply(definition({**NIGHTLY, "cron": "0 4 * * *"}))
    assert [c.change for c in retimed.triggers] == ["updated"]
    (row,) = await rows(conveyor, schedules)
    assert row["next_fire_at"] is None
    (hook,) = await rows(conveyor, webhooks)
    assert hook["deleted_at"] is not None

    # Deleted and declared again: a new row and a new token; the old token stays taken.
    again = await conveyor.apply(definition({**NIGHTLY, "cron": "0 4 * * *"}, HOOK))
    assert [c.change for c in again.triggers] == ["created"]
    tokens = [r["token"] for r in await rows(conveyor, webhooks)]
    assert len(set(tokens)) == 2


async def test_api_created_triggers_survive_new_versions(conveyor: Conveyor) -> None:
    ref = await conveyor.apply(definition())
    spec = {"type": "schedule", "id": "adhoc", "every": 60}

    def create(conn: Any) -> triggers.TriggerChange:
        return triggers.create(
            conn,
            "schedule",
            conveyor.workspace_id,
            ref.workflow_id,
            spec,
            conveyor.store.clock.now(),
            conveyor.keyring.encrypt,
        )

    await conveyor.store.write(create)
    changed = definition(NIGHTLY)
    await conveyor.apply(changed)
    keys = sorted(r["key"] for r in await rows(conveyor, schedules) if r["deleted_at"] is None)
    assert keys == ["adhoc", "nightly"]


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ({**NIGHTLY, "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({**NIGHTLY, "cron": "61 * * * *"}, "not a valid cron"),
        ({**NIGHTLY, "cron": "* * *"}, "5 fields"),
        ({"type": "schedule", "id": "both", "cron": "@hourly", "every": 5}, "either"),
        ({**HOOK, "response": {"mode": "sync", "timeout": "10m"}}, "at most 5m"),
    ],
)
async def test_bad_triggers_are_refused_at_save(
    conveyor: Conveyor, trigger: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        await conveyor.apply(definition(trigger))


async def test_duplicate_trigger_ids_are_refused(conveyor: Conveyor) -> None:
    with pytest.raises(DefinitionError, match="two triggers have the id 'nightly'"):
        await conveyor.apply(definition(NIGHTLY, {**NIGHTLY, "cron": "@daily"}))
