"""Second-order template injection, in real executions on both backends: data that looks
like a template (an execution input, an HTTP response body, a step output) is never
rendered again when a later node reads it; the canary secret it names reaches neither the
outside server nor the database."""

from __future__ import annotations

from urllib.parse import quote

from conveyor.app import Conveyor
from tests.integration.httpserver import LocalServer, http_server  # noqa: F401 (fixture)
from tests.integration.test_credentials import CANARY, leaks
from tests.integration.test_runner import execute, workflow

BAIT = "{{ secrets.api }} {{ 7*7 }} {% for i in range(3) %}x{% endfor %} {{ nodes }}"


async def test_data_that_looks_like_a_template_is_never_rendered_again(
    conveyor: Conveyor,
    http_server: LocalServer,  # noqa: F811 (fixture)
) -> None:
    await conveyor.set_credential("api", "bearer", {"token": CANARY})
    base = http_server.base_url
    finished = await execute(
        conveyor,
        workflow(
            "second-order",
            {
                # The input's bait goes out in the body, a header and the URL...
                "id": "fetch",
                "type": "http.request",
                "config": {
                    "method": "POST",
                    "url": "{{ input.url }}",
                    "headers": {"X-Note": "{{ input.note }}"},
                    "json": {"note": "{{ input.note }}", "pair": ["{{ input.note }}", 1]},
                },
            },
            {
                # ...comes back in the response, and later nodes read it in every form.
                "id": "use",
                "type": "transform",
                "needs": ["fetch"],
                "config": {
                    "output": {
                        "whole": "{{ nodes.fetch.output.body }}",
                        "note": "{{ nodes.fetch.output.body.json.note }}",
                        "within": "seen: {{ nodes.fetch.output.body.json.note }}!",
                        "header": "{{ nodes.fetch.output.body.headers['X-Note'] }}",
                        "joined": "{{ nodes.fetch.output.body.json.pair | join('|') }}",
                    }
                },
            },
            {
                "id": "again",
                "type": "transform",
                "needs": ["use"],
                "config": {"output": "{{ nodes.use.output.within }} / {{ input.note }}"},
            },
        ),
        {"note": BAIT, "url": f"{base}/echo?q={quote(BAIT)}"},
    )
    assert finished.status == "succeeded", finished.execution["error"]
    (received,) = http_server.requests_to("/echo")
    assert received.headers["X-Note"] == BAIT
    assert received.query["q"] == BAIT
    echoed = finished.step("fetch")["output"]["body"]
    assert echoed["json"] == {"note": BAIT, "pair": [BAIT, 1]}
    output = finished.step("use")["output"]
    assert output["whole"] == echoed
    assert output["note"] == BAIT and output["header"] == BAIT
    assert output["within"] == f"seen: {BAIT}!"
    assert output["joined"] == f"{BAIT}|1"
    assert finished.step("again")["output"] == f"seen: {BAIT}! / {BAIT}"
    # Nothing named the secret but the bait: it was never read, sent or stored.
    assert CANARY not in repr(http_server.requests)
    assert leaks(conveyor, CANARY) == []
