"""The FastAPI application: REST under /api/v1, streams, problem+json errors, OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from conveyor import __version__
from conveyor.api import docs, problems
from conveyor.api.audit import AuditTrail
from conveyor.api.limits import BodyLimit
from conveyor.api.parameters import known_query
from conveyor.api.routes import (
    accounts,
    audit,
    credentials,
    definitions,
    executions,
    hooks,
    inbox,
    ops,
    schedules,
    statistics,
    streams,
    webhooks,
    workflows,
)
from conveyor.api.throttles import Throttles
from conveyor.app import Conveyor
from conveyor.generate import GeneratorSettings
from conveyor.live import Feed

API = "/api/v1"
Hook = Callable[[FastAPI], Awaitable[None]]


def create_app(
    conveyor: Conveyor,
    *,
    on_start: Hook | None = None,
    on_stop: Hook | None = None,
    drafting: GeneratorSettings | None = None,
    metrics_token: str | None = None,
    throttles: Throttles | None = None,
) -> FastAPI:
    """An API serving ``conveyor``'s database; the caller owns ``conveyor``'s lifetime.

    ``on_start``/``on_stop`` let the server run an embedded worker and housekeeping;
    ``drafting`` is the LLM that drafts workflows from descriptions (None: not offered);
    ``metrics_token`` lets a scraper read ``/metrics`` for every workspace (None: only
    workspace owners read theirs); ``throttles`` hold the brute-force and flooding limits
    (None: the defaults)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        feed = Feed(conveyor.store)
        await feed.start()
        app.state.feed = feed
        if on_start is not None:
            await on_start(app)
        try:
            yield
        finally:
            if on_stop is not None:
                await on_stop(app)
            hooks.close(app)
            await feed.stop()

    app = FastAPI(
        title="Conveyor",
        version=__version__,
        lifespan=lifespan,
        description="Durable workflow automation. Errors are application/problem+json.",
        openapi_url=f"{API}/openapi.json",
        docs_url=None,  # served by api/docs.py, from packaged assets
        redoc_url=None,
    )
    app.state.conveyor = conveyor
    app.state.drafting = drafting
    app.state.metrics_token = metrics_token
    app.state.throttles = throttles if throttles is not None else Throttles()
    problems.install(app)
    app.add_middleware(BodyLimit, limit=conveyor.limits.request_bytes)
    app.add_middleware(AuditTrail)
    docs.install(app, API)
    for module in (
        accounts,
        audit,
        credentials,
        definitions,
        workflows,
        executions,
        schedules,
        statistics,
        streams,
        webhooks,
        inbox,
    ):
        app.include_router(
            module.router,
            prefix=API,
            responses=problems.API_ERRORS,
            dependencies=[Depends(known_query)],
        )
    app.include_router(ops.router, responses=problems.documented(503))
    app.include_router(hooks.router)
    return app
