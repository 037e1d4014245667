"""Templates in node configs, rendered with Jinja2's sandbox; compiled once per string.

A string that is exactly one ``{{ expression }}`` renders to the expression's native value
(a list stays a list); any other string containing template syntax renders to a string.
Rendered data is never rendered again, so a value that looks like a template stays text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, cast

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from conveyor.engine import template_bounds as bounds

# Filters that turn a whole value into text, or pad it: their input and widths are bounded.
_TEXT_FILTERS = ("string", "tojson", "pprint", "format", "list")
_WIDTH_FILTERS = ("center", "indent", "truncate", "wordwrap")
_COUNTED = "conveyor_counted"


class _BoundedCode(CodeGenerator):
    """``a ~ b`` joins through the environment's bounded ``concat`` (template_bounds)."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _DataEnvironment(ImmutableSandboxedEnvironment):
    """Keys win over methods: ``output.items`` is the key ``items``, not ``dict.items``.
    Operators, method calls, filters, loops and output are bounded (template_bounds), and
    macros are refused (recursion no loop budget would see)."""

    code_generator_class = _BoundedCode
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    concat = staticmethod(bounds.join)

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, finalize=bounds.check)
        for name in _TEXT_FILTERS:
            self.filters[name] = bounds.bounded(self.filters[name])
        for name in _WIDTH_FILTERS:
            self.filters[name] = bounds.bounded(self.filters[name], width_args=True)
        self.filters[_COUNTED] = bounds.counted
        self.filters["replace"] = bounds.bounded_replace(self.filters["replace"])
        self.filters["join"] = bounds.bounded_join(self.filters["join"])
        self.globals["lipsum"] = bounds.lipsum(cast(Callable[..., Any], self.globals["lipsum"]))

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        bounds.binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        bounds.call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map``, as the sandbox wraps them, with no wide field."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            if value.__name__ == "format_map" and args and isinstance(args[0], dict):
                bounds.format_spec(template, args[0].values())
            bounds.format_spec(template, (*args, *kwargs.values()))
            return wrapped(*args, **kwargs)

        return checked

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        for found in source.find_all((nodes.Macro, nodes.CallBlock)):
            raise TemplateSyntaxError("macros are not available in templates", found.lineno)
        for loop in source.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _COUNTED, [], [], None, None, lineno=loop.lineno)
        return super()._generate(source, *args, **kwargs)


_ENV = _DataEnvironment()
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

    def evaluate(self, expression: Template, builds: bool = True) -> Any:
        if self.jinja is None:
            self.jinja = expression.new_context(dict(self.variables))
        context = self.jinja
        for _ in expression.root_render_func(context):
            pass
        result = context.vars.pop("result")
        context.exported_vars.discard("result")
        if isinstance(result, Undefined):
            result._fail_with_undefined_error()
        if builds and isinstance(result, list | tuple | dict):
            bounds.check(result, "the value")  # [x, x, ...] of big data: its JSON would be too
        return result


# A compiled template holds about 4.5 kB: 1024 of them bound a long-running worker's cache
# to under 5 MB (4096 allowed 18 MB), still far more than the templates of the workflows
# it runs at one time.
@lru_cache(maxsize=1024)
def _compile(value: str) -> Callable[[TemplateContext], Any]:
    expression = _single_expression(value)
    if expression is not None:
        # compile_expression's own template: it sets ``result`` to the expression's value.
        template = _ENV.compile_expression(expression, undefined_to_none=False)._template
        builds = _builds(expression)
        return lambda context: context.evaluate(template, builds)
    template = _ENV.from_string(value)
    return lambda context: bounds.budgeted(lambda: template.render(**context.variables))


def _builds(expression: str) -> bool:
    """Whether an expression may make a new collection (a literal, an operator, a call)
    rather than only look data up: only such results are weighed (template_bounds)."""
    tree = _ENV.parse("{{ " + expression + " }}")
    kinds = (nodes.List, nodes.Tuple, nodes.Dict, nodes.BinExpr, nodes.Filter, nodes.Call)
    return any(True for _ in tree.find_all(kinds))


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
        except (RecursionError, MemoryError) as exc:
            raise TemplateProblem(path, f"template error: {type(exc).__name__}") from None
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
