"""The route table as the security suite sees it: every method of every route of the
server's app (REST API and dashboard), the short list of public ones, and how a route's
path parameters and body are filled. Generated from the app, so a new route is covered
(or fails a test asking to be classified) without anyone remembering to add it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from starlette.routing import Mount, Route

from conveyor import web
from conveyor.api.app import create_app
from conveyor.app import Conveyor
from conveyor.engine.limits import DEFAULT_LIMITS
from tests.api.support import transform

API = "/api/v1"
WS = f"{API}/workspaces/{{ws}}"
PAGE = "/w/{ws}"
PARAM = re.compile(r"{([^}]+)}")
CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Public on purpose, each with its reason. Everything else answers 401 (API) or redirects
# to the sign-in page (dashboard) without credentials.
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "liveness probe",
    ("GET", "/readyz"): "readiness probe",
    ("POST", f"{API}/auth/login"): "logging in (login CSRF: the Origin check)",
    ("GET", f"{API}/openapi.json"): "the API's description",
    ("GET", f"{API}/docs"): "the API's reference page",
    ("GET", f"{API}/static/{{path}}"): "the reference page's packaged assets",
    ("GET", "/static/{path}"): "the dashboard's scripts, styles and vendored files",
    ("GET", "/signin"): "the sign-in page",
    ("POST", "/signin"): "signing in (login CSRF: the Origin check)",
    ("GET", "/signin/link/{token}"): "the one-time sign-in link (the token is the secret)",
    **{
        (method, "/hooks/{token}"): "a webhook's public receive endpoint (the token is its "
        "address; signatures and header secrets are the webhook's own, tests/e2e/test_webhooks)"
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
    },
}

# Mutating routes that need more than a member: they change who may do what.
ADMIN_ONLY: frozenset[tuple[str, str]] = frozenset(
    {
        ("PATCH", WS),
        ("PUT", f"{WS}/members"),
        ("DELETE", f"{WS}/members/{{user_id}}"),
        ("GET", f"{WS}/api-keys"),
        ("POST", f"{WS}/api-keys"),
        ("DELETE", f"{WS}/api-keys/{{key_id}}"),
        ("GET", f"{WS}/audit"),
        ("GET", f"{PAGE}/audit"),
        ("POST", f"{PAGE}/settings/limits"),
        ("POST", f"{PAGE}/settings/members"),
        ("POST", f"{PAGE}/settings/members/{{user_id}}/remove"),
        ("POST", f"{PAGE}/settings/api-keys"),
        ("POST", f"{PAGE}/settings/api-keys/{{key_id}}/revoke"),
    }
)

# Pages that open a form for changing something: a viewer is refused the form itself.
MEMBER_PAGES: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", f"{PAGE}/credentials/new"),
        ("GET", f"{PAGE}/credentials/{{name}}/edit"),
        ("GET", f"{PAGE}/workflows/{{name}}/edit"),
    }
)


@dataclass(frozen=True, order=True)
class Endpoint:
    """One method of one route."""

    method: str
    path: str
    kind: str  # "api", "page" or "socket"

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)

    @property
    def params(self) -> list[str]:
        return PARAM.findall(self.path)

    @property
    def public(self) -> bool:
        return self.key in PUBLIC

    @property
    def changes(self) -> bool:
        return self.method in CHANGING

    @property
    def in_workspace(self) -> bool:
        return "ws" in self.params


def build(conveyor: Conveyor) -> FastAPI:
    """The app ``conveyor server`` serves (conveyor.server.build, without its housekeeping)."""
    app = create_app(conveyor)
    web.install(app)
    return app


def endpoints(app: FastAPI) -> list[Endpoint]:
    found: set[Endpoint] = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = getattr(context, "path", "") or getattr(route, "path", "")
        if isinstance(route, APIWebSocketRoute):
            found.add(Endpoint("WS", path, "socket"))
        elif isinstance(route, Mount):
            found.add(Endpoint("GET", f"{path}/{{path}}", "api"))
        elif isinstance(route, APIRoute | Route):
            for method in set(getattr(context, "methods", None) or route.methods or ()):
                if method != "HEAD":
                    kind = "page" if _is_page(path) else "api"
                    found.add(Endpoint(method, path, kind))
        else:
            raise AssertionError(f"a route of a kind this suite does not know: {route!r}")
    return sorted(found)


def query_parameters(app: FastAPI) -> dict[tuple[str, str], list[str]]:
    """The query parameters each route reads (its own and its dependencies'), by name."""
    found: dict[tuple[str, str], list[str]] = {}
    for context in iter_route_contexts(app.routes):
        dependant = getattr(context, "dependant", None)
        if dependant is None:
            continue
        names = _queries(dependant)
        for method in getattr(context, "methods", None) or ():
            found[(method, context.path)] = names
    return found


def _queries(dependant: Any) -> list[str]:
    names = [str(p.alias) for p in dependant.query_params]
    for inner in dependant.dependencies:
        names += [n for n in _queries(inner) if n not in names]
    return names


def _is_page(path: str) -> bool:
    return not path.startswith((f"{API}/", "/hooks/", "/healthz", "/readyz", "/metrics"))


# The table at collection time, from an app on a stand-in (only its limits are read while
# routes are added); the fixture checks the real app has the same table.
COLLECTED = build(cast(Conveyor, SimpleNamespace(limits=DEFAULT_LIMITS)))
ENDPOINTS = endpoints(COLLECTED)
DOCUMENT = COLLECTED.openapi()
QUERIES = query_parameters(COLLECTED)


def fill(endpoint: Endpoint, values: dict[str, str]) -> str:
    """``endpoint``'s path with its parameters replaced; a parameter the suite does not
    know fails the test, naming it (a new route must say what its parameters are)."""
    path = endpoint.path
    unknown = [p for p in endpoint.params if _value_key(path, p) not in values]
    if unknown:
        raise AssertionError(
            f"{endpoint}: path parameters {unknown} unknown to tests/security/routes.py"
        )
    return PARAM.sub(lambda m: values[_value_key(path, m.group(1))], path)


def _value_key(path: str, param: str) -> str:
    """``name`` is a workflow's on /workflows/ pages and a credential's elsewhere;
    ``action`` is the action of the route it is in."""
    if param == "name":
        return "credential" if "/credentials/" in path else "workflow_name"
    if param == "action":
        return "task_action" if "/tasks/" in path else "workflow_action"
    return param


def api_body(endpoint: Endpoint, world: Any) -> Any:
    """A valid JSON body for an API route that takes one (so a refusal is not explained by
    a 422); ``world`` gives the emails and names a body refers to."""
    bodies: dict[tuple[str, str], Any] = {
        ("POST", f"{API}/auth/login"): {"email": world.a.owner.email, "password": "x" * 12},
        ("POST", f"{API}/workspaces"): {"name": "made-by-the-sweep"},
        ("PUT", f"{WS}/members"): {"email": world.a.member.email, "role": "owner"},
        ("PATCH", WS): {"max_running_per_user": 10},
        ("POST", f"{WS}/api-keys"): {"name": "sweep", "role": "viewer"},
        ("POST", f"{WS}/workflows"): {"definition": transform("made-by-the-sweep")},
        ("PUT", f"{WS}/workflows/{{workflow}}"): {"definition": transform("wf")},
        ("POST", f"{WS}/workflows/{{workflow}}/execute"): {"input": {}},
        ("POST", f"{WS}/validate"): {"definition": transform("checked-by-the-sweep")},
        ("POST", f"{WS}/generate"): {"description": "a workflow the sweep never drafts"},
        ("POST", f"{WS}/executions/{{execution_id}}/replay"): {"from_node": "t"},
        ("POST", f"{WS}/executions/{{execution_id}}/signal"): {"name": "go"},
        ("POST", f"{WS}/executions/bulk"): {"action": "cancel", "filter": {}},
        ("POST", f"{WS}/workflows/{{workflow}}/schedules"): {"id": "sweep", "every": 3600},
        ("POST", f"{WS}/schedules/{{schedule_id}}/backfill"): {
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-01T03:00:00Z",
        },
        ("POST", f"{WS}/workflows/{{workflow}}/webhooks"): {"id": "sweep"},
        ("POST", f"{WS}/webhooks/{{webhook_id}}/secret"): {},
        ("POST", f"{WS}/credentials"): {
            "name": "sweep",
            "type": "bearer",
            "data": {"token": "t" * 12},
        },
        ("PUT", f"{WS}/credentials/{{name}}"): {"data": {"token": "u" * 12}},
    }
    return bodies.get(endpoint.key)


def form(endpoint: Endpoint, world: Any) -> dict[str, str]:
    """A form a dashboard page would post to ``endpoint`` (without its CSRF token)."""
    forms: dict[tuple[str, str], dict[str, str]] = {
        ("POST", f"{PAGE}/workflows"): {"yaml": YAML},
        ("POST", f"{PAGE}/settings/limits"): {"max_running_per_user": "3"},
        ("POST", f"{PAGE}/settings/members"): {"email": world.a.member.email, "role": "owner"},
        ("POST", f"{PAGE}/settings/api-keys"): {"name": "by-form", "role": "viewer"},
        ("POST", f"{PAGE}/credentials"): {
            "name": "by-form",
            "type": "bearer",
            "field.token": "t" * 9,
        },
        ("POST", f"{PAGE}/credentials/{{name}}"): {"field.token": "u" * 12},
        ("POST", "/signin"): {"email": world.a.owner.email, "password": world.a.owner.password},
    }
    return forms.get(endpoint.key, {})


YAML = "name: made-by-form\nnodes:\n  - id: t\n    type: transform\n    config: {output: 1}\n"
