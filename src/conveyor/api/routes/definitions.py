"""What an editor needs before saving: the palette of node types, and validation of a
definition with each problem at its line in the YAML text."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from conveyor.api.auth import Scope, base_app, caller, write_access
from conveyor.api.schemas import NodeTypeInfo, ValidateBody, ValidationReport
from conveyor.engine.source import Source, load_source, review
from conveyor.nodes.catalog import catalog
from conveyor.store.accounts import Principal

router = APIRouter(tags=["definitions"])
Caller = Annotated[Principal, Depends(caller)]
Write = Annotated[Scope, Depends(write_access)]


@router.get(
    "/node-types",
    response_model=list[NodeTypeInfo],
    summary="Every registered node type: title, category, icon, config schema, branches",
)
async def node_types(request: Request, principal: Caller) -> list[dict[str, Any]]:
    return catalog(base_app(request).registry)


@router.post(
    "/workspaces/{ws}/validate",
    response_model=ValidationReport,
    summary="Validate a definition (YAML text or JSON) without saving it; each problem "
    "with its line and column in the YAML",
)
async def validate(scope: Write, body: ValidateBody) -> dict[str, Any]:
    """Always 200 for a definition that was read: ``valid`` says whether it would save.
    The messages are those of ``conveyor validate`` and of a refused save."""
    source = load_source(body.yaml) if body.yaml is not None else Source(body.definition)
    if source.data is not None:
        scope.conveyor.limits.check_definition(source.data)
    result = review(source, scope.conveyor.registry)
    definition = result.definition
    return {
        "valid": result.valid,
        "problems": [p.as_dict() for p in result.problems],
        "definition": definition.model_dump(mode="json", by_alias=True, exclude_none=True)
        if definition is not None and result.valid
        else None,
        "document": source.data if isinstance(source.data, dict) else None,
    }
