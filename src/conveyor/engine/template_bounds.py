"""Bounds on what one template may build or spend: text and collections past ``MAX_SIZE``,
integers past ``MAX_INT_BITS``, loops past ``MAX_ITERATIONS`` per render. Templates render
in the worker's event loop, where no timeout can interrupt them, so the sandbox refuses the
work before doing it (``'a' * 10**9``, ``10 ** 10**9``, ``'%*d' % (10**9, 1)``, nested
loops over ``range(100000)``, a list doubled forty times) with a :class:`TooBig` error,
which rendering turns into a template error: the step fails, the worker lives on.

The size of a value is its deep weight: characters of text, plus one per item of every
collection, counting a collection as often as it is referenced (so ``[l, l]`` built forty
times over weighs 2**40, as its JSON would)."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

MAX_SIZE = 10_000_000  # characters of text, or items, in one value a template builds
MAX_ITEMS = 200_000  # items visited while weighing one value (the walk stays cheap)
MAX_INT_BITS = 100_000  # about 30,000 decimal digits
MAX_ITERATIONS = 1_000_000  # loop iterations in one render of one template
MAX_LIPSUM = 100  # paragraphs

_iterations: ContextVar[list[int] | None] = ContextVar("template_iterations", default=None)
# A printf conversion's width or precision: "%*d", "%100000000d", "%.5f".
_PRINTF = re.compile(r"%[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


class TooBig(ValueError):
    """A template asked for more than its bounds allow."""


def weight(value: Any, limit: int = MAX_SIZE) -> int:
    """Deep size of ``value``, stopping early once past ``limit`` (the result is then over
    it): text counts its characters, collections one per item plus their items. Past
    MAX_ITEMS items visited it stops too, as over (the walk itself must stay cheap)."""
    if isinstance(value, str):
        return len(value)
    total = 0
    visited = 0
    pending: list[Any] = [value]
    while pending:
        visited += 1
        if visited > MAX_ITEMS:
            return limit + 1
        item = pending.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, dict):
            total += len(item)
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item)
            pending.extend(item)
        else:
            total += 1
        if total > limit:
            return total
    return total


def check(value: Any, what: str = "a value") -> Any:
    """``value`` if it weighs at most MAX_SIZE; else TooBig."""
    if value is None or isinstance(value, int | float):
        return value
    if weight(value) > MAX_SIZE:
        raise TooBig(f"{what} would be over {MAX_SIZE:,} characters or items")
    return value


def _check_int(value: int) -> None:
    if value.bit_length() > MAX_INT_BITS:
        raise TooBig(f"an integer over {MAX_INT_BITS:,} bits")


def binop(operator: str, left: Any, right: Any) -> None:
    """Raise TooBig if ``left <operator> right`` would be over the bounds (checked first)."""
    if operator == "**":
        _power(left, right)
    elif operator == "*":
        _product(left, right)
    elif operator == "+" and not _numbers(left, right):
        if weight(left) + weight(right) > MAX_SIZE:
            raise TooBig(f"joining these would be over {MAX_SIZE:,} characters or items")
    elif operator == "%" and isinstance(left, str):
        printf(left, right)


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, int | float) for v in values)


def _power(base: Any, exponent: Any) -> None:
    numbers = isinstance(base, int) and isinstance(exponent, int)
    if numbers and exponent > 0 and exponent * (abs(base).bit_length() - 1) > MAX_INT_BITS:
        raise TooBig(f"an integer over {MAX_INT_BITS:,} bits")


def _product(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TooBig(f"an integer over {MAX_INT_BITS:,} bits")
        return
    times, sequence = (left, right) if isinstance(left, int) else (right, left)
    repeated = isinstance(times, int) and isinstance(sequence, str | list | tuple)
    if repeated and times > 0 and weight(sequence) * times > MAX_SIZE:
        raise TooBig(f"repeating this would be over {MAX_SIZE:,} characters or items")


def printf(template: str, args: Any) -> None:
    """``template % args``: no width or precision over MAX_SIZE, no huge argument."""
    values = args if isinstance(args, tuple) else (args,)
    for match in _PRINTF.finditer(template):
        for part in match.groups():
            if part and part != "*" and int(part) > MAX_SIZE:
                raise TooBig(f"a format width over {MAX_SIZE:,}")
    for value in values:
        if isinstance(value, int) and abs(value) > MAX_SIZE and "*" in template:
            raise TooBig(f"a format width over {MAX_SIZE:,}")
        check(value, "a formatted value")


def format_spec(template: str, args: Iterable[Any]) -> None:
    """``template.format(...)``: no field width over MAX_SIZE (``{:>1000000000}``)."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # str.format will refuse it itself
    for _text, _name, spec, _conversion in fields:
        if spec and any(int(n) > MAX_SIZE for n in re.findall(r"\d+", spec)):
            raise TooBig(f"a format width over {MAX_SIZE:,}")
    for value in args:
        check(value, "a formatted value")


