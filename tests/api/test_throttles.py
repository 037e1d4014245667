"""Brute-force and flooding limits through the real routes, on both backends: failed
sign-ins (API and dashboard form), invalid API keys, and a flood of webhook deliveries, each
answered 429 problem+json with Retry-After; the counters run on a hand-moved clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from conveyor import server, web
from conveyor.api.throttles import Throttles, ThrottleSettings
from conveyor.settings import Settings
from conveyor.store.tables import executions, webhook_deliveries
from tests.api.conftest import Api
from tests.api.support import API, problem_of, transform

LOGIN = f"{API}/auth/login"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def limited(api: Api, **settings: object) -> Clock:
    clock = Clock()
    api.app.state.throttles = Throttles(ThrottleSettings(**settings), clock)  # type: ignore[arg-type]
    return clock


def retry_after(response: object, seconds: int) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["retry-after"] == str(seconds), dict(headers)


async def test_failed_signins_are_refused_429_until_the_window_passes(api: Api) -> None:
    web.install(api.app)  # the dashboard's form shares the counters
    clock = limited(api, signin_failures=3, signin_window=timedelta(minutes=15))
    email, password = api.owner.email, api.owner.password
    client = api.new_client()
    for _ in range(3):
        wrong = await client.post(LOGIN, json={"email": email, "password": "guess"})
        problem_of(wrong, 401)
    clock.now += 60
    refused = await client.post(LOGIN, json={"email": email, "password": password})
    assert "too many failed sign-ins" in problem_of(refused, 429)["detail"]
    retry_after(refused, 840)  # the first failure leaves the 15-minute window then
    form = {"email": email.upper(), "password": password, "next": "/"}
    page = await client.post("/signin", data=form)
    assert page.status_code == 429 and "Too many failed sign-ins" in page.text
    retry_after(page, 840)
    other = await client.post(LOGIN, json={"email": "someone@example.com", "password": "x"})
    problem_of(other, 401)  # another account from the address: its own count

    clock.now += 840
    signed = await client.post(LOGIN, json={"email": email, "password": password})
    assert signed.status_code == 200, signed.text
    # The success reset the count: two more failures do not block a third try.
    for _ in range(2):
        problem_of(await client.post(LOGIN, json={"email": email, "password": "no"}), 401)
    assert (await client.post(LOGIN, json={"email": email, "password": password})).is_success


async def test_a_burst_of_concurrent_guesses_gets_no_more_tries_than_the_limit(
    api: Api,
) -> None:
    limited(api, signin_failures=3)
    client = api.new_client()
    guess = {"email": api.owner.email, "password": "guess"}
    answers = await asyncio.gather(*(client.post(LOGIN, json=guess) for _ in range(12)))
    assert sorted(a.status_code for a in answers) == [401] * 3 + [429] * 9


async def test_failures_over_many_accounts_block_the_address(api: Api) -> None:
    limited(api, signin_failures=100, signin_failures_per_client=5)
    client = api.new_client()
    for n in range(5):
        guess = {"email": f"user{n}@example.com", "password": "123456"}
        problem_of(await client.post(LOGIN, json=guess), 401)
    good = {"email": api.owner.email, "password": api.owner.password}
    problem_of(await client.post(LOGIN, json=good), 429)


async def test_invalid_api_keys_block_the_address(api: Api) -> None:
    clock = limited(api, api_key_failures=4, api_key_window=timedelta(minutes=5))
    url = f"{api.ws()}/workflows"
    assert (await api.http.get(url)).status_code == 200  # valid keys never count
    for n in range(4):
        guess = api.new_client({"Authorization": f"Bearer cvk_guess{n}"})
        problem_of(await guess.get(url), 401)
    refused = await api.http.get(url)  # even a valid key: a right guess is not told apart
    problem_of(refused, 429)
    retry_after(refused, 300)
    session = api.new_client()  # sessions are not key guesses
    login = {"email": api.owner.email, "password": api.owner.password}
    assert (await session.post(LOGIN, json=login)).status_code == 200
    assert (await session.get(url)).status_code == 200
    clock.now += 300
    assert (await api.http.get(url)).status_code == 200


async def count(api: Api, table: object) -> int:
    def counted(conn: object) -> int:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[attr-defined]

    return await api.store.read(counted)


async def open_hook(api: Api, name: str) -> str:
    """An active workflow with a webhook that needs no auth; the path of its URL."""
    definition = {
        **transform(name),
        "triggers": [{"type": "webhook", "id": "in", "auth": {"mode": "none"}}],
    }
    saved = await api.http.post(f"{api.ws()}/workflows", json={"definition": definition})
    assert saved.status_code == 201, saved.text
    assert (await api.http.post(f"{api.ws()}/workflows/{name}/activate")).status_code == 200
    return str(saved.json()["triggers"][0]["url"]).removeprefix("http://test")


async def test_a_webhook_flood_is_refused_before_anything_is_written(api: Api) -> None:
    clock = limited(api, webhook_rate=2.0, webhook_burst=5)
    url = await open_hook(api, "flooded")
    sender = api.new_client()
    answers = [await sender.post(url, json={"n": n}) for n in range(12)]
    assert [a.status_code for a in answers] == [202] * 5 + [429] * 7
    problem = problem_of(answers[-1], 429)
    assert "too many deliveries" in problem["detail"]
    retry_after(answers[-1], 1)  # one token every half second
    assert await count(api, webhook_deliveries) == 5
    assert await count(api, executions) == 5
    clock.now += 1.0  # two tokens
    again = [await sender.post(url, json={}) for _ in range(3)]
    assert [a.status_code for a in again] == [202, 202, 429]


async def test_an_address_guessing_webhook_urls_is_refused(api: Api) -> None:
    clock = limited(api, api_key_failures=3, api_key_window=timedelta(minutes=5))
    url = await open_hook(api, "guarded")
    sender = api.new_client()
    assert (await sender.post(url, json={})).status_code == 202  # known URLs never count
    for n in range(3):
        problem_of(await sender.post(f"/hooks/guess{n}", json={}), 404)
    refused = await sender.post(url, json={})  # a right guess is not told apart
    assert "too many unknown webhook URLs" in problem_of(refused, 429)["detail"]
    retry_after(refused, 300)
    keyed = await api.http.get(f"{api.ws()}/workflows")
    assert keyed.status_code == 200  # API keys from the address have their own count
    clock.now += 300
    assert (await sender.post(url, json={})).status_code == 202


async def test_the_server_takes_its_limits_from_the_settings(api: Api) -> None:
    """``conveyor server`` builds its app with the CONVEYOR_* limits; the dashboard's form
    answers 429 at the configured count."""
    settings = Settings(signin_failures=2, webhook_rate=0)
    app = server.build(api.conveyor, settings, None)
    built = app.state.throttles.settings
    assert (built.signin_failures, built.webhook_rate) == (2, 0)
    assert built.api_key_failures == ThrottleSettings().api_key_failures
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")
    async with client:
        form = {"email": api.owner.email, "password": "guess"}
        statuses = [(await client.post("/signin", data=form)).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
