"""``POST /workspaces/{ws}/generate`` against a real local OpenAI-compatible server with
scripted answers: a bad draft goes back with its problems, the repaired one comes back, and
nothing is saved; a draft still invalid comes back with its problems at their lines; no LLM
configured, an LLM that fails, or one at a refused address is a 503 that says why."""

from __future__ import annotations

from conveyor.generate import GeneratorSettings
from conveyor.nodes.base import NetworkPolicy
from tests.api.conftest import Api
from tests.api.support import problem_of
from tests.integration.llmserver import LLMServer, Reply, Status, llm_server
from tests.integration.test_generate import BAD, GOOD

__all__ = ["llm_server"]  # the fixture, for the tests below


def drafting(api: Api, server: LLMServer) -> None:
    api.app.state.drafting = GeneratorSettings(
        base_url=server.base_url, model="drafter", api_key="sk-gen"
    )


async def workflow_names(api: Api) -> list[str]:
    answer = await api.http.get(f"{api.ws()}/workflows")
    assert answer.status_code == 200, answer.text
    return [w["name"] for w in answer.json()["items"]]


async def test_a_bad_draft_is_repaired_and_the_repair_comes_back_unsaved(
    api: Api, llm_server: LLMServer
) -> None:
    drafting(api, llm_server)
    llm_server.script(Reply(BAD), Reply(GOOD))
    answer = await api.http.post(
        f"{api.ws()}/generate", json={"description": "Greet someone by name"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is True and body["attempts"] == 2 and body["problems"] == []
    assert body["definition"]["name"] == "greet"
    assert [n["type"] for n in body["definition"]["nodes"]] == ["transform", "transform"]
    assert "hello {{ input.name }}" in body["yaml"]
    first, repair = llm_server.requests
    assert first.messages[1] == {"role": "user", "content": "Greet someone by name"}
    assert first.header("authorization") == "Bearer sk-gen"
    assert "transfrom" in repair.messages[-1]["content"]
    assert await workflow_names(api) == []


async def test_a_draft_still_invalid_comes_back_with_its_problems_at_their_lines(
    api: Api, llm_server: LLMServer
) -> None:
    drafting(api, llm_server)
    llm_server.script(Reply(BAD), Reply(GOOD))
    answer = await api.http.post(
        f"{api.ws()}/generate", json={"description": "Greet someone", "repairs": 0}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is False and body["attempts"] == 1
    assert len(llm_server.requests) == 1
    assert body["definition"]["nodes"][0]["type"] == "transfrom"
    lines = body["yaml"].splitlines()
    by_node = {p["node_id"]: p for p in body["problems"]}
    assert set(by_node) == {"hello", "after"}, body["problems"]
    for node_id, word in (("hello", "transfrom"), ("after", "nowhere")):
        line = by_node[node_id]["line"]
        assert isinstance(line, int) and line >= 1
        assert word in lines[line - 1], (line, body["yaml"])
    assert "transfrom" in by_node["hello"]["message"]
    assert await workflow_names(api) == []


async def test_without_an_llm_the_route_says_how_to_configure_one(api: Api) -> None:
    answer = await api.http.post(f"{api.ws()}/generate", json={"description": "anything"})
    problem = problem_of(answer, 503)
    assert problem["type"].endswith("/service-unavailable")
    assert "CONVEYOR_LLM_BASE_URL" in problem["detail"]


async def test_an_llm_that_fails_is_a_503_naming_it(api: Api, llm_server: LLMServer) -> None:
    drafting(api, llm_server)
    llm_server.script(Status(401, "bad key"))
    answer = await api.http.post(f"{api.ws()}/generate", json={"description": "anything"})
    problem = problem_of(answer, 503)
    assert "the LLM that drafts workflows failed" in problem["detail"]
    assert "401" in problem["detail"] and "drafter" in problem["detail"]


async def test_the_llm_call_goes_through_the_outbound_guard(
    api: Api, llm_server: LLMServer
) -> None:
    drafting(api, llm_server)
    api.conveyor.registry.network = NetworkPolicy()  # loopback refused, as in production
    llm_server.script(Reply(GOOD))
    answer = await api.http.post(f"{api.ws()}/generate", json={"description": "anything"})
    problem = problem_of(answer, 503)
    assert "127.0.0.1" in problem["detail"], problem
    assert llm_server.requests == []


async def test_a_blank_description_is_refused(api: Api, llm_server: LLMServer) -> None:
    drafting(api, llm_server)
    for body, status in (({"description": "   "}, 400), ({"description": ""}, 422)):
        answer = await api.http.post(f"{api.ws()}/generate", json=body)
        problem_of(answer, status)
    assert llm_server.requests == []
