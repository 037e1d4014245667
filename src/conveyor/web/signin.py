"""Signing in and out: the email + password form, the one-time sign-in link printed by a
fresh local server, and ``/`` (the workspace's workflows, or the sign-in page)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from conveyor.api import problems
from conveyor.api.audit import note, remember_principal
from conveyor.api.auth import SESSION_COOKIE, base_app, client_address, same_origin, throttles
from conveyor.errors import Forbidden, TooManyRequests
from conveyor.store import accounts
from conveyor.web.render import render
from conveyor.web.session import CSRF_FIELD, check_csrf, session_token, signed_in

router = APIRouter(include_in_schema=False)
SESSION_TTL_SECONDS = 7 * 24 * 3600


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an absolute or protocol-relative URL."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _signed_in_response(request: Request, token: str, target: str) -> Response:
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_TTL_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/")
async def home(request: Request) -> Response:
    principal = await signed_in(request)
    store = base_app(request).store
    ids = list(principal.roles)
    if principal.is_admin and not ids:
        ids = await store.read(accounts.all_workspace_ids)
    found = await store.read(accounts.list_workspaces, ids)
    if not found:
        return render(request, "error.html", {"status": 403, "message": _NO_WORKSPACE}, 403)
    names = [w["name"] for w in found]
    first = "default" if "default" in names else names[0]
    return RedirectResponse(f"/w/{first}/workflows", status_code=303)


_NO_WORKSPACE = "You are not a member of any workspace yet; ask an admin to add you."


@router.get("/signin")
async def signin_form(request: Request, next: str | None = None) -> Response:
    return render(request, "signin.html", {"next": _safe_next(next), "email": "", "error": None})


@router.post("/signin")
async def signin(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    if not same_origin(request):  # login CSRF: another site posting this form
        raise Forbidden("sign in from this site's own page")
    store = base_app(request).store
    now = store.clock.now()
    limits, client = throttles(request), client_address(request)
    try:
        limits.signin_attempt(email, client)
    except TooManyRequests as exc:
        return _refused(request, email, next, exc)
    user_id = await store.write(accounts.authenticate, email, password, now) if email else None
    if user_id is None:
        note(request, action="signin.failed", actor=email or "(no email)", always=True)
        # The same words whether or not the email exists.
        context = {"next": _safe_next(next), "email": email, "error": "Wrong email or password."}
        return render(request, "signin.html", context, 401)
    limits.signin_succeeded(email, client)
    token = await store.write(accounts.create_session, user_id, now, _ttl())
    await _remember(request, user_id)
    return _signed_in_response(request, token, _safe_next(next))


def _refused(request: Request, email: str, next: str, exc: TooManyRequests) -> Response:
    """The form again, with the status and Retry-After the API would answer."""
    status, _kind = problems.classify(exc)
    context = {"next": _safe_next(next), "email": email, "error": f"{str(exc).capitalize()}."}
    response = render(request, "signin.html", context, status)
    response.headers.update(problems.retry_headers(exc))
    return response


@router.get("/signin/link/{token}")
async def signin_link(request: Request, token: str) -> Response:
    """A one-time link: it becomes a fresh session and stops working."""
    store = base_app(request).store
    now = store.clock.now()
    user_id = await store.write(accounts.redeem_signin_link, token, now)
    if user_id is None:
        context = {
            "next": "/",
            "email": "",
            "error": "That sign-in link was already used or has expired. Restart "
            "`conveyor server` for a new one, or sign in with a password.",
        }
        return render(request, "signin.html", context, 401)
    session = await store.write(accounts.create_session, user_id, now, _ttl())
    return _signed_in_response(request, session, "/")


@router.post("/signout")
async def signout(
    request: Request, csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = ""
) -> Response:
    check_csrf(request, csrf_token)
    token = session_token(request)
    if token:
        store = base_app(request).store
        found = await store.read(accounts.session_principal, token, store.clock.now())
        if found is not None:
            remember_principal(request, found)
        await store.write(accounts.end_session, token)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _ttl() -> timedelta:
    return timedelta(seconds=SESSION_TTL_SECONDS)


async def _remember(request: Request, user_id: str) -> None:
    """The audit trail's actor for a sign-in (no session was presented)."""
    found = await base_app(request).store.read(accounts.principal, user_id)
    if found is not None:
        remember_principal(request, found)
