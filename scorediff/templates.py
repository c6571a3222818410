"""Text with gaps to fill: a template with ``[MASK:n]`` markers, or a prefix, a number of unknown tokens and a
suffix, as tokens and a given-mask (True where a token is kept). The command line's ``infill`` and the
playground read requests through these; a request that cannot be built is an ``InputError`` (one line)."""

from __future__ import annotations

import re

from .errors import InputError

MARKER = re.compile(r"\[MASK(?::(\d+))?\]")
ALMOST = re.compile(r"\[MASK:[^\]]{0,40}\]")
"""What a user may have meant as a marker (``[MASK:-1]``, ``[MASK:two]``): refused by name, not taken as text."""


def parse_template(template: str, tokenizer, context: int) -> tuple[list[int], list[bool]]:
    """Tokens and a given-mask from a template whose ``[MASK:n]`` markers stand for n unknown tokens; a
    template longer than ``context`` tokens is refused before anything of its length is built."""
    pieces: list[tuple[list[int], int]] = []  # (given tokens, unknown tokens after them)
    position = 0
    odd = next((m.group(0) for m in ALMOST.finditer(template) if not MARKER.fullmatch(m.group(0))), None)
    if odd is not None:
        raise InputError(f"[MASK:n] needs n, a whole number > 0; got {odd}")
    for match in MARKER.finditer(template):
        count = _mask_count(match, context)
        pieces.append((encode_text(tokenizer, template[position : match.start()], context), count))
        position = match.end()
    pieces.append((encode_text(tokenizer, template[position:], context), 0))
    if len(pieces) == 1:
        raise InputError("the template has no [MASK:n] marker, so there is nothing to fill in")
    check_context(sum(len(ids) + count for ids, count in pieces), context)
    tokens: list[int] = []
    given: list[bool] = []
    for ids, count in pieces:
        tokens += ids + [0] * count
        given += [True] * len(ids) + [False] * count
    return tokens, given


def gap(prefix: str, length: int, suffix: str, tokenizer, context: int) -> tuple[list[int], list[bool]]:
    """Tokens and a given-mask for ``length`` unknown tokens between ``prefix`` and ``suffix``."""
    if length < 1:
        raise InputError(f"the number of unknown tokens must be at least 1; got {length}")
    before, after = encode_text(tokenizer, prefix, context), encode_text(tokenizer, suffix, context)
    check_context(len(before) + length + len(after), context)
    return before + [0] * length + after, [True] * len(before) + [False] * length + [True] * len(after)


def check_context(length: int, context: int) -> None:
    if length > context:
        raise InputError(f"the filled-in text would be {length} tokens; the model's context is {context}")


def encode_text(tokenizer, text: str, limit: int | None = None) -> list[int]:
    """``tokenizer.encode(text)``, with a one-line error for text it cannot encode; with ``limit``, text that would
    be more than ``limit`` tokens is refused without tokenising all of it (see ``_surely_longer``)."""
    try:
        text.encode("utf-8")
    except UnicodeError:
        raise InputError("cannot encode the prompt: it is not valid UTF-8 text") from None
    try:  # a tokenizer's own error (InputError, a ValueError) is prefixed with what was being encoded
        too_long = limit is not None and _surely_longer(tokenizer, text, limit)
        tokens = [] if too_long or not text else tokenizer.encode(text)
    except (ValueError, TypeError) as error:
        raise InputError(f"cannot encode the prompt: {error}") from None
    if too_long:
        raise InputError(f"the text is far longer than the model's context of {limit} tokens")
    return tokens


#: no tokenizer in use averages this many characters per token, so a text this many times the limit is checked
#: on its head alone
CHARS_PER_TOKEN_BOUND = 64


def _surely_longer(tokenizer, text: str, limit: int) -> bool:
    """Whether ``text`` is more than ``limit`` tokens, judged on its first ``CHARS_PER_TOKEN_BOUND * (limit + 1)``
    characters when it is longer than that (so a 100 MB prompt costs what a page of it does). The head's last
    word may split into a few more tokens than it would whole; the margin of 8 covers that."""
    head = CHARS_PER_TOKEN_BOUND * (limit + 1)
    return len(text) > head and len(tokenizer.encode(text[:head])) > limit + 8


def _mask_count(match: re.Match, context: int) -> int:
    """n of a ``[MASK:n]`` marker (1 for ``[MASK]``), refused when < 1 or longer than ``context`` (judged on its
    digits first, so a number of thousands of digits is never converted)."""
    digits = match.group(1)
    if digits is None:
        return 1
    if len(digits.lstrip("0")) > len(str(context)) or int(digits) > context:
        shown = match.group(0) if len(digits) <= 12 else f"[MASK:n] with n of {len(digits)} digits"
        raise InputError(f"{shown} asks for more tokens than the model's context of {context}")
    if int(digits) < 1:
        raise InputError(f"[MASK:n] needs n > 0; got {match.group(0)}")
    return int(digits)
