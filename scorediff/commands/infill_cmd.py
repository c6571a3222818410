"""``scorediff infill``: fill in text around given pieces (a prefix and suffix, a template or a FASTA region)."""

from __future__ import annotations

import argparse
import sys

import torch

from ..templates import gap, parse_template
from . import UsageError, positive
from .generate import _check_trajectory_path, _common, _emit, _generate, _load, _max_length, _record, _write_trajectory
from .infill_inputs import fasta_region


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "infill",
        help="fill in text around given pieces",
        description="Either --prefix/--suffix with --length unknown tokens between them, or a --template where "
        '[MASK:n] stands for n unknown tokens (and [MASK] for one): --template "To be, or [MASK:20] question".',
    )
    _common(parser)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--suffix", default="")
    parser.add_argument("--length", type=int, help="unknown tokens between prefix and suffix")
    parser.add_argument("--template")
    parser.add_argument("--fasta", help="DNA: regenerate --region of this FASTA file's sequence, in its context")
    parser.add_argument("--region", help="with --fasta: START-END, 1-based and inclusive (e.g. 100-180)")
    parser.add_argument("--record", help="with --fasta: the record's name (default: the first record)")
    parser.set_defaults(run=run_infill)


def run_infill(args: argparse.Namespace) -> int:
    if args.trajectory:
        _check_trajectory_path(args.trajectory)
    if args.fasta is not None and (args.template is not None or args.prefix or args.suffix or args.length):
        raise UsageError("give either --fasta/--region or --template or --prefix/--suffix/--length")
    if args.fasta is not None:
        return _infill_fasta(args)
    if args.region is not None or args.record is not None:  # they were ignored
        raise UsageError("--region and --record go with --fasta")
    if args.template is not None and (args.prefix or args.suffix or args.length is not None):
        raise UsageError("give either --template or --prefix/--suffix/--length, not both")
    if args.template is None:
        if args.length is None:
            raise UsageError("--length (unknown tokens between --prefix and --suffix) is required without --template")
        positive("--length", args.length)
    loaded = _load(args)
    tokenizer = loaded.tokenizer
    if loaded.objective.left_to_right and (args.template is not None or args.suffix):
        what = "an autoregressive" if loaded.kind == "autoregressive" else "a block diffusion"
        raise UsageError(
            f"{what} model generates left to right, so it can only continue a --prefix "
            "(no --suffix or --template); use a diffusion checkpoint without model.block_size to fill in text"
        )
    if args.template is not None:
        tokens, given = parse_template(args.template, tokenizer, _max_length(loaded))
    else:
        tokens, given = gap(args.prefix, args.length, args.suffix, tokenizer, _max_length(loaded))
    if loaded.kind == "diffusion" and loaded.graph.mask_id is None:
        print(
            "note: with the uniform graph, keeping given tokens fixed only approximates conditioning", file=sys.stderr
        )
    return _fill(args, loaded, tokens, given, {"given": given})


def _infill_fasta(args) -> int:
    loaded = _load(args)
    if loaded.tokenizer.kind != "dna" or loaded.objective.left_to_right:
        raise UsageError(
            "--fasta needs a DNA diffusion model that sees both sides of the region (data.tokenizer=dna, the "
            "diffusion objective without model.block_size)"
        )
    tokens, given, first = fasta_region(args, _max_length(loaded))
    window = {"window_start": first + 1, "window_end": first + len(tokens), "region": args.region}
    return _fill(args, loaded, tokens, given, window)


def _fill(args, loaded, tokens: list[int], given: list[bool], extra: dict) -> int:
    """Generate the positions not ``given``, keeping the given ``tokens``; write the samples and ``extra``."""
    token_tensor = torch.tensor(tokens, device=args.device).expand(args.num_samples, -1)
    mask = torch.tensor(given, device=args.device).expand(args.num_samples, -1)
    result, trajectory = _generate(args, loaded, len(tokens), condition=(token_tensor, mask))
    assert torch.equal(result[mask], token_tensor[mask])  # given tokens are never changed
    _write_trajectory(args, loaded, trajectory, mask[0])
    _emit(args, loaded, result, {**_record(args, loaded), **extra})
    return 0
