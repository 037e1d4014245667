"""The audit trail of HTTP requests: one entry for every request that changed something,
API and dashboard alike, named from its route so that a new route cannot be left out.

One ASGI middleware sees every request. A request with a method other than GET, HEAD or
OPTIONS that succeeds (an answer below 400) and has a known caller is recorded before its
answer starts, so a client never sees a change acknowledged without its entry. The
action is derived from the route's path template (``POST .../executions/{id}/cancel`` is
``execution.cancel``), the target from its last path parameter; a route adds what its
path cannot say (the id of what it created, a failed sign-in) with ``note``. Webhook
deliveries are not here: every one is recorded in ``webhook_deliveries``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.exc import OperationalError
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.errors import StoreUnavailable
from conveyor.store import audit
from conveyor.store.accounts import Principal

log = logging.getLogger(__name__)
# While the database is away after the change committed: retry the entry this long.
RETRY_SECONDS = 15.0
RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS = 0.1, 1.0
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Requests that change nothing though they are POSTs (a check, a draft), by path template.
READ_ONLY = frozenset({"/workspaces/{ws}/validate", "/workspaces/{ws}/generate"})
NOT_AUDITED_PREFIXES = ("/hooks/",)
_PRINCIPAL = "audit_principal"
_WORKSPACE = "audit_workspace_id"
_NOTE = "audit_note"
# Segments that only group pages or routes; they name no object.
_GROUPS = frozenset({"w", "api", "v1", "settings", "inbox"})
_VERB_OF_METHOD = {"POST": "create", "PUT": "set", "PATCH": "update", "DELETE": "delete"}
# Derived names that read better as the words the product uses elsewhere.
_RENAMED = {
    "workflow.set": "workflow.apply",
    "member.set": "member.add",
    "member.create": "member.add",
    "member.delete": "member.remove",
    "api_key.delete": "api_key.revoke",
    "webhook.secret": "webhook.rotate_secret",
    "limit.create": "workspace.update",
    "auth.login": "signin.succeeded",
    "signin.create": "signin.succeeded",
    "auth.logout": "signout",
    "signout.create": "signout",
    "credential.update": "credential.set",
}


def remember_principal(connection: HTTPConnection, principal: Principal) -> None:
    """The caller, once authenticated (auth.py and the dashboard's session do this)."""
    setattr(connection.state, _PRINCIPAL, principal)


def remember_workspace(connection: HTTPConnection, workspace_id: str) -> None:
    """The workspace the request acts in, once its scope is resolved."""
    setattr(connection.state, _WORKSPACE, workspace_id)


def note(connection: HTTPConnection, **fields: Any) -> None:
    """What the path cannot say: ``target_type`` and ``target_id``, ``details`` (merged),
    ``action`` (instead of the derived one), ``workspace_id``, ``actor`` (a display string,
    for a caller not signed in), ``always`` (record even when the answer is an error: a
    failed sign-in)."""
    current: dict[str, Any] = getattr(connection.state, _NOTE, None) or {}
    details = {**current.get("details", {}), **fields.pop("details", {})}
    setattr(connection.state, _NOTE, {**current, **fields, "details": details})


def _singular(segment: str) -> str:
    noun = segment.replace("-", "_")
    return noun[:-1] if noun.endswith("s") else noun


def _is_verb(parts: list[str]) -> bool:
    """Whether the last segment is a verb (``.../{id}/cancel``, ``executions/bulk``) rather
    than a collection (``workspaces``, ``workflows/{workflow}/schedules``)."""
    last = parts[-1]
    if last.startswith("{") or len(parts) == 1:
        return False
    return not (parts[-2].startswith("{") and last.endswith("s"))


def action_of(method: str, template: str, params: dict[str, str]) -> tuple[str, str | None]:
    """The action and the name of the target's path parameter (pure: tested alone)."""
    parts = [p for p in template.strip("/").split("/") if p and p not in _GROUPS]
    if parts[:2] == ["workspaces", "{ws}"] and len(parts) > 2:
        parts = parts[2:]
    elif parts[:1] == ["{ws}"]:  # a dashboard page: /w/{ws}/...
        parts = parts[1:]
    last = parts[-1]
    target = None
    if last == "{action}":
        parts, verb = parts[:-1], params.get("action", "action")
        last = parts[-1]
    elif _is_verb(parts):
        verb, parts = last.replace("-", "_"), parts[:-1]
        last = parts[-1]
    else:
        verb = "set" if method == "POST" and last.startswith("{") else _VERB_OF_METHOD[method]
    if last.startswith("{"):
        target = last[1:-1]
        parts = parts[:-1]
    noun = _singular(parts[-1]) if parts else "workspace"
    action = f"{noun}.{verb}"
    return _RENAMED.get(action, action), target


def _route(scope: Scope) -> tuple[str, dict[str, str]] | None:
    route = scope.get("route")
    template = getattr(route, "path", None)
    if template is None:
        return None
    return str(template), dict(scope.get("path_params") or {})


def entry_for(scope: Scope, status: int) -> audit.Entry | None:
    """The entry for a request that answered ``status``; None: nothing to record."""
    state: dict[str, Any] = scope.get("state") or {}
    found = _route(scope)
    if found is None or found[0] in READ_ONLY:
        return None
    template, params = found
    noted: dict[str, Any] = state.get(_NOTE) or {}
    principal: Principal | None = state.get(_PRINCIPAL)
    if status >= 400 and not noted.get("always"):
        return None
    if principal is not None:
        actor = audit.Actor(principal.email, principal.user_id, principal.api_key_id)
    elif noted.get("actor"):
        actor = audit.Actor(str(noted["actor"]))
    else:  # nobody known: refused before anything could change (a redirect to sign in)
        return None
    action, target_param = action_of(scope["method"], template, params)
    # The workspace by its id, whichever of its name or id the path gave.
    named = state.get(_WORKSPACE) if target_param == "ws" else params.get(target_param or "")
    target_id = noted.get("target_id", named)
    details = {k: v for k, v in params.items() if k not in ("ws", "action", target_param)}
    return audit.Entry(
        workspace_id=noted.get("workspace_id", state.get(_WORKSPACE)),
        actor=actor,
        action=noted.get("action", action),
        source=_source(scope),
        target_type=noted.get("target_type", action.split(".")[0]) if target_id else None,
        target_id=target_id,
        details={**details, **noted.get("details", {})},
    )


def _source(scope: Scope) -> audit.Source:
    headers = dict(scope.get("headers") or [])
    agent = headers.get(b"user-agent")
    client = scope.get("client")
    path: str = scope.get("path", "")
    return audit.Source(
        channel="api" if path.startswith("/api/") else "dashboard",
        ip=client[0] if client else None,
        user_agent=agent.decode("latin-1") if agent else None,
    )


class AuditTrail:
    """The middleware: records a mutating request's entry before its answer starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] in SAFE_METHODS
            or path.startswith(NOT_AUDITED_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return

        async def send_after_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                await _record(scope, message["status"])
            await send(message)

        await self.app(scope, receive, send_after_recording)


async def _record(scope: Scope, status: int) -> None:
    """Write the entry before the answer starts. The change is committed already, so the
    answer goes out whatever happens here: while the database is away (a restart between
    the change's commit and this one) the entry is retried for up to RETRY_SECONDS, then
    written to the log, one line (who, what, where; not its details), instead of to the
    table."""
    entry = entry_for(scope, status)
    if entry is None:
        return
    store = scope["app"].state.conveyor.store
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RETRY_SECONDS
    delay = RETRY_FIRST_SECONDS
    while True:
        try:
            await store.write(audit.record, entry, store.clock.now())
            return
        except (StoreUnavailable, OperationalError) as exc:
            if loop.time() + delay > deadline:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                log.error(
                    "audit entry not recorded (%s): %s by %s on %s %s in workspace %s from %s",
                    reason,
                    entry.action,
                    entry.actor.display,
                    entry.target_type,
                    entry.target_id,
                    entry.workspace_id,
                    entry.source.ip,
                    extra={"action": "audit.lost"},
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)
        except Exception:  # not an outage: say loudly what is missing
            log.exception(
                "audit entry not recorded: %s", entry.action, extra={"action": "audit.lost"}
            )
            return