_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})


def call(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Before a method call: the padding methods of text take no width over MAX_SIZE, and
    ``format`` no wide field."""
    owner = getattr(function, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(function, "__name__", "")
    if name in _WIDTH_METHODS:
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and value > MAX_SIZE:
                raise TooBig(f"a width over {MAX_SIZE:,}")
    elif name == "format":
        format_spec(owner, (*args, *kwargs.values()))
    elif name == "replace" and len(args) >= 2:
        replaced(owner, args[0], args[1])
    elif name == "join" and args:
        items = list(args[0]) if not isinstance(args[0], list | tuple) else args[0]
        if len(owner) * len(items) + weight(items) > MAX_SIZE:
            raise TooBig(f"joining these would be over {MAX_SIZE:,} characters")
    elif name == "format_map" and args:
        format_spec(owner, ())


def replaced(text: Any, old: Any, new: Any) -> None:
    """``text.replace(old, new)``: at most one ``new`` per character of ``text`` and one."""
    texts = isinstance(text, str) and isinstance(new, str)
    if texts and (len(text) + 1) * len(new) + len(text) > MAX_SIZE:
        raise TooBig(f"replacing would be over {MAX_SIZE:,} characters")


def bounded_replace(replace: Callable[..., Any]) -> Callable[..., Any]:
    """The ``replace`` filter, refusing a result over MAX_SIZE."""

    def guarded(eval_ctx: Any, text: Any, old: Any, new: Any, *rest: Any) -> Any:
        replaced(str(text), old, new)
        return replace(eval_ctx, text, old, new, *rest)

    guarded.jinja_pass_arg = replace.jinja_pass_arg  # type: ignore[attr-defined]
    return guarded


def bounded_join(join: Callable[..., Any]) -> Callable[..., Any]:
    """The ``join`` filter, refusing a result over MAX_SIZE."""

    def guarded(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        items = list(value) if not isinstance(value, list | tuple) else value
        if len(str(d)) * len(items) + weight(items) > MAX_SIZE:
            raise TooBig(f"joining these would be over {MAX_SIZE:,} characters")
        return join(eval_ctx, items, d, attribute)

    guarded.jinja_pass_arg = join.jinja_pass_arg  # type: ignore[attr-defined]
    return guarded


def bounded(function: Callable[..., Any], *, width_args: bool = False) -> Callable[..., Any]:
    """``function`` (a filter) refusing inputs over MAX_SIZE, and with ``width_args`` any
    integer argument over it."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            if width_args and isinstance(value, int) and value > MAX_SIZE:
                raise TooBig(f"a width over {MAX_SIZE:,}")
            if not isinstance(value, int | float | bool) and not callable(value):
                check(value)
        return function(*args, **kwargs)

    for attribute in ("jinja_pass_arg", "__name__", "__doc__"):
        if hasattr(function, attribute):
            setattr(guarded, attribute, getattr(function, attribute))
    return guarded


def join(parts: Iterable[Any]) -> str:
    """Text made of ``parts`` (a template's output, or ``~``), never over MAX_SIZE."""
    size = 0
    pieces: list[str] = []
    for part in parts:
        size += weight(part, MAX_SIZE - size) if not isinstance(part, str) else len(part)
        if size > MAX_SIZE:
            raise TooBig(f"the text would be over {MAX_SIZE:,} characters")
        pieces.append(part if isinstance(part, str) else str(part))
    return "".join(pieces)


def counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """``iterable`` with each item charged to the render's loop budget."""
    budget = _iterations.get()
    for item in iterable:
        if budget is not None:
            budget[0] -= 1
            if budget[0] < 0:
                raise TooBig(f"loops over {MAX_ITERATIONS:,} iterations in one template")
        yield item


def budgeted(render: Callable[[], Any]) -> Any:
    """Run ``render`` with a fresh loop budget."""
    token = _iterations.set([MAX_ITERATIONS])
    try:
        return render()
    finally:
        _iterations.reset(token)


def lipsum(lipsum_function: Callable[..., Any]) -> Callable[..., Any]:
    def bounded_lipsum(n: int = 5, *args: Any, **kwargs: Any) -> Any:
        if n > MAX_LIPSUM:
            raise TooBig(f"lipsum over {MAX_LIPSUM} paragraphs")
        return lipsum_function(n, *args, **kwargs)

    return bounded_lipsum
