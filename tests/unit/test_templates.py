"""Unit tests for template rendering in the sandbox and for node reference extraction."""

from __future__ import annotations

import time
from typing import Any

import pytest

from conveyor.engine.templates import (
    TemplateProblem,
    contains_template,
    is_template,
    node_references,
    render,
)

CONTEXT: dict[str, Any] = {
    "input": {"name": "Ada", "tags": ["x", "y"], "count": 3},
    "nodes": {"fetch": {"output": {"items": [1, 2], "status": 200}}},
    "x": {"items": [1], "a": 1},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ input.tags }}", ["x", "y"]),
        ("{{ input.count }}", 3),
        ("{{ input.count > 2 }}", True),
        ("{{ input }}", CONTEXT["input"]),
        ("  {{ input.count + 1 }}  ", 4),
        ("{{ nodes.fetch.output.status }}", 200),
        ("{{ nodes['fetch']['output']['items'] }}", [1, 2]),
        ("{{ none }}", None),
    ],
)
def test_a_single_expression_renders_to_its_native_value(template: str, expected: Any) -> None:
    assert render(template, CONTEXT) == expected


def test_a_list_stays_a_list() -> None:
    result = render("{{ input.tags }}", CONTEXT)
    assert isinstance(result, list)
    assert result == ["x", "y"]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hello {{ input.name }}!", "Hello Ada!"),
        ("{{ input.name }} has {{ input.count }}", "Ada has 3"),
        ("{{ input.count }}{{ input.count }}", "33"),
        ("{% for t in input.tags %}{{ t }},{% endfor %}", "x,y,"),
        ("n={{ input.tags }}", "n=['x', 'y']"),
        ("{# comment #}kept", "kept"),
    ],
)
def test_other_templates_render_to_strings(template: str, expected: str) -> None:
    assert render(template, CONTEXT) == expected


@pytest.mark.parametrize("value", ["plain text", "", "a { b } c", 5, None, True, 2.5])
def test_values_without_templates_are_returned_unchanged(value: Any) -> None:
    assert render(value, CONTEXT) == value


def test_renders_recursively_inside_dicts_and_lists() -> None:
    value = {"a": ["{{ input.count }}", "x"], "b": {"c": "hi {{ input.name }}"}, "d": 1}
    assert render(value, CONTEXT) == {"a": [3, "x"], "b": {"c": "hi Ada"}, "d": 1}


def test_dict_keys_beat_dict_methods() -> None:
    assert render("{{ x.items }}", CONTEXT) == [1]
    assert render("{{ nodes.fetch.output.items }}", CONTEXT) == [1, 2]


def test_dict_methods_still_work_when_no_key_shadows_them() -> None:
    assert render("{{ input.keys() | list }}", CONTEXT) == ["name", "tags", "count"]


def test_rendered_data_is_never_rendered_again() -> None:
    context = {"x": "{{ 7*7 }}", "y": {"z": "{% if true %}yes{% endif %}"}}
    assert render("{{ x }}", context) == "{{ 7*7 }}"
    assert render("value: {{ x }}", context) == "value: {{ 7*7 }}"
    assert render("{{ y }}", context) == {"z": "{% if true %}yes{% endif %}"}


@pytest.mark.parametrize(
    ("value", "path", "expected_path"),
    [
        ("{{ missing }}", "config.url", "config.url"),
        ("Hi {{ missing }}", "config.url", "config.url"),
        ("{{ input.missing }}", "", ""),
        ({"a": {"b": "{{ missing }}"}}, "config", "config.a.b"),
        ({"a": ["ok", "{{ missing }}"]}, "config", "config.a[1]"),
        ({"a": "{{ missing }}"}, "", "a"),
    ],
)
def test_undefined_names_are_template_problems_located_by_path(
    value: Any, path: str, expected_path: str
) -> None:
    with pytest.raises(TemplateProblem, match=r"undefined|has no attribute") as info:
        render(value, CONTEXT, path)
    assert info.value.path == expected_path


def test_undefined_node_output_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(TemplateProblem, match="'fetch'"):
        render("{{ nodes.fetch.output }}", {"nodes": {}}, "config.x")


@pytest.mark.parametrize(
    "template",
    [
        "{{ 1 / 0 }}",
        "{{ input.tags[5] }}",
        "{{ input.name + 1 }}",
        "{{ 1 +  }}",
        "{% if %}",
    ],
)
def test_runtime_and_syntax_errors_become_template_problems(template: str) -> None:
    with pytest.raises(TemplateProblem) as info:
        render(template, CONTEXT, "config.v")
    assert info.value.path == "config.v"
    assert info.value.message.startswith("template error")
    assert str(info.value).startswith("config.v: template error")


ESCAPES = [
    "''.__class__.__mro__[1].__subclasses__()",
    "''.__class__",
    "cycler.__init__.__globals__",
    "joiner.__init__.__globals__",
    "namespace.__init__",
    "self.__init__.__globals__",
    "lipsum.__globals__",
    "lipsum.__globals__['os']",
    "nodes.__class__",
    "x.__class__.__base__",
    "x['__class__']",
    "x | attr('__class__')",
    "range.__self__",
    "[].append(1)",
    "x.update({'b': 2})",
    "x.pop('a')",
    "input.tags.clear()",
    "'{0.__class__}'.format(x)",
    "'{0.__class__.__init__.__globals__}'.format(x)",
    "'{a.__class__}'.format_map({'a': x})",
    "'%s' % x.__class__",
    "config",
    "request",
    "self._TemplateReference__context",
    "x|attr('__class__')|attr('__mro__')",
    "'{0.__init__.__globals__}'.format(cycler)",
    "namespace.__init__.__globals__",
]


