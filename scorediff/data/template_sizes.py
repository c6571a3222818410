"""The sizes a chat template may build in the budgeted sandbox (``template_sandbox``): each value a call, filter or
operator returns, each argument and output written out, counted before or while they are built."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping

from jinja2 import pass_environment
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.utils import Namespace

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
_CONTAINERS = (list, tuple, set, frozenset, dict, type({}.keys()), type({}.values()), type({}.items()), Namespace)
_COMMON_ESCAPES = str.maketrans("", "", "\n\r\t")
_WRAPPING = 16  # at least the characters a container or a quoted text writes around its items


def check_length(value):
    if isinstance(value, (str, list, tuple, dict, range)):
        check_size(len(value))
    return value


def check_size(size: int) -> None:
    if size > MAX_CHARS:
        raise SecurityError(f"it builds a text or list longer than {MAX_CHARS:,}")


def writable(value):
    """``value``, refused when writing it out would pass ``MAX_CHARS`` (every output value and ``~`` operand)."""
    check_size(_written_size(value))
    return value


def check_written(args, kwargs) -> None:
    for value in (*args, *kwargs.values()):
        writable(value)


def _written_size(value) -> int:
    """At least ``len(str(value))``, or a count past ``MAX_CHARS``, taken without writing ``value`` out: walked depth
    first, each item's text and two for its separator, each container's brackets and name, a container already on
    the path written as Python writes it (``[...]``)."""
    if not isinstance(value, _CONTAINERS):
        return _leaf_size(value, quoted=False)
    size, stack, path = _WRAPPING, [iter(_items(value))], [id(value)]
    while stack and size <= MAX_CHARS:
        item = next(stack[-1], stack)  # the stack itself marks an iterator's end
        if item is stack:
            stack.pop()
            path.pop()
        elif not isinstance(item, _CONTAINERS):
            size += 2 + _leaf_size(item, quoted=True)
        else:  # brackets, or "<Namespace {...}>" and "dict_items([...])"
            size += 2 + _WRAPPING
            if id(item) not in path:
                stack.append(iter(_items(item)))
                path.append(id(item))
    return size


def _items(container) -> Iterator:
    """What ``str(container)`` writes: a mapping's keys and values, a namespace's attributes, other items."""
    if isinstance(container, Namespace):
        container = object.__getattribute__(container, "_Namespace__attrs")  # a namespace hides all but this
    return (part for pair in container.items() for part in pair) if isinstance(container, Mapping) else container


def _leaf_size(value, quoted: bool) -> int:
    """At least ``len(str(value))``, or ``len(repr(value))`` for a text in a container (and its JSON): quotes, one
    escape a quote, backslash or newline, and ten characters a character in a text with other unprintable ones."""
    if isinstance(value, str):
        if not quoted:
            return len(value)
        escapes = sum(value.count(c) for c in "'\"\\\n\r\t")
        printable = value.isprintable() or value.translate(_COMMON_ESCAPES).isprintable()
        return _WRAPPING + len(value) + escapes + (0 if printable else 9 * len(value))  # Markup('...') too
    if isinstance(value, (bytes, bytearray)):
        return 14 + 4 * len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return 3 + value.bit_length() * 10 // 33  # digits <= 0.30103 bits + 1, and a sign
    return len(repr(value))


def check_integers(args, kwargs) -> None:
    """Refuse an integer argument past ``MAX_CHARS``: a width, count or length that would build too much."""
    if any(isinstance(value, int) and value > MAX_CHARS for value in (*args, *kwargs.values())):
        raise SecurityError(f"it passes a call, filter or % a number larger than {MAX_CHARS:,}")


def check_format(text: str) -> None:
    if _WIDE_FORMAT.search(text):
        raise SecurityError(f"the format {text!r:.40} has a width or precision of 8+ digits or a nested field")


def check_built(name: str, args, kwargs) -> None:
    """Refuse what ``replace``, ``indent``, ``wordwrap`` or ``str.expandtabs`` would write past ``MAX_CHARS`` (an upper
    bound counted without building it; ``args[0]`` is the text they change), and the ``format`` filter's wide format."""
    if name not in _SIZE_PARAMETERS or not args or not isinstance(args[0], str):
        return
    arguments = dict(zip(_SIZE_PARAMETERS[name], args, strict=False)) | kwargs
    s = arguments["s"]
    if name == "format":
        check_format(s)
    elif name == "replace":
        count, occurrences = arguments.get("count"), s.count(str(arguments.get("old", "")))
        replaced = occurrences if count is None or count < 0 else min(occurrences, count)
        check_size(len(s) + replaced * len(str(arguments.get("new", ""))))
    elif name == "indent":
        width = arguments.get("width", 4)
        check_size(len(s) + (s.count("\n") + 1) * (len(width) if isinstance(width, str) else width))
    elif name == "wordwrap":  # at most a wrapped line per character
        check_size((len(s) + 1) * (len(arguments.get("wrapstring") or "\n") + 1))
    elif name == "expandtabs":
        check_size(len(s) + s.count("\t") * arguments.get("tabsize", 8))


@pass_environment
def join(environment, value, d="", attribute=None):
    """Jinja's ``join`` (without autoescape), refused as soon as the text it writes passes ``MAX_CHARS``."""
    if attribute is not None:
        value = map(make_attrgetter(environment, attribute), value)
    pieces, size = [], -len(str(d))
    for item in value:
        pieces.append(str(item))
        size += len(str(d)) + len(pieces[-1])
        check_size(size)
    return str(d).join(pieces)


def tojson(value, indent=None, ensure_ascii=False, sort_keys=False):
    """``json.dumps``, written in pieces and refused as soon as they pass ``MAX_CHARS`` (an indent multiplies)."""
    encoder = json.JSONEncoder(indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)
    pieces, size = [], 0
    for piece in encoder.iterencode(value):
        size += len(piece)
        check_size(size)
        pieces.append(piece)
    return "".join(pieces)
