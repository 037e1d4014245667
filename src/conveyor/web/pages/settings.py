"""The settings page: the workspace's members and roles, its API keys (a new key shown once)
and its limits. Plain forms posting to page routes that call the same store functions as
``/api/v1/workspaces/{ws}`` (members, api-keys, PATCH); admins and owners only, everyone
else sees the page read-only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from conveyor.api.problems import classify
from conveyor.api.routes.accounts import NewKey, WorkspaceSettings
from conveyor.errors import ConveyorError
from conveyor.store import accounts
from conveyor.store.accounts import Role
from conveyor.web.render import render
from conveyor.web.session import CSRF_FIELD, InWorkspace, Page, check_csrf, require

router = APIRouter()
CsrfField = Annotated[str, Form(alias=CSRF_FIELD, max_length=200)]
Short = Annotated[str, Form(max_length=400)]
# The new key rides back to the page that shows it once in this cookie (HttpOnly, strict,
# this path only, two minutes), so a reload does not post the form again.
NEW_KEY_COOKIE = "conveyor_new_key"
NEW_KEY_SECONDS = 120


def _base(page: Page) -> str:
    return f"/w/{page.scope.workspace}/settings"


def _problem(exc: ValidationError) -> str:
    """The message the API's problem details would give for the same invalid value."""
    return "; ".join(str(e["msg"]) for e in exc.errors())


async def _view(page: Page, status: int = 200, **extra: Any) -> HTMLResponse:
    store = page.scope.conveyor.store
    ws = page.scope.workspace_id
    workspace = await store.read(accounts.find_workspace, ws)
    assert workspace is not None  # the scope found it
    members = await store.read(accounts.list_members, ws)
    keys = await store.read(accounts.list_api_keys, ws) if page.can_admin else []
    emails = {m["user_id"]: m["email"] for m in members}
    for key in keys:
        key["created_by"] = emails.get(key["user_id"], "")
    grantable = [r.value for r in Role if page.scope.role.allows(r)]
    context = {
        "page": page,
        "nav": "settings",
        "title": "Settings",
        "workspace": workspace,
        "members": members,
        "keys": keys,
        "grantable": grantable,
        "errors": {},
        "typed": {},
        "saved": page.request.query_params.get("saved", ""),
        **extra,
    }
    return render(page.request, "settings.html", context, status)


def _done(page: Page, section: str) -> RedirectResponse:
    return RedirectResponse(f"{_base(page)}?saved={section}#{section}", 303)


async def _refused(page: Page, exc: ConveyorError, field: str, typed: dict[str, str]) -> Response:
    status, _kind = classify(exc)
    return await _view(page, status, errors={field: str(exc)}, typed=typed)


@router.get("/w/{ws}/settings")
async def settings_page(page: InWorkspace) -> HTMLResponse:
    new_key = page.request.cookies.get(NEW_KEY_COOKIE, "")
    shown = new_key if page.can_admin and new_key.startswith(accounts.KEY_PREFIX) else ""
    response = await _view(page, new_key=shown)
    if new_key:
        response.delete_cookie(NEW_KEY_COOKIE, path=_base(page))
    return response


@router.post("/w/{ws}/settings/limits")
async def save_limits(
    page: InWorkspace, csrf: CsrfField = "", max_running_per_user: Short = ""
) -> Response:
    """Like ``PATCH /workspaces/{ws}``: blank is no limit."""
    check_csrf(page.request, csrf)
    require(page, Role.ADMIN)
    typed = {"max_running_per_user": max_running_per_user}
    value = max_running_per_user.strip() or None
    try:
        limits = WorkspaceSettings.model_validate({"max_running_per_user": value})
    except ValidationError as exc:
        return await _view(page, 422, errors={"limits": _problem(exc)}, typed=typed)
    store = page.scope.conveyor.store
    await store.write(
        accounts.set_max_running_per_user, page.scope.workspace_id, limits.max_running_per_user
    )
    return _done(page, "limits")


@router.post("/w/{ws}/settings/members")
async def set_member(
    page: InWorkspace, csrf: CsrfField = "", email: Short = "", role: Short = ""
) -> Response:
    """Add a user (by email) with a role, or change a member's role: ``PUT .../members``."""
    check_csrf(page.request, csrf)
    require(page, Role.ADMIN)
    typed = {"email": email, "role": role}
    if role not in {r.value for r in Role}:
        return await _view(page, 422, errors={"member": f"'{role}' is not a role"}, typed=typed)
    store = page.scope.conveyor.store
    try:
        await store.write(
            accounts.grant,
            page.scope.workspace_id,
            page.scope.role,
            email,
            Role(role),
            store.clock.now(),
        )
    except ConveyorError as exc:
        return await _refused(page, exc, "member", typed)
    return _done(page, "members")


@router.post("/w/{ws}/settings/members/{user_id}/remove")
async def remove_member(page: InWorkspace, user_id: str, csrf: CsrfField = "") -> Response:
    check_csrf(page.request, csrf)
    require(page, Role.ADMIN)
    store = page.scope.conveyor.store
    try:
        await store.write(accounts.ungrant, page.scope.workspace_id, page.scope.role, user_id)
    except ConveyorError as exc:
        return await _refused(page, exc, "members", {})
    if user_id == page.scope.principal.user_id:
        return RedirectResponse("/", 303)  # no longer a member here
    return _done(page, "members")


@router.post("/w/{ws}/settings/api-keys")
async def create_key(
    page: InWorkspace, csrf: CsrfField = "", name: Short = "", role: Short = ""
) -> Response:
    """``POST .../api-keys``; the key travels to the next page view only."""
    check_csrf(page.request, csrf)
    require(page, Role.ADMIN)
    typed = {"key_name": name, "key_role": role}
    try:
        body = NewKey.model_validate({"name": name.strip(), "role": role})
    except ValidationError as exc:
        return await _view(page, 422, errors={"key": _problem(exc)}, typed=typed)
    store = page.scope.conveyor.store
    try:
        accounts.check_key_role(page.scope.role, body.role)
        key, _row = await store.write(
            accounts.create_api_key,
            page.scope.workspace_id,
            page.scope.principal.user_id,
            body.name,
            body.role,
            store.clock.now(),
        )
    except ConveyorError as exc:
        return await _refused(page, exc, "key", typed)
    response = RedirectResponse(f"{_base(page)}#new-key", 303)
    response.set_cookie(
        NEW_KEY_COOKIE,
        key,
        max_age=NEW_KEY_SECONDS,
        path=_base(page),
        httponly=True,
        samesite="strict",
        secure=page.request.url.scheme == "https",
    )
    return response


@router.post("/w/{ws}/settings/api-keys/{key_id}/revoke")
async def revoke_key(page: InWorkspace, key_id: str, csrf: CsrfField = "") -> Response:
    check_csrf(page.request, csrf)
    require(page, Role.ADMIN)
    store = page.scope.conveyor.store
    await store.write(
        accounts.revoke_api_key,
        page.scope.workspace_id,
        page.scope.role,
        key_id,
        store.clock.now(),
    )
    return _done(page, "keys")
