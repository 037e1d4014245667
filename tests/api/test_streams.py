"""Live streams: SSE per execution (resumable with Last-Event-ID), SSE per workspace with
live counts, and the WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from typing import Any

import pytest

from conveyor import live
from conveyor.api import sse
from conveyor.api.routes.streams import _follow
from conveyor.live import Delivery, Subscription
from conveyor.store import feed as reads
from conveyor.store.accounts import Role
from tests.api.conftest import Api, B
from tests.api.support import (
    Event,
    SSEStream,
    WebSocket,
    WebSocketRejected,
    failing,
    gated,
    problem_of,
    transform,
    waiting,
)

QUIET = {"queued": 0, "running": 0, "waiting": 0}


def position(ident: str | None) -> tuple[int, int]:
    """A message id as (event seq, index among the messages derived from that event)."""
    assert ident is not None
    seq, dot, index = ident.partition(".")
    assert seq.isdigit() and (not dot or index.isdigit()), ident
    return int(seq), int(index or 0)


def carried(events: list[Event]) -> list[int]:
    """The event seqs a stream delivered: every message but connected, progress and the
    ``error`` that precedes a failure's ``complete`` (derived from the same event)."""
    seqs = []
    for e in events:
        if e.event in ("connected", "progress", "error"):
            continue
        assert e.data["seq"] == position(e.id)[0], e
        seqs.append(e.data["seq"])
    return seqs


def gated_failure(name: str, gate: str) -> dict[str, Any]:
    """Step ``hold`` runs until the test opens ``gate``; then ``boom`` fails the execution."""
    return {
        "name": name,
        "nodes": [
            {"id": "hold", "type": "test.gate", "config": {"gate": gate}},
            {
                "id": "boom",
                "type": "fail",
                "needs": ["hold"],
                "config": {"message": "on purpose", "non_retryable": True},
            },
        ],
    }


async def stored_seqs(api: Api, execution_id: str) -> list[int]:
    response = await api.http.get(f"{api.ws()}/executions/{execution_id}/events")
    assert response.status_code == 200
    return [e["seq"] for e in response.json()]


def is_step(kind: str, node_id: str) -> Any:
    return lambda e: e.event == "step" and e.data["type"] == kind and e.data["node_id"] == node_id


async def test_execution_stream_reports_steps_progress_and_completion(api: Api) -> None:
    await api.create(gated("streamed", "streamed"))
    execution_id = await api.execute("streamed")
    url = f"{api.ws()}/executions/{execution_id}/stream"
    async with SSEStream(api.http, url) as stream:
        connected = await stream.next()
        assert connected is not None and connected.event == "connected"
        assert connected.data == {"execution_id": execution_id, "resume_after": 0}
        assert connected.id == "0"
        await stream.until(is_step("step.started", "hold"))
        api.gate("streamed").set()  # the rest happens while the stream is open
        await stream.rest()
    events = stream.seen
    positions = [position(e.id) for e in events]
    assert all(a < b for a, b in itertools.pairwise(positions)), positions
    kinds = [e.event for e in events]
    assert kinds[0] == "connected"
    steps = [(e.data["type"], e.data["node_id"]) for e in events if e.event == "step"]
    assert steps == [
        ("step.started", "hold"),
        ("step.succeeded", "hold"),
        ("step.started", "done"),
        ("step.succeeded", "done"),
    ]
    complete = [e for e in events if e.event == "complete"]
    assert len(complete) == 1 and complete[0].data["type"] == "execution.succeeded"
    progress = [e for e in events if e.event == "progress"]
    assert progress, kinds
    assert progress[-1] is events[-1]
    assert progress[-1].data["status"] == "succeeded"
    assert progress[-1].data["percentage"] == 100.0
    assert progress[-1].data["completed"] == progress[-1].data["total"] == 2
    assert "error" not in kinds
    # every stored event exactly once, in order
    assert carried(events) == await stored_seqs(api, execution_id)


