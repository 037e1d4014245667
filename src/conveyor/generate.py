"""Drafting a workflow definition from a description: the configured LLM writes it from the
registered node types' schemas, the validator checks it, and its problems go back to the
model for a bounded number of repairs. Nothing is saved here: the caller decides."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import yaml

from conveyor.engine.definition import definition_schema, load_yaml, to_yaml
from conveyor.engine.validation import check
from conveyor.errors import InputError, Problem
from conveyor.nodes import llm_wire as wire
from conveyor.nodes.base import NetworkPolicy
from conveyor.nodes.catalog import catalog
from conveyor.nodes.llm_client import Endpoint, complete
from conveyor.nodes.registry import Registry
from conveyor.settings import Settings

NOT_CONFIGURED = (
    "no LLM is configured to draft workflows: set CONVEYOR_LLM_BASE_URL and "
    "CONVEYOR_LLM_MODEL (and CONVEYOR_LLM_API_KEY) where Conveyor runs"
)
EXAMPLE = """\
name: ticket-router
description: Route a support ticket to a team and tell the team.
nodes:
  - id: category
    type: switch
    config:
      value: "{{ input.ticket.category | lower }}"
      cases: {billing: billing, bug: bug}
  - id: billing_team
    type: transform
    needs: category.billing
    config: {output: {team: billing}}
  - id: engineering
    type: transform
    needs: category.bug
    config: {output: {team: engineering}}
  - id: tell
    type: notify
    needs: [billing_team, engineering]
    config:
      channel: support
      message: "Ticket {{ input.ticket.id }} needs a look"
"""


@dataclass(frozen=True)
class GeneratorSettings:
    """Where drafts come from (CONVEYOR_LLM_BASE_URL, CONVEYOR_LLM_API_KEY,
    CONVEYOR_LLM_MODEL, CONVEYOR_LLM_PROVIDER)."""

    base_url: str
    model: str
    api_key: str = ""
    provider: wire.Provider = "openai"
    timeout: timedelta = timedelta(seconds=120)

    @classmethod
    def of(cls, settings: Settings) -> GeneratorSettings | None:
        """The LLM that ``settings`` name (None: no base URL or model is set)."""
        if not settings.llm_base_url or not settings.llm_model:
            return None
        return cls(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key,
            provider=settings.llm_provider,
        )


@dataclass
class Draft:
    """The last draft: its data (None when it was not YAML), its text, what is still wrong
    with it (empty: valid), and how many times the model was asked."""

    data: dict[str, Any] | None
    yaml: str
    problems: list[Problem]
    attempts: int
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.problems and self.data is not None


async def generate(
    description: str,
    registry: Registry,
    settings: GeneratorSettings,
    *,
    repairs: int = 2,
    network: NetworkPolicy | None = None,
) -> Draft:
    """A draft for ``description``: asked once, then repaired at most ``repairs`` times."""
    if not description.strip():
        raise InputError("describe the workflow to generate")
    endpoint = Endpoint(settings.provider, settings.base_url, settings.api_key)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system_prompt(registry)},
        {"role": "user", "content": description.strip()},
    ]
    usage = {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0}
    key = f"generate:{uuid.uuid4().hex}"
    draft = Draft(None, "", [], 0, usage)
    for attempt in range(1, repairs + 2):
        request = wire.ChatRequest(model=settings.model, messages=list(messages), stream=False)
        answer = await complete(
            endpoint,
            request,
            network=network or NetworkPolicy(),
            patience=settings.timeout,
            idempotency_key=f"{key}:{attempt}",
        )
        for name, value in answer.usage.items():
            usage[name] += value
        draft = checked(answer.text, registry, attempt, usage)
        if draft.valid:
            return draft
        messages += [
            {"role": "assistant", "content": answer.text},
            {"role": "user", "content": repair_prompt(draft.problems)},
        ]
    return draft


def checked(text: str, registry: Registry, attempt: int, usage: dict[str, int]) -> Draft:
    """The model's answer as a draft, with the validator's problems."""
    body = yaml_text(text)
    try:
        data = load_yaml(body)
    except yaml.YAMLError as exc:
        return Draft(None, body, [Problem(f"the answer is not valid YAML: {exc}")], attempt, usage)
    if not isinstance(data, dict):
        return Draft(None, body, [Problem("the YAML must be a mapping")], attempt, usage)
    _, problems = check(data, registry)
    return Draft(data, to_yaml(data), problems, attempt, usage)


def yaml_text(text: str) -> str:
    """The YAML in an answer: the first fenced block if there is one, else all of it."""
    if "```" not in text:
        return text.strip()
    block = text.split("```", 2)[1]
    first, _, rest = block.partition("\n")
    return (rest if first.strip().lower() in ("yaml", "yml", "") else block).strip()


def system_prompt(registry: Registry) -> str:
    types = [
        {k: t[k] for k in ("name", "description", "config_schema", "branches", "branches_from")}
        for t in catalog(registry)
    ]
    return (
        "You write Conveyor workflow definitions in YAML. A definition has a unique `name`, "
        "a `description`, and `nodes`: each node has an `id`, a `type` (one of the node "
        "types below), a `config` valid against that type's config schema, and `needs` "
        "(the ids it runs after; `id.branch` to follow one branch of a condition or "
        "switch). Strings in configs may use templates: {{ input.x }} for the execution's "
        "input, {{ nodes.<id>.output }} for an earlier node's output. Answer with the "
        "complete definition in one ```yaml block and nothing else.\n\n"
        f"Definition JSON Schema:\n{json.dumps(definition_schema())}\n\n"
        f"Node types:\n{json.dumps(types)}\n\n"
        f"An example:\n```yaml\n{EXAMPLE}```"
    )


def repair_prompt(problems: list[Problem]) -> str:
    listed = "\n".join(f"- {p}" for p in problems)
    return (
        f"The definition has these problems:\n{listed}\n"
        "Answer with the complete corrected definition in one ```yaml block."
    )
