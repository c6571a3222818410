"""Rendering a chat template, code that came with a model, within a budget of steps, seconds and sizes.

Jinja's immutable sandbox keeps a template from Python's internals and from mutating its arguments, not from running
long or building huge values: two nested ``range(100000)`` loops take hours, ``'x' * 10**10`` takes all the memory.
Here a render stops with a ``SecurityError`` past any of three bounds:

- steps: each item of a ``for`` loop or a recursive ``loop(...)``, each item drawn from an iterator a call or filter
  returns, and each call, filter and ``+ * % **`` spends one of ``MAX_STEPS``;
- seconds: at each step, a render that has run ``MAX_SECONDS``; a step runs to its end, so one operation on a large
  value (``sort`` of millions of items) overruns the deadline by its own length;
- sizes: each text or list a call, filter, operator or ``~`` returns, and the output, is at most ``MAX_CHARS`` long.
  Refused before they build more: an integer past ``MAX_CHARS`` passed to a call or filter or in the tuple right of
  ``%``; a format width or precision of 8+ digits, or a field nested in a format spec; ``join``, ``replace``,
  ``indent``, ``wordwrap`` and ``str.expandtabs`` writing past ``MAX_CHARS``; ``*`` of a sequence, ``*`` and ``**``
  of integers past ``MAX_POWER_BITS``. Sizes are lengths, not contents: a list of 16 Mi references to one long text
  is within them, though written out (``string``, ``tojson``, the output) it is far longer.

Loops and ``~`` reach the budget by a rewrite of the parsed template (``_Metered``), calls, filters and operators by
the sandbox's hooks. Jinja's ``lipsum``, pages of text from one call, is left out, and so is its ``random`` filter,
so that a template renders the same text on every call: a ``messages`` record's prompt and whole conversation are
two renders, and the answer is what the second adds to the first.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Iterator

from jinja2 import nodes, pass_environment
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.ext import loopcontrols
from jinja2.filters import make_attrgetter
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_STEPS = 2_000_000
"""Loop steps, calls, filters and operators one render may take; a real template takes tens per message."""
MAX_SECONDS = 10
"""How long one render may run, checked at each step; a real template renders in milliseconds."""
MAX_CHARS = 1 << 24
"""The longest text or list a template may build, its output included: 16 Mi characters, past any model's context."""
MAX_POWER_BITS = 1 << 16
"""The largest ``a ** b`` or ``a * b`` of two integers, in bits (Python writes none past 4,300 digits, ~14,000 bits)."""

_WIDE_FORMAT = re.compile(r"%(\([^)]*\))?[-#0 +*.\d]*\d{8}|\{[^{}]*:[^{}]*(\d{8}|\{)")
"""A ``%`` conversion or ``{...:spec}`` field with 8 or more digits in a row, or a field nested in a spec."""
_SIZE_PARAMETERS = {  # the filters and str methods whose output an argument multiplies, and their parameters
    "replace": ("s", "old", "new", "count"),
    "indent": ("s", "width"),
    "wordwrap": ("s", "width", "break_long_words", "wrapstring"),
    "expandtabs": ("s", "tabsize"),
    "format": ("s",),
}


def render_template(source: str, **context) -> str:
    """``source`` rendered over ``context`` in the budgeted sandbox (trimmed blocks, ``loopcontrols``, a ``tojson``
    filter and ``raise_exception``, as transformers renders chat templates).

    Raises:
        TemplateError: the template does not parse, raises, or passes ``MAX_STEPS``, ``MAX_SECONDS`` or ``MAX_CHARS``
            (``SecurityError``, a ``TemplateError``); anything else the template's own code raises passes through.
    """
    environment, template = _compiled(source)
    with environment.lock:  # one render at a time spends an environment's budget
        environment.steps, environment.deadline = 0, time.monotonic() + MAX_SECONDS
        output, size = [], 0
        for chunk in template.generate(**context):
            size += len(chunk)
            _check_size(size)
            output.append(chunk)
    return "".join(output)


@functools.lru_cache(maxsize=8)
def _compiled(source: str):
    """The budgeted environment and ``source`` compiled in it, once per template: a file of chat records renders
    the same template twice a record (compiling takes about 1 ms, rendering a few messages a tenth of that)."""
    environment = _BudgetedSandbox()
    return environment, environment.from_string(_Metered().visit(environment.parse(source)))