async def test_reconnecting_with_last_event_id_resumes_exactly_after_it(api: Api) -> None:
    await api.create(gated("resumable", "resumable"))
    execution_id = await api.execute("resumable")
    url = f"{api.ws()}/executions/{execution_id}/stream"
    async with SSEStream(api.http, url) as first:
        await first.until(is_step("step.started", "hold"))
    before = carried(first.seen)
    assert before, first.seen
    last_id = first.seen[-1].id
    assert last_id is not None

    async with SSEStream(api.http, url, {"Last-Event-ID": last_id}) as second:
        connected = await second.next()
        assert connected is not None and connected.event == "connected"
        assert connected.data["resume_after"] == int(last_id) and connected.id == last_id
        api.gate("resumable").set()
        await second.rest()
    after = carried(second.seen)
    everything = await stored_seqs(api, execution_id)
    assert before + after == everything  # no duplicates, no gaps
    assert second.seen[-1].event == "progress"

    # resuming a finished execution from any point gives exactly what follows it
    for n in range(len(everything) + 1):
        for headers, query in (({"Last-Event-ID": str(n)}, ""), (None, f"?after={n}")):
            async with SSEStream(api.http, url + query, headers) as again:
                got = await again.rest()
            assert got[0].event == "connected" and got[0].data["resume_after"] == n
            assert carried(got) == [s for s in everything if s > n], (n, query)
            if n == len(everything):  # after ``complete``: only the progress that followed it
                assert [e.event for e in got] == ["connected", "progress"]


async def test_a_failure_streams_error_then_complete(api: Api) -> None:
    await api.create(failing("fails-live", "broken pipe"))
    execution_id = await api.execute("fails-live")
    async with SSEStream(api.http, f"{api.ws()}/executions/{execution_id}/stream") as stream:
        events = await stream.rest()
    kinds = [e.event for e in events]
    assert kinds.index("error") + 1 == kinds.index("complete"), kinds
    error = events[kinds.index("error")]
    assert error.data["type"] == "execution.failed"
    assert error.data["error"]["message"] == "broken pipe"
    assert events[-1].event == "progress" and events[-1].data["status"] == "failed"
    assert carried(events) == await stored_seqs(api, execution_id)


async def test_a_cancelled_waiting_execution_completes_its_stream_promptly(api: Api) -> None:
    await api.create(waiting("cancel-live"))
    execution_id = await api.execute("cancel-live")
    await api.until_status(execution_id, "waiting")
    async with SSEStream(api.http, f"{api.ws()}/executions/{execution_id}/stream") as stream:
        await stream.until(lambda e: e.event == "execution.waiting")
        response = await api.http.post(f"{api.ws()}/executions/{execution_id}/cancel")
        assert response.json()["status"] == "cancelled"
        # "queued or waiting at once": the stream must say so without a long poll
        done = await stream.until(lambda e: e.event == "complete", within=3)
    assert done[-1].data["type"] == "execution.cancelled"


def _resumable(events: list[Event]) -> list[tuple[str, str | None, Any]]:
    return [(e.event, e.id, e.data) for e in events if e.event != "progress"]


async def _assert_resumes_from_every_id(api: Api, url: str, first: list[Event]) -> None:
    """Resuming after each message of ``first`` gives exactly the messages that followed it
    there (progress, a snapshot, is compared only where it ends the stream: the final one)."""
    for i, message in enumerate(first):
        assert message.id is not None
        async with SSEStream(api.http, url, {"Last-Event-ID": message.id}) as again:
            got = await again.rest()
        assert got[0].event == "connected" and got[0].id == message.id, got[0]
        assert got[0].data["resume_after"] == position(message.id)[0]
        expected = first[i + 1 :]
        assert _resumable(got[1:]) == _resumable(expected), (message.id, got, expected)
        if expected:
            assert got[-1] == first[-1], (message.id, got[-1], first[-1])
        else:
            assert got[1:] == [], (message.id, got)


