"""What keeps one template render small and short: size estimates and checks for every
way a template can build a big value, and the per-render deadline.

Output is capped at MAX_OUTPUT characters, but a cap on output alone comes too late: a
template can build a 200 MB string in one step (`center(200000000)`, `'%0100000000d' % 1`,
`'{:>100000000}'.format(1)`, doubling through `~` or `namespace`) and then loop 1e8 times
without writing a character. So each step that can make a value larger than its inputs
is checked *before* it runs, and loops, calls and outputs check a deadline.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, MappingView, Sized
from contextvars import ContextVar
from typing import Any, cast

from jinja2.exceptions import SecurityError

from engine.errors import TemplateError

MAX_OUTPUT = 100_000  # characters: one render's output, and any value it builds
MAX_POWER_BITS = 4096  # `**` and `*` results past this many bits are refused
DEFAULT_RENDER_BUDGET_MS = 100.0  # the render_budget_ms setting's default
MAX_SUMMED_SEQUENCES = 1000  # `sum(start=[])` concatenates; past this it is quadratic

Clock = Callable[[], float]


class RenderTimeout(TemplateError):
    """A render went past its deadline (render_budget_ms)."""


class _Deadline:
    def __init__(self, budget_ms: float, clock: Clock) -> None:
        self.budget_ms = budget_ms
        self.clock = clock
        self.at = clock() + budget_ms / 1000

    def check(self) -> None:
        if self.clock() >= self.at:
            raise RenderTimeout(
                f"rendering took longer than {self.budget_ms:g} ms (render_budget_ms)"
            )


_current: ContextVar[_Deadline | None] = ContextVar("omi_rules_render_deadline", default=None)


def start_deadline(budget_ms: float | None, clock: Clock = time.monotonic) -> Any:
    """Set the deadline of the render starting now; returns the token to reset it with."""
    return _current.set(None if budget_ms is None else _Deadline(budget_ms, clock))


def end_deadline(token: Any) -> None:
    _current.reset(token)


def tick() -> None:
    """Raise RenderTimeout when the current render is past its deadline."""
    deadline = _current.get()
    if deadline is not None:
        deadline.check()


def estimated_size(value: Any, limit: int = MAX_OUTPUT) -> int:
    """About how many characters `str(value)` has, counted without building it; stops
    counting once past `limit` (so a list nested into itself many times costs little)."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes | bytearray):
            total += len(item)
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, float):
            total += 24
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset | MappingView):
            total += 2 + 2 * len(item)
            if total <= limit:
                stack.extend(cast(Iterable[Any], item))
        else:
            total += 32
        if total > limit:
            return total
    return total


def refuse_over(size: int, what: str) -> None:
    if size > MAX_OUTPUT:
        raise SecurityError(f"{what} longer than {MAX_OUTPUT} characters")


def _number_too_big(digits: str | None) -> bool:
    return digits is not None and (len(digits) > 7 or int(digits) > MAX_OUTPUT)


# %-formatting: %[(name)][flags][width][.precision][length]type
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def check_percent(fmt: str, values: Any) -> None:
    """Refuse `fmt % values` when a width or precision, or the result, is too big."""
    for width, precision in _PERCENT_SPEC.findall(fmt):
        if "*" in (width, precision):
            raise SecurityError("'*' width or precision in % formatting is not allowed")
        if _number_too_big(width or None) or _number_too_big(precision or None):
            raise SecurityError(f"format width or precision over {MAX_OUTPUT}")
    refuse_over(len(fmt) + estimated_size(values), "formatted text")


# str.format spec: [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_FORMAT_SPEC = re.compile(r"^(?:.?[<>=^])?[+\- ]?z?#?0?(\d*)[,_]?(?:\.(\d+))?[a-zA-Z%]?$", re.S)


