"""What an editor needs before saving: the palette of node types, validation of a
definition with each problem at its line in the YAML text, and a draft written by the
configured LLM from a description (never saved here)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from conveyor.api.auth import Scope, base_app, caller, write_access
from conveyor.api.bodies import JsonRoute
from conveyor.api.schemas import (
    DraftReport,
    GenerateBody,
    NodeTypeInfo,
    ValidateBody,
    ValidationReport,
)
from conveyor.engine.source import Located, Source, load_source, review
from conveyor.errors import NodeError, ServiceUnavailable
from conveyor.generate import NOT_CONFIGURED, Draft, GeneratorSettings, generate
from conveyor.nodes.catalog import catalog
from conveyor.nodes.registry import Registry
from conveyor.store.accounts import Principal

router = APIRouter(tags=["definitions"], route_class=JsonRoute)
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


@router.post(
    "/workspaces/{ws}/generate",
    response_model=DraftReport,
    summary="Draft a definition from a description with the configured LLM; the validator's "
    "problems go back to it up to `repairs` times. Nothing is saved",
)
async def draft(request: Request, scope: Write, body: GenerateBody) -> dict[str, Any]:
    """200 with the last draft, valid or not (``problems`` says what is still wrong); 503
    when no LLM is configured or it failed."""
    settings: GeneratorSettings | None = request.app.state.drafting
    if settings is None:
        raise ServiceUnavailable(NOT_CONFIGURED)
    registry = scope.conveyor.registry
    try:
        found = await generate(
            body.description, registry, settings, repairs=body.repairs, network=registry.network
        )
    except NodeError as exc:
        raise ServiceUnavailable(f"the LLM that drafts workflows failed: {exc}") from exc
    return {
        "valid": found.valid,
        "definition": found.data,
        "yaml": found.yaml,
        "problems": [] if found.valid else located(found, registry),
        "attempts": found.attempts,
    }


def located(found: Draft, registry: Registry) -> list[dict[str, Any]]:
    """The draft's problems at their lines in its YAML (as the validate route has them)."""
    problems = review(load_source(found.yaml), registry).problems
    if problems:
        return [p.as_dict() for p in problems]
    return [Located(p).as_dict() for p in found.problems]