@pytest.mark.parametrize("expression", ESCAPES)
@pytest.mark.parametrize("form", ["{{ %s }}", "before {{ %s }} after"])
def test_sandbox_escapes_fail_with_a_template_problem(expression: str, form: str) -> None:
    context = {**CONTEXT, "input": {**CONTEXT["input"], "tags": ["x", "y"]}}
    with pytest.raises(TemplateProblem) as info:
        render(form % expression, context, "config.x")
    assert info.value.path == "config.x"
    assert context["input"]["tags"] == ["x", "y"]


def test_the_immutable_sandbox_leaves_context_data_untouched() -> None:
    data = {"a": 1}
    with pytest.raises(TemplateProblem, match="unsafe"):
        render("{{ x.update({'b': 2}) }}", {"x": data})
    assert data == {"a": 1}


def test_a_dict_key_named_like_a_dunder_is_plain_data() -> None:
    assert render("{{ x.__class__ }}", {"x": {"__class__": "just data"}}) == "just data"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ a }}", True),
        ("{% if a %}{% endif %}", True),
        ("{# c #}", True),
        ("{ a }", False),
        ("no template", False),
    ],
)
def test_is_template(value: str, expected: bool) -> None:
    assert is_template(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ a }}", True),
        ({"a": [1, {"b": "x {{ y }}"}]}, True),
        (["a", "{% if x %}{% endif %}"], True),
        ({"a": [1, {"b": "x"}]}, False),
        ({"{{ key }}": "value"}, False),
        (5, False),
        (None, False),
    ],
)
def test_contains_template(value: Any, expected: bool) -> None:
    assert contains_template(value) is expected


def test_node_references_with_attribute_and_item_syntax() -> None:
    config = {
        "url": "https://x/{{ nodes.login.output.token }}",
        "body": {"ids": ["{{ nodes['search'].output.ids }}", "plain"]},
        "other": "{{ input.x }} {{ vars.nodes }}",
    }
    assert node_references(config, "config") == [
        ("config.url", "login"),
        ("config.body.ids[0]", "search"),
    ]


def test_node_references_in_control_structures() -> None:
    template = "{% for i in nodes.a.output %}{{ i }}{% endfor %}{% if nodes.b %}{% endif %}"
    assert node_references(template, "config.t") == [("config.t", "a"), ("config.t", "b")]


def test_node_references_ignore_dynamic_item_lookups_and_plain_text() -> None:
    assert node_references("{{ nodes[input.which] }}", "p") == []
    assert node_references("nodes.a is mentioned only in text", "p") == []


def test_node_references_reports_syntax_errors_with_the_path() -> None:
    with pytest.raises(TemplateProblem, match="template syntax error") as info:
        node_references({"a": ["ok", "{{ nodes.a "]}, "config")
    assert info.value.path == "config.a[1]"


# Work no event loop could interrupt: refused before it is done, as a template error.
EXHAUSTION = [
    "{{ range(10**9) | list | length }}",
    "{{ ('a' * 10**9) | length }}",
    "{{ (['a'] * 10**9) | length }}",
    "{{ ('a' * 10**4) * 10**4 }}",
    "{{ 10 ** (10 ** 10) }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ 'a' | center(10**9) }}",
    "{{ 'a' | indent(10**9, true) }}",
    "{{ '{:>1000000000}'.format(1) }}",
    "{{ '{a:>1000000000}'.format_map({'a': 1}) }}",
    "{{ '%*d' % (10**9, 1) }}",
    "{{ '%1000000000d' % 1 }}",
    "{{ '%s' | format('a' * 10**9) }}",
    "{{ lipsum(10**6) }}",
    "{{ ('a' * 10**6) | replace('', 'b' * 10**6) }}",
    "{{ ('a' * 10**6).replace('', 'b' * 10**6) }}",
    "{{ (['a'] * 10**6) | join('b' * 10**6) }}",
    "{{ ('b' * 10**6).join(['a'] * 10**6) }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s=[1]) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s=[1]) %}{% for i in range(64) %}{% set ns.s = [ns.s, ns.s] %}"
    "{% endfor %}{{ ns.s }}",
    "{% set ns = namespace(s=[1]) %}{% for i in range(64) %}{% set ns.s = [ns.s, ns.s] %}"
    "{% endfor %}{{ ns.s | tojson | length }}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(64) }}",
    "{{ [x, x, x, x, x, x, x, x, x, x, x, x] }}",
]


@pytest.mark.parametrize("template", EXHAUSTION)
def test_resource_exhaustion_fails_as_a_template_problem_quickly(template: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateProblem) as info:
        render(template, {"x": "a" * 1_000_000}, "config.x")
    assert info.value.path == "config.x"
    elapsed = time.monotonic() - started
    print(f"{elapsed:.3f}s {template[:60]}")
    assert elapsed < 20  # seconds, on a loaded machine; each takes well under one alone


def test_ordinary_templates_stay_within_the_bounds() -> None:
    context = {"input": {"items": list(range(1000)), "name": "Ann"}}
    loop = "{% for i in input.items %}{% for j in range(100) %}{% endfor %}{{ i }}{% endfor %}"
    assert render(loop, context).endswith("999")
    assert render("{{ 'ab' * 1000 }}", context) == "ab" * 1000
    assert render("{{ 2 ** 64 }}", context) == 2**64
    assert render("{{ '{:>10}'.format(input.name) }}", context) == "       Ann"
    assert render("{{ '%05d' % 42 }}", context) == "00042"
    assert render("{{ input.items | join(',') | length }}", context) == 3889
    assert render("{{ [input.name, input.name] }}", context) == ["Ann", "Ann"]
