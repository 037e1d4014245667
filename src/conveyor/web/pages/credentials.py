"""The credentials page: the workspace's credentials (name, type, non-secret fields, the
workflows that use them, last update), and forms to create, replace and delete one. Plain
forms posting to page routes that do what ``/api/v1/workspaces/{ws}/credentials`` does;
members and above change them, viewers see the list only. No secret value is ever rendered:
the store gives none back, and a refused form is shown again without them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from conveyor import credentials as kinds
from conveyor.errors import Conflict, ConveyorError, InputError, NotFound
from conveyor.store import credentials as store
from conveyor.store.accounts import Role
from conveyor.web import credential_forms as forms
from conveyor.web.render import render
from conveyor.web.session import CSRF_FIELD, InWorkspace, Page, check_csrf, require

router = APIRouter()
MAX_DESCRIPTION = 1000


def _base(page: Page) -> str:
    return f"/w/{page.scope.workspace}/credentials"


def _types() -> list[dict[str, Any]]:
    return [
        {"name": t.name, "title": t.title, "fields": [f.name for f in t.fields]}
        for t in kinds.TYPES.values()
    ]


async def _list(page: Page) -> HTMLResponse:
    items = await page.scope.conveyor.store.read(store.listing, page.scope.workspace_id)
    for item in items:
        item["title"] = kinds.TYPES[item["type"]].title if item["type"] in kinds.TYPES else ""
        item["confirm"] = (
            f"Delete the credential “{item['name']}”? {forms.used_by_words(item['used_by'])}"
        )
    context = {
        "page": page,
        "nav": "credentials",
        "title": "Credentials",
        "credentials": items,
        "types": _types(),
        "saved": page.request.query_params.get("saved", ""),
    }
    return render(page.request, "credentials.html", context)


def _form_view(
    page: Page,
    type_name: str,
    *,
    existing: dict[str, Any] | None = None,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The create form (``existing`` None) or the replace form of one credential."""
    shown: dict[str, Any] = dict(existing["fields"]) if existing else {}
    typed = typed or {}
    shown.update({k: v for k, v in typed.items() if k not in ("name", "description")})
    title = f"Replace {existing['name']}" if existing else f"New {kinds.TYPES[type_name].title}"
    context = {
        "page": page,
        "nav": "credentials",
        "title": title,
        "credential": existing,
        "kind": kinds.TYPES[type_name],
        "inputs": forms.inputs(type_name, shown),
        "typed": typed,
        "errors": errors or {},
    }
    return render(page.request, "credential-form.html", context, status)


def _type_of(type_name: str) -> str:
    if type_name not in kinds.TYPES:
        raise NotFound(f"unknown credential type {type_name!r}; known: {', '.join(kinds.TYPES)}")
    return type_name


async def _posted(page: Page) -> dict[str, str]:
    form: FormData = await page.request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    check_csrf(page.request, values.get(CSRF_FIELD))
    require(page, Role.MEMBER)
    return values


def _problems(type_name: str, exc: ConveyorError, name_errors: bool) -> dict[str, str]:
    """Where a refusal is shown: next to its field, the name, or above the form."""
    message = str(exc)
    field = forms.field_of(type_name, message)
    if field:
        return {field: message}
    if name_errors and message.startswith("credential name"):
        return {"name": message}
    return {"form": message}


def _checked_description(values: dict[str, str]) -> tuple[str, dict[str, str]]:
    description = values.get("description", "").strip()
    if len(description) > MAX_DESCRIPTION:
        return description, {"description": f"at most {MAX_DESCRIPTION} characters"}
    return description, {}


@router.get("/w/{ws}/credentials")
async def credentials_page(page: InWorkspace) -> HTMLResponse:
    return await _list(page)


@router.get("/w/{ws}/credentials/new")
async def new_credential(
    page: InWorkspace, type: str = Query(default="", max_length=100)
) -> Response:
    require(page, Role.MEMBER)
    if not type:
        return RedirectResponse(f"{_base(page)}#new", 303)
    return _form_view(page, _type_of(type))


@router.post("/w/{ws}/credentials")
async def create_credential(page: InWorkspace) -> Response:
    """``POST .../credentials`` from the form."""
    values = await _posted(page)
    type_name = _type_of(values.get("type", ""))
    name = values.get("name", "").strip()
    description, errors = _checked_description(values)
    typed = {"name": name, "description": description, **forms.shown_values(type_name, values)}
    long_field = forms.too_long(values)
    if long_field:
        errors[long_field] = f"at most {forms.MAX_VALUE} characters"
    if not errors:
        try:
            await page.scope.conveyor.set_credential(
                name,
                type_name,
                forms.data_of(type_name, values),
                description=description,
                user_id=page.scope.principal.user_id,
            )
        except InputError as exc:
            errors = _problems(type_name, exc, name_errors=True)
        except Conflict as exc:  # the name is taken
            errors = {"name": str(exc)}
    if errors:
        return _form_view(page, type_name, typed=typed, errors=errors, status=422)
    return RedirectResponse(f"{_base(page)}?saved=created#credential-{name}", 303)


@router.get("/w/{ws}/credentials/{name}/edit")
async def edit_credential(page: InWorkspace, name: str) -> HTMLResponse:
    require(page, Role.MEMBER)
    existing = await page.scope.conveyor.store.read(store.get, page.scope.workspace_id, name)
    typed = {"description": existing["description"]}
    return _form_view(page, existing["type"], existing=existing, typed=typed)


@router.post("/w/{ws}/credentials/{name}")
async def replace_credential(page: InWorkspace, name: str) -> Response:
    """``PUT .../credentials/{name}`` from the form: every field again."""
    values = await _posted(page)
    conveyor = page.scope.conveyor
    existing = await conveyor.store.read(store.get, page.scope.workspace_id, name)
    type_name = existing["type"]
    description, errors = _checked_description(values)
    typed = {"description": description, **forms.shown_values(type_name, values)}
    long_field = forms.too_long(values)
    if long_field:
        errors[long_field] = f"at most {forms.MAX_VALUE} characters"
    if not errors:

        def write(conn: Any) -> dict[str, Any]:
            return store.replace(
                conn,
                page.scope.workspace_id,
                name,
                type_name,
                forms.data_of(type_name, values),
                description,
                page.scope.principal.user_id,
                conveyor.store.clock.now(),
                conveyor.keyring.encrypt,
            )

        try:
            await conveyor.store.write(write)
        except InputError as exc:
            errors = _problems(type_name, exc, name_errors=False)
    if errors:
        return _form_view(
            page, type_name, existing=existing, typed=typed, errors=errors, status=422
        )
    return RedirectResponse(f"{_base(page)}?saved=replaced#credential-{name}", 303)


@router.post("/w/{ws}/credentials/{name}/delete")
async def delete_credential(page: InWorkspace, name: str) -> Response:
    await _posted(page)
    await page.scope.conveyor.delete_credential(name)
    return RedirectResponse(f"{_base(page)}?saved=deleted", 303)
