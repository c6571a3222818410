"""Rendering a chat template, code that came with a model, within a budget of steps, seconds and sizes.

Jinja's immutable sandbox keeps a template from Python's internals and from mutating its arguments, not from running
long or building huge values: two nested ``range(100000)`` loops take hours, ``'x' * 10**10`` takes all the memory.
Here a render stops with a ``SecurityError`` past any of these bounds:

- source: a template longer than ``MAX_SOURCE`` is not compiled;
- steps: each item of a ``for`` loop or a recursive ``loop(...)``, each item drawn from an iterator a call or filter
  returns, and each call, filter and ``+ * % **`` spends one of ``MAX_STEPS``;
- seconds: at each step, a render that has run ``MAX_SECONDS``; a step runs to its end, so one operation on a large
  value (``sort`` of a million items) overruns the deadline by its own length, bounded by the sizes below;
- sizes (``template_sizes``): each text a call, filter, operator or ``~`` returns, and the output, is at most
  ``MAX_CHARS`` long, each list ``MAX_ITEMS``; each argument, ``~`` operand, compared or tested value and output
  value is refused when writing it out would pass ``MAX_CHARS`` (a list of 16 Mi references to one long text is
  short and writes a huge text), counted without writing it; and what a call would build is refused before it runs
  where its arguments tell its size: a width or count past ``MAX_CHARS``, a format of many fields, a replacement,
  indent, case change, escape, split, ``*`` of a sequence, ``*`` and ``**`` of integers past ``MAX_POWER_BITS``.

Loops and ``~`` reach the budget by a rewrite of the parsed template (``_Metered``), calls, filters and operators by
the sandbox's hooks. Left out: Jinja's ``lipsum``, pages of text from one call, its HTML and debugging filters
(``_LEFT_OUT_FILTERS``), and its ``random`` filter, so that a template renders the same text on every call: a
``messages`` record's prompt and whole conversation are two renders, and the answer is what the second adds.
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
from .template_sizes import MAX_CHARS, MAX_ITEMS, MAX_POWER_BITS  # noqa: F401 (the bounds, beside those kept here)

_LEFT_OUT_FILTERS = ("pprint", "urlize", "xmlattr")
"""Jinja's debugging and HTML filters, which no chat template uses, each writing many times what it reads."""
MAX_SOURCE = 1 << 20
"""The longest template read, in characters: chat templates take a few thousand, the longest tens of thousands."""
MAX_STEPS = 2_000_000
"""Loop steps, calls, filters and operators one render may take; a real template takes tens per message."""
MAX_SECONDS = 10
"""How long one render may run, checked at each step; a real template renders in milliseconds."""


def render_template(source: str, **context) -> str:
    """``source`` rendered over ``context`` in the budgeted sandbox (trimmed blocks, ``loopcontrols``, a ``tojson``
    filter and ``raise_exception``, as transformers renders chat templates).

    Raises:
        TemplateError: the template is longer than ``MAX_SOURCE``, does not parse, raises, or passes ``MAX_STEPS``,
            ``MAX_SECONDS`` or a size (``SecurityError``, a ``TemplateError``); anything else the template's own code
            raises passes through.
    """
    if len(source) > MAX_SOURCE:  # compiled before any budget runs: a few megabytes take seconds and gigabytes
        raise SecurityError(f"the template is {len(source):,} characters long; at most {MAX_SOURCE:,} are read")
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
        for name in _LEFT_OUT_FILTERS:
            del self.filters[name]
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
            sizes.check_arguments(name, args[value_at:], kwargs)
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
        if isinstance(function, LoopContext) and args:  # a recursive loop's loop(children) steps as a for loop does
            args = (self.metered_loop(args[0]), *args[1:])
        if isinstance(receiver, (str, bytes)) and function.__name__ == "join" and args:
            args = (list(self.metered_loop(args[0])), *args[1:])
            items = [item for item in args[0] if isinstance(item, (str, bytes))]
            sizes.check_size(sum(map(len, items)) + len(receiver) * len(args[0]))
        sizes.check_arguments(getattr(function, "__name__", ""), (receiver, *args), kwargs)
        return self.measured(super().call(context, function, *args, **kwargs))

    def wrap_str_format(self, value):
        """The sandbox's ``str.format`` / ``format_map`` (a function without the text it formats: ``call`` cannot
        see it), checked against the values it is called with."""
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        text = value.__self__

        def checked(*args, **kwargs):
            sizes.check_formatted(text, (*args, *kwargs.values()))
            return wrapper(*args, **kwargs)

        return checked

    def call_binop(self, context, operator: str, left, right):
        self.spend()
        sizes.writable(left)
        sizes.writable(right)
        sequence, count = (left, right) if isinstance(right, int) else (right, left)
        if operator == "*" and isinstance(count, int) and hasattr(sequence, "__len__"):  # refused before it is built
            (sizes.check_size if isinstance(sequence, (str, bytes)) else sizes.check_items)(len(sequence) * count)
        if operator in ("*", "**") and isinstance(left, int) and isinstance(right, int):
            bits = left.bit_length() + right.bit_length() if operator == "*" else right * left.bit_length()
            if bits > MAX_POWER_BITS:
                raise SecurityError(f"{operator} makes an integer past {MAX_POWER_BITS:,} bits, too large to write")
        if operator == "%" and isinstance(left, str):
            sizes.check_formatted(left, right if isinstance(right, tuple) else (right,))
        return self.measured(super().call_binop(context, operator, left, right))


class _Metered(NodeTransformer):
    """Routes each ``for`` loop's items, each ``~``'s operands and result, and each compared or tested value through
    the environment's budget, as ``environment.<method>`` (which a template cannot rebind, as it could a global)."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        node = self.generic_visit(node)
        node.iter = _environment_call("metered_loop", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Call:
        node = self.generic_visit(node)
        node.nodes = [_environment_call("writable", operand) for operand in node.nodes]
        return _environment_call("measured", node)

    def visit_Compare(self, node: nodes.Compare) -> nodes.Compare:  # ``in`` and ``==`` compare text by text
        node = self.generic_visit(node)
        node.expr = _environment_call("writable", node.expr)
        for operand in node.ops:
            operand.expr = _environment_call("writable", operand.expr)
        return node

    def visit_Test(self, node: nodes.Test) -> nodes.Test:
        node = self.generic_visit(node)
        node.node = _environment_call("writable", node.node)
        node.args = [_environment_call("writable", argument) for argument in node.args]
        return node


def _environment_call(method: str, argument: nodes.Expr) -> nodes.Call:
    call = nodes.Call(nodes.EnvironmentAttribute(method), [argument], [], None, None)
    return call.set_lineno(argument.lineno)


def _raise(message):
    raise TemplateError(str(message))  # written here, inside the render: a list nested too deep fails as the template
