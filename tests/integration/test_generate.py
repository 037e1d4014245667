"""``conveyor generate`` against a real local OpenAI-compatible server with scripted
answers: a bad draft goes back with the validator's problems, the repaired one comes out;
the command line shows the graph and the YAML and saves only when asked."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conveyor.generate import GeneratorSettings, generate, yaml_text
from conveyor.nodes.base import NetworkPolicy
from conveyor.nodes.builtin import build_registry
from tests.integration.llmserver import LLMServer, Reply
from tests.integration.test_cli import CLI

BAD = """Here it is:
```yaml
name: greet
nodes:
  - id: hello
    type: transfrom
    config: {output: hi}
  - id: after
    type: transform
    needs: [nowhere]
    config: {output: "{{ nodes.hello.output }}"}
```"""

GOOD = """```yaml
name: greet
description: Say hello.
nodes:
  - id: hello
    type: transform
    config: {output: "hello {{ input.name }}"}
  - id: after
    type: transform
    needs: [hello]
    config: {output: "{{ nodes.hello.output }}!"}
```"""


def settings(server: LLMServer) -> GeneratorSettings:
    return GeneratorSettings(base_url=server.base_url, model="drafter", api_key="sk-gen")


LOCAL = NetworkPolicy(allow_private=True)


async def test_a_bad_draft_goes_back_with_its_problems_and_the_repair_comes_out(
    llm_server: LLMServer,
) -> None:
    llm_server.script(Reply(BAD), Reply(GOOD))
    registry = build_registry(entry_points=False)
    draft = await generate("Greet someone by name", registry, settings(llm_server), network=LOCAL)
    assert draft.valid and draft.attempts == 2
    assert draft.data is not None and draft.data["name"] == "greet"
    assert "hello {{ input.name }}" in draft.yaml
    first, repair = llm_server.requests
    system = first.messages[0]["content"]
    for name in ("transform", "http.request", "llm.chat", "switch"):
        assert f'"name": "{name}"' in system
    assert first.messages[1] == {"role": "user", "content": "Greet someone by name"}
    assert first.header("authorization") == "Bearer sk-gen"
    assert repair.messages[-2] == {"role": "assistant", "content": BAD}
    problems = repair.messages[-1]["content"]
    assert "transfrom" in problems and "nowhere" in problems


async def test_repairs_are_bounded_and_the_last_problems_are_returned(
    llm_server: LLMServer,
) -> None:
    llm_server.script(Reply(BAD), Reply("not: [yaml"), Reply(GOOD))
    registry = build_registry(entry_points=False)
    draft = await generate("x", registry, settings(llm_server), repairs=1, network=LOCAL)
    assert not draft.valid and draft.attempts == 2
    assert "not valid YAML" in str(draft.problems[0])
    assert len(llm_server.requests) == 2


def test_the_yaml_of_an_answer_is_its_first_fenced_block() -> None:
    assert yaml_text("a: 1") == "a: 1"
    assert yaml_text("text\n```yaml\na: 1\n```\nmore") == "a: 1"
    assert yaml_text("```\na: 1\n```") == "a: 1"


def run_cli(
    server: LLMServer, tmp_path: Path, *args: str, drop: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path / 'conveyor.db'}",
        "CONVEYOR_LLM_BASE_URL": server.base_url,
        "CONVEYOR_LLM_MODEL": "drafter",
        "CONVEYOR_LLM_API_KEY": "sk-gen",
        "CONVEYOR_ALLOW_PRIVATE_NETWORK": "true",
        "CONVEYOR_SECRET_KEY": "conveyor-tests-secret-key-0123456789abcdef",
        "COLUMNS": "120",
    }
    env.pop(drop, None)
    return subprocess.run(
        [*CLI, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env
    )


def test_the_cli_shows_the_graph_and_yaml_and_saves_only_when_asked(
    llm_server: LLMServer, tmp_path: Path
) -> None:
    assert run_cli(llm_server, tmp_path, "db", "upgrade").returncode == 0
    llm_server.script(Reply(BAD), Reply(GOOD))
    shown = run_cli(llm_server, tmp_path, "generate", "Greet someone", "--out", "greet.yaml")
    assert shown.returncode == 0, shown.stderr
    assert "hello" in shown.stdout and "transform" in shown.stdout
    assert "name: greet" in shown.stdout
    assert "saved" not in shown.stdout
    assert "name: greet" in (tmp_path / "greet.yaml").read_text()
    listed = run_cli(llm_server, tmp_path, "workflows", "list")
    assert "greet" not in listed.stdout

    llm_server.script(Reply(GOOD))
    saved = run_cli(llm_server, tmp_path, "generate", "Greet someone", "--save")
    assert saved.returncode == 0, saved.stderr
    assert "saved greet version 1" in saved.stdout
    assert "greet" in run_cli(llm_server, tmp_path, "workflows", "list").stdout


def test_the_cli_exits_2_when_the_draft_stays_invalid(
    llm_server: LLMServer, tmp_path: Path
) -> None:
    llm_server.script(Reply(BAD), Reply(BAD))
    failed = run_cli(llm_server, tmp_path, "generate", "Greet", "--repairs", "1", "--save")
    assert failed.returncode == 2
    assert "invalid definition" in failed.stderr and "transfrom" in failed.stderr
    assert "still invalid after 2 attempts; not saved" in failed.stderr
    assert len(llm_server.requests) == 2


def test_the_cli_exits_2_naming_the_settings_when_no_llm_is_configured(
    llm_server: LLMServer, tmp_path: Path
) -> None:
    failed = run_cli(llm_server, tmp_path, "generate", "Greet", drop="CONVEYOR_LLM_MODEL")
    assert failed.returncode == 2
    assert "CONVEYOR_LLM_BASE_URL and CONVEYOR_LLM_MODEL" in failed.stderr
    assert llm_server.requests == []