def check_format_spec(spec: str) -> None:
    found = _FORMAT_SPEC.match(spec)
    if found and (_number_too_big(found.group(1) or None) or _number_too_big(found.group(2))):
        raise SecurityError(f"format width or precision over {MAX_OUTPUT}")


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse `left <operator> right` when the result would be too big to build."""
    if operator == "*":
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, str | list | tuple) and isinstance(times, int):
                if estimated_size(sequence) * times > MAX_OUTPUT:
                    raise SecurityError(f"repetition longer than {MAX_OUTPUT} items")
        if _is_int(left) and _is_int(right):
            if left.bit_length() + right.bit_length() > MAX_POWER_BITS:
                raise SecurityError(f"product larger than {MAX_POWER_BITS} bits")
    elif operator == "**":
        if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            if right * abs(left).bit_length() > MAX_POWER_BITS:
                raise SecurityError(f"power larger than {MAX_POWER_BITS} bits")
    elif operator == "+":
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            refuse_over(estimated_size(left) + estimated_size(right), "concatenation")
    elif operator == "%" and isinstance(left, str):
        check_percent(left, right)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _width(value: Any) -> int:
    return value if _is_int(value) else 0


def _replaced_size(text: Any, old: Any, new: Any, count: Any = -1) -> int:
    text, old, new = str(text), str(old), str(new)
    hits = len(text) + 1 if old == "" else text.count(old)
    if _is_int(count) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, len(new) - len(old))


# str methods that can return more than they are given: size of the result
STR_METHOD_SIZES: dict[str, Callable[..., int]] = {
    "center": lambda s, width, *a: max(len(s), _width(width)),
    "ljust": lambda s, width, *a: max(len(s), _width(width)),
    "rjust": lambda s, width, *a: max(len(s), _width(width)),
    "zfill": lambda s, width, *a: max(len(s), _width(width)),
    "expandtabs": lambda s, tabsize=8: len(s) + s.count("\t") * _width(tabsize),
    "replace": lambda s, old, new, count=-1: _replaced_size(s, old, new, count),
    "join": lambda s, items: estimated_size(items) + len(s) * len(items),
}


def check_str_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a call of a str method whose result is too big; returns the args to call with
    (an iterator given to `join` is read once, here)."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if not isinstance(owner, str) or name not in STR_METHOD_SIZES:
        return args
    if name == "join" and args and not isinstance(args[0], Sized):
        args = (list(args[0]), *args[1:])
    try:
        size = STR_METHOD_SIZES[name](owner, *args, **kwargs)
    except TypeError:
        return args  # wrong arguments: let the call itself say so
    refuse_over(size, f"result of str.{name}")
    return args


def _filter_sizes() -> dict[str, Callable[..., int]]:
    def join(value: Any, d: Any = "", attribute: Any = None) -> int:
        return estimated_size(value) + len(str(d)) * len(value)

    def indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> int:
        lines = str(s).count("\n") + 1
        return len(str(s)) + lines * (len(width) if isinstance(width, str) else _width(width))

    def wordwrap(s: Any, width: Any = 79, b: Any = True, wrapstring: Any = None, *a: Any) -> int:
        text = str(s)
        breaks = len(text) // max(_width(width), 1) + text.count(" ") + 1
        return len(text) + breaks * len(str(wrapstring or "\n"))

    def format_(value: Any, *args: Any, **kwargs: Any) -> int:
        check_percent(str(value), kwargs or args)
        return 0

    def summed(iterable: Any, attribute: Any = None, start: Any = 0) -> int:
        if isinstance(start, int | float):
            return 0
        if len(iterable) > MAX_SUMMED_SEQUENCES:
            raise SecurityError(f"sum of more than {MAX_SUMMED_SEQUENCES} sequences")
        return estimated_size(iterable) + estimated_size(start)

    def count_of(value: Any, count: Any, fill_with: Any = None) -> int:
        return _width(count)

    def whole(value: Any, *args: Any, **kwargs: Any) -> int:
        return estimated_size(value)

    def bullets(items: Any, key: Any = None, marker: Any = "-") -> int:
        items = list(items or [])
        return estimated_size(items) + len(items) * (len(str(marker)) + 2)

    return {
        "center": lambda value, width=80: max(len(str(value)), _width(width)),
        "indent": indent,
        "join": join,
        "replace": lambda s, old, new, count=None: _replaced_size(s, old, new, count),
        "wordwrap": wordwrap,
        "format": format_,
        "sum": summed,
        "batch": count_of,
        "slice": count_of,
        "string": whole,
        "tojson": whole,
        "pprint": whole,
        "transcript": whole,
        "bullets": bullets,
    }


FILTER_SIZES = _filter_sizes()
READ_ONCE = frozenset({"join", "sum"})  # filters whose iterator argument is read first


def bounded_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """`original` with its result size checked before it runs."""
    estimate = FILTER_SIZES[name]
    pass_arg = getattr(original, "jinja_pass_arg", None)
    skip = 1 if pass_arg is not None else 0

    def checked(*args: Any, **kwargs: Any) -> Any:
        tick()
        head, rest = args[:skip], args[skip:]
        if name in READ_ONCE and rest and not isinstance(rest[0], Sized):
            rest = (list(rest[0]), *rest[1:])
        try:
            size = estimate(*rest, **kwargs)
        except TypeError:
            size = 0  # wrong arguments: let the filter itself say so
        refuse_over(size, f"result of the {name} filter")
        return original(*head, *rest, **kwargs)

    checked.__name__ = getattr(original, "__name__", name)
    checked.__doc__ = original.__doc__
    if pass_arg is not None:
        checked.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return checked


def finalize(value: Any) -> Any:
    """Every `{{ }}` output passes here before it becomes text."""
    tick()
    if estimated_size(value) > MAX_OUTPUT:
        raise TemplateError(f"output longer than {MAX_OUTPUT} characters")
    return value


def bounded_iter(iterable: Any) -> Any:
    """A `for` loop's items, with the deadline checked before each."""
    for item in iterable:
        tick()
        yield item


def concat_parts(parts: tuple[Any, ...]) -> tuple[Any, ...]:
    """The parts of `a ~ b`, refused when joined they would be too long."""
    tick()
    refuse_over(sum(estimated_size(part) for part in parts), "concatenation")
    return parts
