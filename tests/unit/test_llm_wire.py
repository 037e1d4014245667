"""The chat wire formats as pure data: neutral messages as Anthropic's, and streamed events
folded into one answer (tool call arguments arriving in pieces)."""

from __future__ import annotations

import json

from conveyor.nodes import llm_wire as wire


def test_tool_results_of_one_turn_become_one_anthropic_user_message() -> None:
    calls = [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "calling", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "a", "content": "1"},
        {"role": "tool", "tool_call_id": "b", "content": {"ok": True}},
    ]
    assert wire.anthropic_messages(messages) == [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "a", "name": "f", "input": {"x": 1}},
                {"type": "tool_use", "id": "b", "name": "g", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "a", "content": "1"},
                {"type": "tool_result", "tool_use_id": "b", "content": '{"ok": true}'},
            ],
        },
    ]


def test_openai_tool_call_arguments_in_pieces_fold_into_one_call() -> None:
    fold = wire.OpenAIStream()
    head = {"index": 0, "id": "c1", "function": {"name": "lookup", "arguments": '{"id'}}
    tail = {"index": 0, "function": {"arguments": '": "A-7"}'}}
    for delta in ({"tool_calls": [head]}, {"tool_calls": [tail]}):
        fold.feed(json.dumps({"model": "m", "choices": [{"delta": delta}]}))
    assert not fold.finish().complete  # no finish reason, no [DONE]: cut
    fold.feed(json.dumps({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}))
    answer = fold.finish()
    assert answer.complete and answer.model == "m"
    assert answer.tool_calls == [{"id": "c1", "name": "lookup", "arguments": {"id": "A-7"}}]


def test_anthropic_input_json_in_pieces_folds_into_one_call() -> None:
    fold = wire.AnthropicStream()
    events = [
        {"type": "message_start", "message": {"model": "claude", "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "input_json_delta", "partial_json": '{"a": '}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "input_json_delta", "partial_json": "2}"}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
         "usage": {"output_tokens": 9}},
    ]  # fmt: skip
    texts = [fold.feed(json.dumps(e)) for e in events]
    assert texts == ["", "", "", "", ""]
    answer = fold.finish()
    assert answer.complete and answer.finish_reason == "tool_use"
    assert answer.tool_calls == [{"id": "t", "name": "f", "arguments": {"a": 2}}]
    assert (answer.input_tokens, answer.output_tokens) == (3, 9)


def test_a_json_schema_goes_to_openai_as_response_format_and_to_anthropic_as_instruction() -> None:
    schema = {"type": "object"}
    request = wire.ChatRequest(
        model="m", messages=[{"role": "user", "content": "hi"}], json_schema=schema, stream=False
    )
    assert wire.openai_body(request)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }
    anthropic = wire.anthropic_body(request)
    assert "response_format" not in anthropic
    assert json.dumps(schema) in anthropic["system"]
