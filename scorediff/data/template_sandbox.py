"""Rendering a chat template, code that came with a model, within a budget of steps, seconds and sizes.

Jinja's immutable sandbox keeps a template from Python's internals and from mutating its arguments, not from running
long or building huge values: two nested ``range(100000)`` loops take hours, ``'x' * 10**10`` takes all the memory.
Here a render stops with a ``SecurityError`` past any of these bounds (sizes in ``template_sizes``):

- steps: each item of a ``for`` loop or a recursive ``loop(...)``, each item drawn from an iterator a call or filter
  returns, and each call, filter and ``+ * % **`` spends one of ``MAX_STEPS``;
- seconds: at each step, a render that has run ``MAX_SECONDS``; a step runs to its end, so one operation on a large
  value (``sort`` of millions of items) overruns the deadline by its own length;
- sizes: each text or list a call, filter, operator or ``~`` returns, and the output, is at most ``MAX_CHARS`` long.
  Refused before they build more: an integer past ``MAX_CHARS`` passed to a call or filter or in the tuple right of
  ``%``; a format width or precision of 8+ digits, or a field nested in a format spec; ``join``, ``replace``,
  ``indent``, ``wordwrap`` and ``str.expandtabs`` writing past ``MAX_CHARS``; ``*`` of a sequence, ``*`` and ``**``
  of integers past ``MAX_POWER_BITS``;
- written sizes: a list's length says little of its text (16 Mi references to one long text, or lists of lists
  doubled by literals, which no hook sees being built), so each argument of a call, filter or operator, each operand
  of ``~`` and each output value is refused when writing it out would pass ``MAX_CHARS``, counted
  (``template_sizes._written_size``) without writing it; ``tojson`` writes in pieces and stops there.

Loops and ``~`` reach the budget by a rewrite of the parsed template (``_Metered``), calls, filters and operators by
the sandbox's hooks. Jinja's ``lipsum``, pages of text from one call, is left out, and so is its ``random`` filter,
so that a template renders the same text on every call: a ``messages`` record's prompt and whole conversation are
two renders, and the answer is what the second adds to the first.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator

from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.ext import loopcontrols
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from . import template_sizes as sizes
from .template_sizes import MAX_CHARS, MAX_POWER_BITS  # noqa: F401 (the bounds, beside the two kept here)

MAX_STEPS = 2_000_000
"""Loop steps, calls, filters and operators one render may take; a real template takes tens per message."""
MAX_SECONDS = 10
"""How long one render may run, checked at each step; a real template renders in milliseconds."""


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
            sizes.check_size(size)
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
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols], finalize=sizes.writable)
        self.steps, self.deadline, self.lock = 0, time.monotonic() + MAX_SECONDS, threading.Lock()
        del self.globals["lipsum"], self.filters["random"]
        self.globals["raise_exception"] = _raise
        self.filters.update(tojson=sizes.tojson, join=sizes.join)
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
            sizes.check_integers(args[value_at + 1 :], kwargs)
            sizes.check_written(args[value_at:], kwargs)
            sizes.check_built(name, args[value_at:], kwargs)
            return self.measured(function(*args, **kwargs))

        return metered

    def metered_loop(self, iterable):
        """The items of ``iterable``, a step spent on each (every ``for`` loop's, through ``_Metered``)."""
        for item in iterable:
            self.spend()
            yield item

    def writable(self, value):
        """``value``, refused when writing it out would pass ``MAX_CHARS`` (each ``~`` operand, by ``_Metered``)."""
        return sizes.writable(value)

    def measured(self, value):
        """``value``, refused when longer than ``MAX_CHARS``, an iterator drawn through ``metered_loop`` (what every
        call, filter and operator returns, and every ``~``'s result through ``_Metered``)."""
        return self.metered_loop(value) if isinstance(value, Iterator) else sizes.check_length(value)

    def call(self, context, function, /, *args, **kwargs):
        receiver = getattr(function, "__self__", None)
        if receiver is self:  # metered_loop, measured or writable, put in by _Metered: no step of their own
            return context.call(function, *args, **kwargs)
        self.spend()
        sizes.check_integers(args, kwargs)
        sizes.check_written(args, kwargs)
        if isinstance(function, LoopContext) and args:  # a recursive loop's loop(children) steps as a for loop does
            args = (self.metered_loop(args[0]), *args[1:])
        if isinstance(receiver, str) and function.__name__ == "join" and args:
            args = (list(args[0]), *args[1:])
            sizes.check_size(sum(len(item) for item in args[0] if isinstance(item, str)) + len(receiver) * len(args[0]))
        elif isinstance(receiver, str):
            sizes.check_built(function.__name__, (receiver, *args), kwargs)
        return self.measured(super().call(context, function, *args, **kwargs))

    def wrap_str_format(self, value):
        wrapper = super().wrap_str_format(value)
        if wrapper is not None:
            sizes.check_format(value.__self__)
        return wrapper

    def call_binop(self, context, operator: str, left, right):
        self.spend()
        sizes.check_written((left, right), {})
        sequence, count = (left, right) if isinstance(right, int) else (right, left)
        if operator == "*" and isinstance(count, int) and hasattr(sequence, "__len__"):
            sizes.check_size(len(sequence) * count)  # refused before it is built
        if operator in ("*", "**") and isinstance(left, int) and isinstance(right, int):
            bits = left.bit_length() + right.bit_length() if operator == "*" else right * left.bit_length()
            if bits > MAX_POWER_BITS:
                raise SecurityError(f"{operator} makes an integer past {MAX_POWER_BITS:,} bits, too large to write")
        if operator == "%" and isinstance(left, str):
            sizes.check_format(left)
            sizes.check_integers(right if isinstance(right, tuple) else (), {})
        return self.measured(super().call_binop(context, operator, left, right))


class _Metered(NodeTransformer):
    """Routes each ``for`` loop's items and each ``~``'s result through the environment's budget, as
    ``environment.<method>`` (which a template cannot rebind, as it could a global)."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        node = self.generic_visit(node)
        node.iter = _environment_call("metered_loop", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Call:
        node = self.generic_visit(node)
        node.nodes = [_environment_call("writable", operand) for operand in node.nodes]
        return _environment_call("measured", node)


def _environment_call(method: str, argument: nodes.Expr) -> nodes.Call:
    call = nodes.Call(nodes.EnvironmentAttribute(method), [argument], [], None, None)
    return call.set_lineno(argument.lineno)


def _raise(message):
    raise TemplateError(message)