class _BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, spending a step on every call, filter and operator and measuring what they return."""

    intercepted_binops = frozenset({"+", "*", "%", "**"})

    def __init__(self):
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        self.steps, self.deadline, self.lock = 0, time.monotonic() + MAX_SECONDS, threading.Lock()
        del self.globals["lipsum"], self.filters["random"]
        self.globals["raise_exception"] = _raise
        self.filters.update(tojson=_tojson, join=_join)
        self.filters = {name: self._metered(name, function) for name, function in self.filters.items()}

    def spend(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise SecurityError(f"it takes more than {MAX_STEPS:,} steps (loop steps, calls, filters, operators)")
        if time.monotonic() > self.deadline:
            raise SecurityError(f"it takes more than {MAX_SECONDS} seconds")

    def _metered(self, name: str, function):
        value_at = 1 if hasattr(function, "jinja_pass_arg") else 0  # after the context or environment it is passed

        @functools.wraps(function)  # keeps the mark of a filter that is passed the context or environment
        def metered(*args, **kwargs):
            self.spend()
            _check_integers(args[value_at + 1 :], kwargs)
            _check_built(name, args[value_at:], kwargs)
            return self.measured(function(*args, **kwargs))

        return metered

    def metered_loop(self, iterable):
        """The items of ``iterable``, a step spent on each (every ``for`` loop's, through ``_Metered``)."""
        for item in iterable:
            self.spend()
            yield item

    def measured(self, value):
        """``value``, refused when longer than ``MAX_CHARS``, an iterator drawn through ``metered_loop`` (what every
        call, filter and operator returns, and every ``~``'s result through ``_Metered``)."""
        return self.metered_loop(value) if isinstance(value, Iterator) else _check_length(value)

    def call(self, context, function, /, *args, **kwargs):
        receiver = getattr(function, "__self__", None)
        if receiver is self:  # metered_loop or measured, put in by _Metered: no step of their own
            return context.call(function, *args, **kwargs)
        self.spend()
        _check_integers(args, kwargs)
        if isinstance(function, LoopContext) and args:  # a recursive loop's loop(children) steps as a for loop does
            args = (self.metered_loop(args[0]), *args[1:])
        if isinstance(receiver, str) and function.__name__ == "join" and args:
            args = (list(args[0]), *args[1:])
            _check_size(sum(len(item) for item in args[0] if isinstance(item, str)) + len(receiver) * len(args[0]))
        elif isinstance(receiver, str):
            _check_built(function.__name__, (receiver, *args), kwargs)
        return self.measured(super().call(context, function, *args, **kwargs))

    def wrap_str_format(self, value):
        wrapper = super().wrap_str_format(value)
        if wrapper is not None:
            _check_format(value.__self__)
        return wrapper

    def call_binop(self, context, operator: str, left, right):
        self.spend()
        sequence, count = (left, right) if isinstance(right, int) else (right, left)
        if operator == "*" and isinstance(count, int) and hasattr(sequence, "__len__"):
            _check_size(len(sequence) * count)  # refused before it is built
        if operator in ("*", "**") and isinstance(left, int) and isinstance(right, int):
            bits = left.bit_length() + right.bit_length() if operator == "*" else right * left.bit_length()
            if bits > MAX_POWER_BITS:
                raise SecurityError(f"{operator} makes an integer past {MAX_POWER_BITS:,} bits, too large to write")
        if operator == "%" and isinstance(left, str):
            _check_format(left)
            _check_integers(right if isinstance(right, tuple) else (), {})
        return self.measured(super().call_binop(context, operator, left, right))


def _check_length(value):
    if isinstance(value, (str, list, tuple, dict, range)):
        _check_size(len(value))
    return value


def _check_size(size: int) -> None:
    if size > MAX_CHARS:
        raise SecurityError(f"it builds a text or list longer than {MAX_CHARS:,}")


def _check_integers(args, kwargs) -> None:
    """Refuse an integer argument past ``MAX_CHARS``: a width, count or length that would build too much."""
    if any(isinstance(value, int) and value > MAX_CHARS for value in (*args, *kwargs.values())):
        raise SecurityError(f"it passes a call, filter or % a number larger than {MAX_CHARS:,}")


def _check_format(text: str) -> None:
    if _WIDE_FORMAT.search(text):
        raise SecurityError(f"the format {text!r:.40} has a width or precision of 8+ digits or a nested field")


def _check_built(name: str, args, kwargs) -> None:
    """Refuse what ``replace``, ``indent``, ``wordwrap`` or ``str.expandtabs`` would write past ``MAX_CHARS`` (an upper
    bound counted without building it; ``args[0]`` is the text they change), and the ``format`` filter's wide format."""
    if name not in _SIZE_PARAMETERS or not args or not isinstance(args[0], str):
        return
    arguments = dict(zip(_SIZE_PARAMETERS[name], args, strict=False)) | kwargs
    s = arguments["s"]
    if name == "format":
        _check_format(s)
    elif name == "replace":
        count, occurrences = arguments.get("count"), s.count(str(arguments.get("old", "")))
        replaced = occurrences if count is None or count < 0 else min(occurrences, count)
        _check_size(len(s) + replaced * len(str(arguments.get("new", ""))))
    elif name == "indent":
        width = arguments.get("width", 4)
        _check_size(len(s) + (s.count("\n") + 1) * (len(width) if isinstance(width, str) else width))
    elif name == "wordwrap":  # at most a wrapped line per character
        _check_size((len(s) + 1) * (len(arguments.get("wrapstring") or "\n") + 1))
    elif name == "expandtabs":
        _check_size(len(s) + s.count("\t") * arguments.get("tabsize", 8))


@pass_environment
def _join(environment, value, d="", attribute=None):
    """Jinja's ``join`` (without autoescape), refused as soon as the text it writes passes ``MAX_CHARS``."""
    if attribute is not None:
        value = map(make_attrgetter(environment, attribute), value)
    pieces, size = [], -len(str(d))
    for item in value:
        pieces.append(str(item))
        size += len(str(d)) + len(pieces[-1])
        _check_size(size)
    return str(d).join(pieces)


class _Metered(NodeTransformer):
    """Routes each ``for`` loop's items and each ``~``'s result through the environment's budget, as
    ``environment.<method>`` (which a template cannot rebind, as it could a global)."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        node = self.generic_visit(node)
        node.iter = _environment_call("metered_loop", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Call:
        return _environment_call("measured", self.generic_visit(node))


def _environment_call(method: str, argument: nodes.Expr) -> nodes.Call:
    call = nodes.Call(nodes.EnvironmentAttribute(method), [argument], [], None, None)
    return call.set_lineno(argument.lineno)


def _tojson(value, indent=None, ensure_ascii=False, sort_keys=False):
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


def _raise(message):
    raise TemplateError(message)
