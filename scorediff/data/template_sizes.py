"""The sizes a chat template may build in the budgeted sandbox (``template_sandbox``): each value a call, filter or
operator returns, each argument and output written out, counted before or while they are built.

A text is bounded by ``MAX_CHARS`` characters (bytes alike), a list, tuple, set or mapping by ``MAX_ITEMS`` items
(each item is a Python object: a list of 16 Mi one-character texts holds over a gigabyte). What a call would build
is bounded before it runs where its arguments say how much (``check_arguments``): a replacement, an indent, a format
whose fields each write the largest value, a case change or escape that lengthens each character, a split into
items, a sort by an attribute path."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping

from jinja2 import pass_environment
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.utils import Namespace

MAX_CHARS = 1 << 24
"""The longest text a template may build or write, its output included: 16 Mi characters, past any model's context."""
MAX_ITEMS = 1 << 20
"""The most items in a list, tuple, set or mapping a template may build: a conversation has hundreds."""
MAX_POWER_BITS = 1 << 16
"""The largest ``a ** b`` or ``a * b`` of two integers, in bits (Python writes none past 4,300 digits, ~14,000 bits)."""
MAX_ATTRIBUTE_PARTS = 64
"""The most parts of a dotted ``attribute=`` path (each part is a lookup for every item a filter sorts or maps)."""

_WIDE_FORMAT = re.compile(r"%(\([^)]*\))?[-#0 +*.\d]*\d{8}|\{[^{}]*:[^{}]*(\d{8}|\{)")
"""A ``%`` conversion or ``{...:spec}`` field with 8 or more digits in a row, or a field nested in a spec."""
_PARAMETERS = {  # the filters and methods whose output an argument multiplies, and their parameters
    "replace": ("s", "old", "new", "count"),
    "indent": ("s", "width"),
    "wordwrap": ("s", "width", "break_long_words", "wrapstring"),
    "expandtabs": ("s", "tabsize"),
    "translate": ("s", "table"),
    "split": ("s", "sep", "maxsplit"),
    "rsplit": ("s", "sep", "maxsplit"),
}
_LENGTHENING = {  # at most this many characters written for each one read
    **dict.fromkeys(("upper", "lower", "title", "capitalize", "swapcase", "casefold"), 3),  # "ß".upper() is "SS"
    **dict.fromkeys(("escape", "e", "forceescape"), 6),  # '"' is "&#34;"
    "urlencode": 12,  # a 4-byte character is "%F0%9F%98%80"
}
_LISTING = {"list", "sort", "groupby", "dictsort", "splitlines"}  # build a list of one item per item (or character)
_ATTRIBUTE_AT = {"selectattr": 1, "rejectattr": 1, "groupby": 1, "sum": 1, "sort": 3, "unique": 2, "min": 2, "max": 2,
                 "join": 2, "map": None}  # fmt: skip
"""The filters that look an attribute path up on every item, and the position of the path after the value."""
_TEXTS = (str, bytes, bytearray)
_CONTAINERS = (list, tuple, set, frozenset, dict, type({}.keys()), type({}.values()), type({}.items()), Namespace)
_COMMON_ESCAPES = str.maketrans("", "", "\n\r\t")
_WRAPPING = 16  # at least the characters a container or a quoted text writes around its items


def check_length(value):
    """``value``, refused when it is a text past ``MAX_CHARS`` or holds more than ``MAX_ITEMS`` items."""
    if isinstance(value, _TEXTS):
        check_size(len(value))
    elif isinstance(value, (list, tuple, set, frozenset, dict)):
        check_items(len(value))
    return value


def check_size(size: int) -> None:
    if size > MAX_CHARS:
        raise SecurityError(f"it builds a text or list longer than {MAX_CHARS:,}")


def check_items(count: int) -> None:
    if count > MAX_ITEMS:
        raise SecurityError(f"it builds a list of more than {MAX_ITEMS:,} items")


def writable(value):
    """``value``, refused when writing it out would pass ``MAX_CHARS`` (every output value, ``~`` operand, compared
    value and argument)."""
    check_size(_written_size(value))
    return value


def check_arguments(name: str, args: tuple, kwargs: dict) -> None:
    """Refuse a filter's or method's arguments (``args[0]`` the value or receiver) that would build past a bound:
    an integer past ``MAX_CHARS``, an argument too long to write, and what ``name`` would build from them."""
    check_integers(args[1:], kwargs)
    for value in (*args, *kwargs.values()):
        writable(value)
    if args and isinstance(args[0], _TEXTS):
        _check_text_built(name, args, kwargs)
    if name in _LISTING and args and hasattr(args[0], "__len__"):
        check_items(len(args[0]))
    if name in _ATTRIBUTE_AT:
        at = _ATTRIBUTE_AT[name]
        _check_attribute(kwargs.get("attribute", args[at] if at is not None and len(args) > at else None))


