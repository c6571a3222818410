"""What ``scorediff infill`` reads: a template with ``[MASK:n]`` markers, a prefix and suffix, or a region of a
FASTA record, each turned into tokens and a given-mask (True where a token is kept)."""

from __future__ import annotations

import re
from pathlib import Path

from ..data.dna import fasta_records
from ..data.sources import DataError
from ..data.tokenizers import DnaTokenizer
from . import UsageError

MARKER = re.compile(r"\[MASK(?::(\d+))?\]")


def parse_template(template: str, tokenizer, context: int) -> tuple[list[int], list[bool]]:
    """Tokens and a given-mask from a template whose ``[MASK:n]`` markers stand for n unknown tokens; a
    template longer than ``context`` tokens is refused before anything of its length is built."""
    pieces: list[tuple[list[int], int]] = []  # (given tokens, unknown tokens after them)
    position = 0
    for match in MARKER.finditer(template):
        count = int(match.group(1)) if match.group(1) is not None else 1
        if count <= 0:
            raise UsageError(f"[MASK:n] needs n > 0; got {match.group(0)}")
        pieces.append((encode_text(tokenizer, template[position : match.start()]), count))
        position = match.end()
    pieces.append((encode_text(tokenizer, template[position:]), 0))
    if len(pieces) == 1:
        raise UsageError("the template has no [MASK:n] marker, so there is nothing to fill in")
    check_context(sum(len(ids) + count for ids, count in pieces), context)
    tokens: list[int] = []
    given: list[bool] = []
    for ids, count in pieces:
        tokens += ids + [0] * count
        given += [True] * len(ids) + [False] * count
    return tokens, given


def check_context(length: int, context: int) -> None:
    if length > context:
        raise UsageError(f"the filled-in text would be {length} tokens; the model's context is {context}")


def encode_text(tokenizer, text: str) -> list[int]:
    try:
        text.encode("utf-8")
        return tokenizer.encode(text) if text else []
    except UnicodeError:
        raise UsageError("cannot encode the prompt: it is not valid UTF-8 text") from None
    except (ValueError, TypeError) as error:
        raise UsageError(f"cannot encode the prompt: {error}") from None


REGION = re.compile(r"(\d+)-(\d+)")


def fasta_region(args, context: int) -> tuple[list[int], list[bool], int]:
    """The bases of a window of at most ``context`` around ``--region`` of ``--fasta`` (the region centred where
    the record allows), the given-mask (False on the region), and the window's first position (0-based)."""

    found = REGION.fullmatch(args.region or "")
    if not found or not 1 <= int(found.group(1)) <= int(found.group(2)):
        raise UsageError(f"--region must be START-END with 1 <= START <= END (1-based); got {args.region!r}")
    start, end = int(found.group(1)) - 1, int(found.group(2))  # 0-based, end exclusive
    try:
        records = fasta_records(Path(args.fasta))
        sequence = next((seq for name, seq in records if args.record in (None, name.split()[0])), None)
    except (OSError, DataError) as error:
        raise UsageError(f"--fasta {args.fasta}: {error}") from None
    if sequence is None:
        raise UsageError(f"--fasta {args.fasta} has no record {args.record!r}" if args.record else "--fasta: no record")
    if end > len(sequence):
        raise UsageError(f"--region {args.region} ends past the record's {len(sequence)} bases")
    if end - start > context:
        raise UsageError(f"--region is {end - start} bases; the model's context is {context}")
    first = max(0, min(start - (context - (end - start)) // 2, len(sequence) - context))
    window = sequence[first : first + context]
    try:
        tokens = DnaTokenizer().encode(window)
    except ValueError as error:
        raise UsageError(f"the window {first + 1}-{first + len(window)} around --region: {error}") from None
    given = [not start <= first + i < end for i in range(len(window))]
    return tokens, given, first
