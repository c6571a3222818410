"""Text with gaps to fill: a template with ``[MASK:n]`` markers, or a prefix, a number of unknown tokens and a
suffix, as tokens and a given-mask (True where a token is kept). The command line's ``infill`` and the
playground read requests through these; a request that cannot be built is an ``InputError`` (one line)."""

from __future__ import annotations

import re

from .errors import InputError

MARKER = re.compile(r"\[MASK(?::(\d+))?\]")


def parse_template(template: str, tokenizer, context: int) -> tuple[list[int], list[bool]]:
    """Tokens and a given-mask from a template whose ``[MASK:n]`` markers stand for n unknown tokens; a
    template longer than ``context`` tokens is refused before anything of its length is built."""
    pieces: list[tuple[list[int], int]] = []  # (given tokens, unknown tokens after them)
    position = 0
    for match in MARKER.finditer(template):
        count = int(match.group(1)) if match.group(1) is not None else 1
        if count <= 0:
            raise InputError(f"[MASK:n] needs n > 0; got {match.group(0)}")
        pieces.append((encode_text(tokenizer, template[position : match.start()]), count))
        position = match.end()
    pieces.append((encode_text(tokenizer, template[position:]), 0))
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
    before, after = encode_text(tokenizer, prefix), encode_text(tokenizer, suffix)
    check_context(len(before) + length + len(after), context)
    return before + [0] * length + after, [True] * len(before) + [False] * length + [True] * len(after)


def check_context(length: int, context: int) -> None:
    if length > context:
        raise InputError(f"the filled-in text would be {length} tokens; the model's context is {context}")


def encode_text(tokenizer, text: str) -> list[int]:
    """``tokenizer.encode(text)``, with a one-line error for text it cannot encode."""
    try:
        text.encode("utf-8")
        return tokenizer.encode(text) if text else []
    except UnicodeError:
        raise InputError("cannot encode the prompt: it is not valid UTF-8 text") from None
    except (ValueError, TypeError) as error:
        raise InputError(f"cannot encode the prompt: {error}") from None