async def test_every_message_of_a_failed_execution_is_a_resume_point(api: Api) -> None:
    """G11: every message has its own strictly increasing id, and resuming after any of
    them, including ``error``, delivers exactly what followed it, up to ``complete``."""
    await api.create(gated_failure("fails-resumable", "fails-resumable"))
    execution_id = await api.execute("fails-resumable")
    url = f"{api.ws()}/executions/{execution_id}/stream"
    async with SSEStream(api.http, url) as live:
        await live.until(is_step("step.started", "hold"))
        api.gate("fails-resumable").set()
        await live.rest()
    async with SSEStream(api.http, url) as after_end:  # read once it had failed
        await after_end.rest()
    for first in (live.seen, after_end.seen):
        positions = [position(e.id) for e in first]
        assert all(a < b for a, b in itertools.pairwise(positions)), positions
        kinds = [e.event for e in first]
        assert kinds[-3:] == ["error", "complete", "progress"], kinds
        assert first[-1].data["status"] == "failed"
        assert carried(first) == await stored_seqs(api, execution_id)
        await _assert_resumes_from_every_id(api, url, first)
    # the same stream either way, but for the snapshots sent while it ran
    assert after_end.seen == [e for e in live.seen if e.event != "progress"] + [live.seen[-1]]


async def test_stream_request_errors_are_problems(api: Api) -> None:
    await api.create(transform("streamable"))
    execution_id = await api.execute("streamable")
    await api.until_finished(execution_id)
    url = f"{api.ws()}/executions/{execution_id}/stream"
    problem_of(await api.http.get(f"{api.ws()}/executions/{'0' * 32}/stream"), 404)
    problem_of(await api.http.get(url, headers={"Last-Event-ID": "abc"}), 400)
    problem_of(await api.http.get(url, headers={"Last-Event-ID": "-3"}), 400)
    for bad in ("1.", ".1", "1.2.3", "1.-1", "1e3", " 1", "1.0"):
        problem_of(await api.http.get(url, headers={"Last-Event-ID": bad}), 400)
    problem_of(await api.http.get(url, params={"after": -1}), 422)


async def test_workspace_stream_yields_its_events_and_live_counts(api: Api) -> None:
    other = await api.caller(Role.OWNER, B)
    as_other = api.as_(other)
    await api.create(gated("ws-live", "ws-live"))
    await as_other.post(f"{api.ws(B)}/workflows", json={"definition": transform("elsewhere")})
    async with SSEStream(api.http, f"{api.ws()}/stream") as stream:
        connected = await stream.next()
        assert connected is not None and connected.event == "connected"
        assert connected.data == {"counts": QUIET}
        assert connected.id is not None and connected.id.isdigit()
        execution_id = await api.execute("ws-live")
        await stream.until(
            lambda e: e.event == "step.started" and e.data["execution_id"] == execution_id
        )
        foreign = await api.execute("elsewhere", client=as_other, workspace=B)
        await api.until_finished(foreign)
        api.gate("ws-live").set()
        await stream.until(
            lambda e: e.event == "execution.succeeded" and e.data["execution_id"] == execution_id
        )
        # Counts are sent when they change, read just after a batch of events: the quiet
        # counts may come with the last events or just before them, but they come.
        latest = [e.data for e in stream.seen if e.event == "counts"]
        if latest[-1:] != [QUIET]:
            await stream.until(lambda e: e.event == "counts" and e.data == QUIET)
    events = stream.seen
    positions = [position(e.id) for e in events]  # every message its own id, increasing
    assert all(a < b for a, b in itertools.pairwise(positions)), positions
    assert all(position(e.id)[1] == 0 for e in events if e.event not in ("connected", "counts"))
    of_ours = [e for e in events if e.event not in ("connected", "counts")]
    assert {e.data["execution_id"] for e in of_ours} == {execution_id}  # nothing from B
    ids = [int(e.id or 0) for e in of_ours]
    assert ids == sorted(set(ids)) and ids[0] > int(connected.id)
    assert [e.data["seq"] for e in of_ours] == await stored_seqs(api, execution_id)
    counts = [e.data for e in events if e.event == "counts"]
    assert any(sum(c.values()) > 0 for c in counts), counts
    assert counts[-1] == QUIET

    # resuming the workspace stream after an event gives what followed it
    resume_at = of_ours[1]
    async with SSEStream(
        api.http, f"{api.ws()}/stream", {"Last-Event-ID": resume_at.id or ""}
    ) as again:
        await again.until(
            lambda e: e.event == "execution.succeeded" and e.data["execution_id"] == execution_id
        )
    replayed = [int(e.id or 0) for e in again.seen if e.event not in ("connected", "counts")]
    assert replayed == ids[2:]

    # ?after= (a dashboard page's cursor) does the same; Last-Event-ID (a reconnect) wins
    for query, headers in (
        (f"?after={resume_at.id}", None),
        ("?after=0", {"Last-Event-ID": resume_at.id or ""}),
    ):
        async with SSEStream(api.http, f"{api.ws()}/stream{query}", headers) as page:
            await page.until(
                lambda e: (
                    e.event == "execution.succeeded" and e.data["execution_id"] == execution_id
                )
            )
        replayed = [int(e.id or 0) for e in page.seen if e.event not in ("connected", "counts")]
        assert replayed == ids[2:], query
    problem_of(await api.http.get(f"{api.ws()}/stream?after=-1"), 422)

    # and after a counts message, with what followed its event
    counted = next(e for e in events if e.event == "counts" and position(e.id)[0] < ids[-1])
    async with SSEStream(api.http, f"{api.ws()}/stream", {"Last-Event-ID": counted.id or ""}) as c:
        await c.until(
            lambda e: e.event == "execution.succeeded" and e.data["execution_id"] == execution_id
        )
    replayed = [int(e.id or 0) for e in c.seen if e.event not in ("connected", "counts")]
    assert replayed == [i for i in ids if i > position(counted.id)[0]]


