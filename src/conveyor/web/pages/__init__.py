"""The dashboard's pages, one module each; every page lives under ``/w/{ws}/``."""

from fastapi import APIRouter

from conveyor.web.pages import (
    audit,
    credentials,
    editor,
    execution,
    executions,
    inbox,
    settings,
    statistics,
    workflow,
    workflow_triggers,
    workflows,
)

router = APIRouter(include_in_schema=False)
for _module in (
    editor,
    workflows,
    workflow,
    workflow_triggers,
    executions,
    execution,
    statistics,
    inbox,
    settings,
    credentials,
    audit,
):
    router.include_router(_module.router)
