"""Templates in node configs, rendered with Jinja2's sandbox; compiled once per string.

A string that is exactly one ``{{ expression }}`` renders to the expression's native value
(a list stays a list); any other string containing template syntax renders to a string.
Rendered data is never rendered again, so a value that looks like a template stays text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, Undefined, nodes
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment


class _DataEnvironment(ImmutableSandboxedEnvironment):
    """Keys win over methods: ``output.items`` is the key ``items``, not ``dict.items``."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


_ENV = _DataEnvironment(undefined=StrictUndefined, autoescape=False)
_SINGLE_MARKERS = ("{{", "{%", "{#")


class TemplateProblem(Exception):
    """A template that does not compile or render; ``path`` locates it in the config."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def is_template(value: str) -> bool:
    return any(marker in value for marker in _SINGLE_MARKERS)


def _single_expression(value: str) -> str | None:
    stripped = value.strip()
    if stripped.startswith("{{") and stripped.endswith("}}"):
        inner = stripped[2:-2]
        if "{{" not in inner and "}}" not in inner:
            return inner.strip()
    return None


class TemplateContext:
    """The variables templates see, and one Jinja context for them, made on first use and
    shared by every single-expression template rendered with it (making Jinja contexts is
    most of a render's cost). Reusable while the variables' objects stay the same; values
    changed inside them (a new node output) are seen."""

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self.variables = variables
        self.jinja: Context | None = None

    def evaluate(self, expression: Template) -> Any:
        if self.jinja is None:
            self.jinja = expression.new_context(dict(self.variables))
        context = self.jinja
        for _ in expression.root_render_func(context):
            pass
        result = context.vars.pop("result")
        context.exported_vars.discard("result")
        if isinstance(result, Undefined):
            result._fail_with_undefined_error()
        return result


@lru_cache(maxsize=4096)
def _compile(value: str) -> Callable[[TemplateContext], Any]:
    expression = _single_expression(value)
    if expression is not None:
        # compile_expression's own template: it sets ``result`` to the expression's value.
        template = _ENV.compile_expression(expression, undefined_to_none=False)._template
        return lambda context: context.evaluate(template)
    template = _ENV.from_string(value)
    return lambda context: template.render(**context.variables)


def render(value: Any, context: Mapping[str, Any] | TemplateContext, path: str = "") -> Any:
    """Render every template inside ``value`` (dicts and lists recursively)."""
    if not isinstance(context, TemplateContext):
        context = TemplateContext(context)
    return _render(value, context, path)


def _render(value: Any, context: TemplateContext, path: str) -> Any:
    if isinstance(value, str):
        if not is_template(value):
            return value
        try:
            return _compile(value)(context)
        except TemplateError as exc:
            raise TemplateProblem(path, f"template error: {exc.message or exc}") from None
        except (TypeError, ValueError, ArithmeticError, KeyError, IndexError) as exc:
            raise TemplateProblem(path, f"template error: {exc}") from None
    if isinstance(value, dict):
        return {k: _render(v, context, _join(path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, context, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def node_references(value: Any, path: str = "") -> list[tuple[str, str]]:
    """``(path, node id)`` for every ``nodes.<id>`` a template in ``value`` mentions.

    Raises TemplateProblem for a template that does not compile.
    """
    found: list[tuple[str, str]] = []
    if isinstance(value, str) and is_template(value):
        try:
            tree = _ENV.parse(value)
        except TemplateError as exc:
            raise TemplateProblem(path, f"template syntax error: {exc.message or exc}") from None
        for attr in tree.find_all(nodes.Getattr):
            if isinstance(attr.node, nodes.Name) and attr.node.name == "nodes":
                found.append((path, attr.attr))
        for item in tree.find_all(nodes.Getitem):
            if (
                isinstance(item.node, nodes.Name)
                and item.node.name == "nodes"
                and isinstance(item.arg, nodes.Const)
                and isinstance(item.arg.value, str)
            ):
                found.append((path, item.arg.value))
    elif isinstance(value, dict):
        for k, v in value.items():
            found += node_references(v, _join(path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += node_references(v, f"{path}[{i}]")
    return found


def reads_variables(value: str) -> bool:
    """Whether ``value`` is a template that reads data (``{{ input.x }}``), as opposed to text
    that merely contains braces (a PostgreSQL array literal ``'{{1,2},{3,4}}'``)."""
    if not is_template(value):
        return False
    try:
        tree = _ENV.parse(value)
    except TemplateError:
        return False
    return any(True for _ in tree.find_all(nodes.Name))


def mentions_name(value: Any, name: str) -> bool:
    """Whether a template inside ``value`` reads the variable ``name`` (``secrets``)."""
    if isinstance(value, str):
        if not is_template(value) or name not in value:
            return False
        try:
            tree = _ENV.parse(value)
        except TemplateError:
            return False
        return any(n.name == name for n in tree.find_all(nodes.Name))
    if isinstance(value, dict):
        return any(mentions_name(v, name) for v in value.values())
    if isinstance(value, list):
        return any(mentions_name(v, name) for v in value)
    return False


def contains_template(value: Any) -> bool:
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, dict):
        return any(contains_template(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_template(v) for v in value)
    return False