async def test_a_workspace_stream_sends_only_the_event_types_it_asked_for(api: Api) -> None:
    """``?types=`` (a page that shows only some events): the others never reach it, counts
    still do, and a resume or a second stream with the same filter gets the same."""
    await api.create(gated("ws-types", "ws-types"))
    url = f"{api.ws()}/stream?types=execution.,notification."
    async with SSEStream(api.http, url) as stream:
        await stream.until(lambda e: e.event == "connected")
        execution_id = await api.execute("ws-types")
        await stream.until(lambda e: e.event == "counts" and e.data["running"] == 1)
        api.gate("ws-types").set()
        await stream.until(
            lambda e: e.event == "execution.succeeded" and e.data["execution_id"] == execution_id
        )
        if [e.data for e in stream.seen if e.event == "counts"][-1:] != [QUIET]:
            await stream.until(lambda e: e.event == "counts" and e.data == QUIET)
    kinds = [e.event for e in stream.seen if e.event not in ("connected", "counts")]
    stored = await api.http.get(f"{api.ws()}/executions/{execution_id}/events")
    every = [e["type"] for e in stored.json()]
    assert any(t.startswith("step.") for t in every)  # there were step events to leave out
    assert kinds == [t for t in every if t.startswith("execution.")]
    # counts keep their "N.1" ids after the last event of their batch, in order
    positions = [position(e.id) for e in stream.seen]
    assert all(a < b for a, b in itertools.pairwise(positions)), positions

    # resuming with Last-Event-ID keeps the filter of the URL
    first = next(e for e in stream.seen if e.event == "execution.queued")
    async with SSEStream(api.http, url, {"Last-Event-ID": first.id or ""}) as again:
        await again.until(
            lambda e: e.event == "execution.succeeded" and e.data["execution_id"] == execution_id
        )
    replayed = [e.event for e in again.seen if e.event not in ("connected", "counts")]
    assert replayed == kinds[1:]

    for bad in ("Step.", "a,,b;c", ",".join(f"t{i}." for i in range(21))):
        problem_of(await api.http.get(f"{api.ws()}/stream", params={"types": bad}), 400)

    # empty: the counts alone (the "N running" indicator of a page that shows no events)
    await api.create(gated("ws-counts", "ws-counts"))
    async with SSEStream(api.http, f"{api.ws()}/stream?types=") as counts_only:
        await counts_only.until(lambda e: e.event == "connected")
        second = await api.execute("ws-counts")  # held at its gate: running stays 1
        await counts_only.until(lambda e: e.event == "counts" and e.data["running"] == 1)
        api.gate("ws-counts").set()
        await api.until_finished(second)
        await counts_only.until(lambda e: e.event == "counts" and e.data == QUIET)
    assert {e.event for e in counts_only.seen} == {"connected", "counts"}


