"""Every dashboard form, fuzzed: the POST routes are read from the app's route table (so a new
form is fuzzed as soon as it exists), each is sent random field values (text with NUL and
odd characters, values past each field's bound, numbers past any double, YAML bombs and
deep nesting for the definition upload, real and made-up ids in the path) by a signed-in
owner with the session's CSRF token, on both backends. No answer is a 500: each is the page
again (its form, with the problem shown), a redirect, or a 4xx."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor import web
from conveyor.credentials import TYPES
from conveyor.store.accounts import Role
from conveyor.web.session import CSRF_FIELD
from tests.api.conftest import Api
from tests.badinput.routes import api_routes

# Signing out would end the session the other examples use; signing in is fuzzed as it is.
LEFT_OUT = {"/signout"}
PARAM = re.compile(r"{(\w+)}")
DEEP = "[" * 5000 + "]" * 5000
BOMB = (
    "name: bomb\n"
    + 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9))
    + "nodes:\n  - id: a\n    type: transform\n    config: {output: *l8}\n"
)
GOOD_YAML = "name: fuzzed\nnodes:\n  - id: a\n    type: transform\n    config: {output: 1}\n"
ODD = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "1e400",
        "-1",
        "0",
        "99999999999999999999",
        "NaN",
        "../../etc/passwd",
        "<script>alert(1)</script>",
        "{{ 7 * 7 }}",
        "é" * 300,
        "x" * 2100,
        "owner",
        "admin",
        "member",
        "viewer",
        "done",
        "reopen",
        "activate",
        "pause",
        "archive",
        *TYPES,
    ]
)
VALUE = st.one_of(ODD, st.text(max_size=40))
YAML = st.one_of(
    st.sampled_from([GOOD_YAML, BOMB, DEEP, "- a\n- b\n", ": :", "nodes: 1e400"]), VALUE
)
# Fields read from the posted form directly (not declared), by route path.
CREDENTIAL_FIELDS = sorted(
    {"name", "type", "description"} | {f.name for t in TYPES.values() for f in t.fields}
)


def form_routes() -> list[tuple[str, list[str]]]:
    """Each dashboard POST route with the form fields it declares."""
    app = FastAPI()
    web.install(app)
    found = []
    for path, route in api_routes(app.routes):
        if "POST" not in route.methods or path in LEFT_OUT:
            continue
        fields = sorted({p.alias for p in _flatten(route.dependant)})
        if "credentials" in path:
            fields = sorted(set(fields) | set(CREDENTIAL_FIELDS))
        found.append((path, fields))
    return found


def _flatten(dependant: Any) -> list[Any]:
    return [*dependant.body_params, *(p for d in dependant.dependencies for p in _flatten(d))]


ROUTES = form_routes()
# Path parameters: a real id of the right kind (filled in by the test) or anything.
REAL = "<real>"


@st.composite
def submissions(draw: st.DrawFn) -> tuple[str, dict[str, str], dict[str, str], bool]:
    path, fields = draw(st.sampled_from(ROUTES))
    params = {
        name: "default" if name == "ws" else draw(VALUE) if draw(st.integers(0, 3)) == 0 else REAL
        for name in PARAM.findall(path)
    }
    form = {name: draw(YAML if name == "yaml" else VALUE) for name in fields if draw(st.booleans())}
    form.pop(CSRF_FIELD, None)
    return path, params, form, draw(st.integers(0, 9)) > 0  # mostly with the CSRF token


class Session:
    """The owner signed in on the dashboard, made once for all examples."""

    def __init__(self) -> None:
        self.client: httpx.AsyncClient | None = None
        self.token = ""
        self.real: dict[str, str] = {}
        self.statuses: Counter[int] = Counter()

    async def ready(self, api: Api) -> httpx.AsyncClient:
        if self.client is None:
            web.install(api.app)
            await api.create(EXISTING)
            self.client = api.new_client()
            login = await self.client.post(
                "/api/v1/auth/login",
                json={"email": api.owner.email, "password": api.owner.password},
            )
            assert login.status_code == 200, login.text
            self.token = login.json()["csrf_token"]
            # real ids of another user, so the owner never demotes or removes itself
            other = await api.caller(Role.MEMBER)
            self.real = {
                "name": EXISTING["name"],
                "user_id": other.user_id,
                "key_id": other.key_id,
                "notification_id": "0" * 32,
                "task_id": "0" * 32,
                "action": "pause",
            }
        return self.client


EXISTING: dict[str, Any] = {
    "name": "existing",
    "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}],
}
SESSIONS: dict[Api, Session] = {}  # by the object: a strong reference, never a reused id


@pytest.fixture(autouse=True, scope="module")
def _report() -> Iterator[None]:
    """What the forms answered, to see the fuzzing reaches past the CSRF check."""
    yield
    for session in SESSIONS.values():
        print(f"\ndashboard forms answered: {dict(sorted(session.statuses.items()))}")
    SESSIONS.clear()


@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(submission=submissions())
async def test_every_dashboard_form_answers_fuzzed_fields_without_a_500(
    api: Api, submission: tuple[str, dict[str, str], dict[str, str], bool]
) -> None:
    session = SESSIONS.setdefault(api, Session())
    client = await session.ready(api)
    path, params, form, with_token = submission
    url = PARAM.sub(lambda m: quote(_param(session, m.group(1), params[m.group(1)]), safe=""), path)
    if with_token:
        form = {**form, CSRF_FIELD: session.token}
    response = await client.post(url, data=form, headers={"Referer": "http://test/w/default"})
    session.statuses[response.status_code] += 1
    check(url, form, response)


def _param(session: Session, name: str, drawn: str) -> str:
    return session.real.get(name, "nope") if drawn == REAL else drawn


def test_the_route_table_has_every_form() -> None:
    """The forms listed in web/ when this was written; a new one is fuzzed automatically."""
    paths = {path for path, _ in ROUTES}
    assert len(paths) >= 13, sorted(paths)
    assert "/w/{ws}/workflows" in paths and "/signin" in paths


def check(url: str, form: dict[str, str], response: httpx.Response) -> None:
    status = response.status_code
    where = f"POST {url} {sorted(form)} -> {status}: {response.text[:400]}"
    assert status < 500, where
    if status in (302, 303, 307):  # 307: the path without its trailing slash
        assert response.headers["location"].startswith(("/", "http://test/")), where
        return
    assert status == 200 or 400 <= status < 500, where
    kind = response.headers.get("content-type", "")
    assert kind.startswith(("text/html", "application/problem+json")), where
    if status in (200, 422) and kind.startswith("text/html"):
        assert "<form" in response.text, where  # the form again, with what was wrong


async def test_the_definition_upload_refuses_a_yaml_bomb_promptly(api: Api) -> None:
    """The dashboard's "new workflow" form once expanded a billion laughs (it hung), and
    answered 500 for an integer past 64 bits (the stored JSON's encoder refused it)."""
    session = Session()
    client = await session.ready(api)
    too_big = GOOD_YAML.replace("output: 1", f"output: {2**64}")
    for text, why in ((BOMB, "expands to more than"), (DEEP, "nested"), (too_big, "64 bits")):
        began = time.monotonic()
        response = await client.post(
            "/w/default/workflows", data={"yaml": text, CSRF_FIELD: session.token}
        )
        took = time.monotonic() - began
        assert response.status_code == 422, response.text[:400]
        assert why in response.text and "<form" in response.text
        assert took < 15, took  # measured: well under a second
    listed = await api.http.get(f"{api.ws()}/workflows")
    assert [w["name"] for w in listed.json()["items"]] == [EXISTING["name"]]