def check_formatted(text: str, values) -> None:
    """Refuse a ``%`` or ``format`` of ``text`` that would write past ``MAX_CHARS``: a wide field, or more fields
    than the text's length allows, each writing the largest of ``values`` (a mapping's whole text bounds its items)."""
    if _WIDE_FORMAT.search(text):
        raise SecurityError(f"the format {text!r:.40} has a width or precision of 8+ digits or a nested field")
    check_integers(values, {})
    largest = max((_written_size(value) for value in values), default=0)
    check_size(len(text) + (text.count("{") + text.count("%")) * largest)


def check_integers(args, kwargs) -> None:
    """Refuse an integer argument past ``MAX_CHARS``: a width, count or length that would build too much."""
    if any(isinstance(value, int) and value > MAX_CHARS for value in (*args, *kwargs.values())):
        raise SecurityError(f"it passes a call, filter or % a number larger than {MAX_CHARS:,}")


def _check_text_built(name: str, args: tuple, kwargs: dict) -> None:
    """Refuse what a filter or method would write from the text ``args[0]`` past ``MAX_CHARS`` (an upper bound counted
    without building it), or the items a split would make past ``MAX_ITEMS``."""
    s = args[0]
    if name in ("format", "format_map"):
        check_formatted(str(s), (*args[1:], *kwargs.values()))
    elif name in _LENGTHENING:
        check_size(len(s) * _LENGTHENING[name])
    elif name in _PARAMETERS:
        arguments = dict(zip(_PARAMETERS[name], args, strict=False)) | kwargs
        _check_parameters(name, s, arguments)


def _check_parameters(name: str, s, arguments: dict) -> None:
    if name == "replace":
        old, new, count = arguments.get("old", ""), arguments.get("new", ""), arguments.get("count")
        occurrences = s.count(old) if type(old) is type(s) else len(s) + 1
        replaced = occurrences if count is None or count < 0 else min(occurrences, count)
        check_size(len(s) + replaced * (len(new) if isinstance(new, _TEXTS) else _written_size(new)))
    elif name == "indent":
        width = arguments.get("width", 4)
        check_size(len(s) + (s.count("\n") + 1) * (len(width) if isinstance(width, str) else width))
    elif name == "wordwrap":  # at most a wrapped line per character
        check_size((len(s) + 1) * (len(arguments.get("wrapstring") or "\n") + 1))
    elif name == "expandtabs":
        check_size(len(s) + s.count("\t" if isinstance(s, str) else b"\t") * arguments.get("tabsize", 8))
    elif name == "translate":
        table = arguments.get("table")
        values = table.values() if isinstance(table, Mapping) else ()
        check_size(len(s) * max((len(v) for v in values if isinstance(v, _TEXTS)), default=1))
    elif name in ("split", "rsplit"):
        sep, most = arguments.get("sep"), arguments.get("maxsplit", -1)
        items = s.count(sep) + 1 if type(sep) is type(s) and sep else len(s) // 2 + 1
        check_items(items if most is None or most < 0 else min(items, most + 1))


def _check_attribute(path) -> None:
    if isinstance(path, str) and path.count(".") >= MAX_ATTRIBUTE_PARTS:
        raise SecurityError(f"an attribute path of more than {MAX_ATTRIBUTE_PARTS} parts")


def _written_size(value) -> int:
    """At least ``len(str(value))``, or a count past ``MAX_CHARS``, taken without writing ``value`` out: walked depth
    first, each item's text and two for its separator, each container's brackets and name, a container already on
    the path written as Python writes it (``[...]``)."""
    if not isinstance(value, _CONTAINERS):
        return _leaf_size(value, quoted=False)
    size, stack, ids, path = _WRAPPING, [iter(_items(value))], [id(value)], {id(value)}
    while stack and size <= MAX_CHARS:
        item = next(stack[-1], stack)  # the stack itself marks an iterator's end
        if item is stack:
            stack.pop()
            path.discard(ids.pop())
        elif not isinstance(item, _CONTAINERS):
            size += 2 + _leaf_size(item, quoted=True)
        else:  # brackets, or "<Namespace {...}>" and "dict_items([...])"
            size += 2 + _WRAPPING
            if id(item) not in path:
                stack.append(iter(_items(item)))
                ids.append(id(item))
                path.add(id(item))
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
    """``json.dumps``, written in pieces and refused as soon as they pass ``MAX_CHARS`` (an indent multiplies); with
    ``ensure_ascii`` a character may take 12 (a surrogate pair of escapes), refused before the first piece."""
    if ensure_ascii:
        check_size(12 * _written_size(value))
    encoder = json.JSONEncoder(indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)
    pieces, size = [], 0
    for piece in encoder.iterencode(value):
        size += len(piece)
        check_size(size)
        pieces.append(piece)
    return "".join(pieces)