async def test_websocket_subscription_to_an_execution(api: Api) -> None:
    await api.create(gated("ws-sub", "ws-sub"))
    execution_id = await api.execute("ws-sub")
    async with WebSocket(api.app, f"{api.ws()}/ws", api.owner.headers) as socket:
        await socket.send_json({"subscribe": execution_id})
        assert await socket.receive_json() == {"subscribed": execution_id}
        got: list[dict[str, Any]] = []
        while not got or got[-1]["type"] != "execution.succeeded":
            message = await socket.receive_json()
            assert message["execution_id"] == execution_id, message
            got.append(message)
            if message["type"] == "step.started":
                api.gate("ws-sub").set()
    assert [m["seq"] for m in got] == await stored_seqs(api, execution_id)
    assert got[0]["type"] == "execution.queued"
    assert {m["data"].get("node_id") for m in got if m["type"].startswith("step.")} == {
        "hold",
        "done",
    }


async def test_websocket_workspace_subscription_and_errors(api: Api) -> None:
    other = await api.caller(Role.OWNER, B)
    await api.create(transform("ws-all"))
    as_other = api.as_(other)
    await as_other.post(f"{api.ws(B)}/workflows", json={"definition": transform("theirs")})
    foreign = await api.execute("theirs", client=as_other, workspace=B)
    async with WebSocket(api.app, f"{api.ws()}/ws", api.owner.headers) as socket:
        await socket.send_json({"hello": 1})
        assert "error" in await socket.receive_json()
        await socket.send_json({"subscribe": foreign})
        refused = await socket.receive_json()
        assert refused["subscribe"] == foreign and "not found" in refused["error"]
        await socket.send_json({"subscribe": "workspace"})
        assert await socket.receive_json() == {"subscribed": "workspace"}
        execution_id = await api.execute("ws-all")
        seen: list[str] = []
        while "execution.succeeded" not in seen:
            message = await socket.receive_json()
            assert message["execution_id"] == execution_id, message
            seen.append(message["type"])
    assert seen[0] == "execution.queued"


@pytest.mark.parametrize("who", ["nobody", "stranger"])
async def test_websocket_refuses_callers_without_access(api: Api, who: str) -> None:
    headers = {}
    if who == "stranger":
        headers = (await api.caller(Role.OWNER, B)).headers
    with pytest.raises(WebSocketRejected) as refused:
        async with WebSocket(api.app, f"{api.ws()}/ws", headers) as socket:
            await socket.send_json({"subscribe": "workspace"})
            await socket.receive_json()
    # closed before the handshake with 1008 (policy violation), which servers answer as
    # HTTP 403; the reason says which problem it was
    assert refused.value.status == 1008, refused.value
    assert refused.value.reason == ("unauthorized" if who == "nobody" else "not-found")


