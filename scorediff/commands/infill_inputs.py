"""What ``scorediff infill --fasta`` reads: a region of a FASTA record, as tokens and a given-mask (True where a
token is kept). Templates and prefix/suffix requests are ``scorediff.templates``."""

from __future__ import annotations

import re
from pathlib import Path

from ..data.dna import fasta_records
from ..data.sources import DataError
from ..data.tokenizers import DnaTokenizer
from . import UsageError

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
