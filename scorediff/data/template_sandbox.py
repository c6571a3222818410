"""Rendering a chat template, code that came with a model, so that no template can hang or exhaust the process.

Jinja's immutable sandbox keeps a template from Python's internals and from mutating its arguments, but not from
running long: two nested ``range(100000)`` loops take hours, ``'x' * 10**10`` takes all the memory. Here every loop
step, call, filter and arithmetic operator spends one of ``MAX_STEPS`` (as does every item drawn from an iterator a
call or filter returns: ``[1]|slice(10**9)|list`` is a billion lists), and every text or list they build, and the
output, must stay within ``MAX_CHARS``; past either the render stops with a ``SecurityError``. The loops and ``~``
concatenations are routed through the budget by rewriting the parsed template (``_Metered``); calls, filters and
operators by the sandbox's own hooks. Jinja's ``lipsum``, which writes pages of text from one call, is left out.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator

from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_STEPS = 2_000_000
"""Loop steps, calls, filters and operators one render may take; a real template takes tens per message."""
MAX_CHARS = 1 << 24
"""The longest text or list a template may build, its output included: 16 Mi characters, past any model's context."""
MAX_POWER_BITS = 1 << 16
"""The largest ``a ** b`` of integers, in bits (Python writes no integer past 4,300 digits, about 14,000 bits)."""


def render_template(source: str, **context) -> str:
    """``source`` rendered over ``context`` in the budgeted sandbox (trimmed blocks, ``loopcontrols``, a ``tojson``
    filter and ``raise_exception``, as transformers renders chat templates).

    Raises:
        TemplateError: the template does not parse, raises, or passes ``MAX_STEPS`` or ``MAX_CHARS``
            (``SecurityError``, a ``TemplateError``); anything else the template's own code raises passes through.
    """
    environment = _BudgetedSandbox()
    template = environment.from_string(_Metered().visit(environment.parse(source)))
    output, size = [], 0
    for chunk in template.generate(**context):
        size += len(chunk)
        _check_size(size)
        output.append(chunk)
    return "".join(output)


class _BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, spending a step on every call, filter and operator and measuring what they return."""

    intercepted_binops = frozenset({"+", "*", "%", "**"})

    def __init__(self):
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        self.steps = 0
        del self.globals["lipsum"]
        self.globals["raise_exception"] = _raise
        self.filters["tojson"] = _tojson
        self.filters = {name: self._metered(function) for name, function in self.filters.items()}

    def spend(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise SecurityError(f"it takes more than {MAX_STEPS:,} steps (loop steps, calls, filters, operators)")

    def _metered(self, function):
        @functools.wraps(function)  # keeps the mark of a filter that is passed the context or environment
        def metered(*args, **kwargs):
            self.spend()
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
        self.spend()
        return self.measured(super().call(context, function, *args, **kwargs))

    def call_binop(self, context, operator: str, left, right):
        self.spend()
        sequence, count = (left, right) if isinstance(right, int) else (right, left)
        if operator == "*" and isinstance(count, int) and hasattr(sequence, "__len__"):
            _check_size(len(sequence) * count)  # refused before it is built
        if operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right * left.bit_length() > MAX_POWER_BITS:
                raise SecurityError(f"{left} ** {right} is an integer too large to write")
        return self.measured(super().call_binop(context, operator, left, right))


def _check_length(value):
    if isinstance(value, (str, list, tuple, dict, range)):
        _check_size(len(value))
    return value


def _check_size(size: int) -> None:
    if size > MAX_CHARS:
        raise SecurityError(f"it builds a text or list longer than {MAX_CHARS:,}")


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