async def test_fifty_open_streams_cost_one_database_read_per_batch(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """25 workspace and 25 execution streams follow one execution: the feed reads each
    batch of events once for all of them, and no stream reads anything after catching up."""
    await api.create(waiting("many-viewers"))
    execution_id = await api.execute("many-viewers")
    await api.until_status(execution_id, "waiting")
    calls: Counter[str] = Counter()
    read = api.store.read

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls[fn.__name__] += 1
        return await read(fn, *args, **kwargs)

    monkeypatch.setattr(api.store, "read", counted)
    urls = [f"{api.ws()}/stream"] * 25 + [f"{api.ws()}/executions/{execution_id}/stream"] * 25
    async with contextlib.AsyncExitStack() as stack:
        streams = [await stack.enter_async_context(SSEStream(api.http, url)) for url in urls]
        for stream in streams[25:]:  # caught up: the execution is waiting for its signal
            await stream.until(lambda e: e.event == "execution.waiting")
        calls.clear()
        signal = {"name": "go", "data": {"by": "viewers"}}
        response = await api.http.post(f"{api.ws()}/executions/{execution_id}/signal", json=signal)
        assert response.status_code in (200, 202), response.text
        for stream in streams[25:]:
            await stream.until(lambda e: e.event == "complete")
        for stream in streams[:25]:
            await stream.until(lambda e: e.event == "execution.succeeded")
    # Streams read nothing once live (names of this and of the old per-stream reads).
    per_stream = {"workspace_events", "execution_events", "counts", "latest", "events_after"}
    assert not per_stream & set(calls), calls
    assert not {"_events_and_counts", "_workspace_events", "_counts"} & set(calls), calls
    assert calls["get_execution"] <= 1, calls  # the signal's own request
    assert 1 <= calls["read"] < 25, calls  # the feed: one read per batch, for all fifty


async def test_resuming_while_events_are_written_concurrently_misses_and_repeats_nothing(
    api: Api,
) -> None:
    """G11 under concurrent writers: workspace streams opened with Last-Event-ID at various
    points while four writers commit events at once each get exactly the events after
    their point, in id order: caught up from the database, then live from the feed."""
    await api.create(gated("busy", "busy"))
    running = [await api.execute("busy") for _ in range(4)]
    for execution_id in running:
        await api.until_status(execution_id, "running")
    ws_id = api.conveyor.workspace_id
    written: asyncio.Queue[None] = asyncio.Queue()

    async def write(execution_id: str) -> None:
        for n in range(25):
            await api.store.signal(ws_id, execution_id, f"s{n}", {})
            written.put_nowait(None)

    async def stored_ids() -> list[int]:
        rows, _ = await api.store.read(reads.workspace_events, ws_id, 0, sse.MAX_SEQ, 10_000)
        return [r["id"] for r in rows]

    base = await stored_ids()
    writers = [asyncio.create_task(write(e)) for e in running]
    async with contextlib.AsyncExitStack() as stack:
        streams: list[tuple[int, SSEStream]] = []
        for k in range(6):
            async with asyncio.timeout(10):  # about 15 events between two streams
                for _ in range(15 if k else 0):
                    await written.get()
            resume = base[-1] - 2 + k * 7 if k else base[0]
            headers = {"Last-Event-ID": str(resume)}
            stream = await stack.enter_async_context(
                SSEStream(api.http, f"{api.ws()}/stream", headers)
            )
            streams.append((resume, stream))
        await asyncio.gather(*writers)
        last = await api.store.signal(ws_id, running[0], "last", {})
        assert last
        everything = await stored_ids()
        for resume, stream in streams:
            await stream.until(lambda e: e.event != "counts" and e.id == str(everything[-1]))
            got = [int(e.id or 0) for e in stream.seen if e.event not in ("connected", "counts")]
            assert got == [i for i in everything if i > resume], resume
    api.gate("busy").set()


async def test_a_paced_stream_writes_at_once_then_at_most_once_per_pause() -> None:
    """A workspace stream's pacing: the first write after a quiet spell goes at once; what
    arrives during the pause goes in ONE write at its end, never sooner; the keep-alive
    and the counters are unaffected."""
    subscription = Subscription(live.workspace("w"))
    subscription._begin(0)
    loop = asyncio.get_running_loop()

    def render(delivery: Delivery) -> bytes:
        return b"".join(r["body"] for r in delivery.rows)

    follow = _follow(subscription, render, lambda: False, spacing=0.3)
    before_first = loop.time()  # the pause runs from the first write, which is later
    subscription._push(Delivery([{"body": b"a"}], {}))
    assert await anext(follow) == b"a"  # nothing else was pushed: it went at once
    subscription._push(Delivery([{"body": b"b"}], {}))
    subscription._push(Delivery([{"body": b"c"}, {"body": b"d"}], {}))
    assert await anext(follow) == b"bcd"
    assert loop.time() - before_first >= 0.3
    assert (subscription.delivered.writes, subscription.delivered.bytes) == (2, 4)

    unpaced = _follow(subscription, render, lambda: False)
    subscription._push(Delivery([{"body": b"e"}], {}))
    assert await anext(unpaced) == b"e"
    subscription._push(Delivery([{"body": b"f"}], {}))
    assert await anext(unpaced) == b"f"  # an execution's stream: each batch as it comes
    assert subscription.delivered.writes == 4
    await follow.aclose()
    await unpaced.aclose()
