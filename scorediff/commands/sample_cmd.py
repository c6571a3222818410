"""``scorediff sample``: samples of the model, or with ``--prompts`` one answer per prompt."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..data.chat import reads_own_bos
from ..generation import generate
from . import UsageError, atomic_write, check_memory, positive
from .generate import (
    _check_trajectory_path,
    _common,
    _emit,
    _generate,
    _load,
    _max_length,
    _record,
    _steps,
    _write_trajectory,
    estimate_bytes,
)
from .prompts import answer_all, answer_records, ends_answers, one_pattern_per_batch, read_prompts, wait_for_answers
from .sampling_options import flag_errors, sampling_options


def add_parser(commands) -> None:
    parser = commands.add_parser("sample", help="generate text from a checkpoint")
    _common(parser)
    parser.add_argument("--length", type=int, help="tokens per sample (default: the model's length)")
    parser.add_argument(
        "--prompts",
        help="a JSONL file of 'prompt' records (or 'tokens'/'given', or 'messages' through the model's chat "
        "template): one answer each, as JSONL",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="with --prompts: prompts per batch")
    parser.add_argument(
        "--end-anywhere",
        action="store_true",
        help="with --prompts and --order: commit the end token at any position, even before the answer is written",
    )
    parser.set_defaults(run=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    if args.trajectory:
        _check_trajectory_path(args.trajectory)
    positive("--length", args.length)
    positive("--batch-size", args.batch_size)
    if args.prompts is not None:
        return _answer_prompts(args)
    if args.end_anywhere:
        raise UsageError("--end-anywhere applies with --prompts (answers that end at the end token)")
    loaded = _load(args)
    length = args.length or (loaded.config.sampling.length if loaded.config else 0) or _max_length(loaded)
    if length > _max_length(loaded) and args.trajectory:
        raise UsageError(
            f"--trajectory draws one window of at most {_max_length(loaded)} tokens; got --length {length}"
        )
    tokens, trajectory = _generate(args, loaded, length)
    _write_trajectory(args, loaded, trajectory)
    _emit(args, loaded, tokens, _record(args, loaded))
    return 0


def _answer_prompts(args) -> int:
    """``--prompts``: one answer per record, written as JSONL."""
    if args.trajectory:
        raise UsageError("--trajectory follows one sample; it does not apply with --prompts")
    if args.num_samples != 1:  # it was silently one answer per prompt
        raise UsageError(
            f"--num-samples applies without --prompts; with it each record gets one answer (repeat a record for more); "
            f"got --num-samples {args.num_samples}"
        )
    if not Path(args.prompts).is_file():
        raise UsageError(f"--prompts {args.prompts}: no such file")
    loaded = _load(args)
    length = min(args.length or _max_length(loaded), _max_length(loaded))
    reads_bos = reads_own_bos(loaded.kind, loaded.model.config)
    records, tokens, given = read_prompts(args.prompts, loaded.tokenizer, length, reads_bos)
    options = wait_for_answers(sampling_options(args, loaded), loaded, args.end_anywhere)
    check_memory(estimate_bytes(loaded.model.config, args.batch_size, length, _steps(options, loaded)))
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    costs = []

    def fill(rows: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        condition = (rows.to(args.device), known.to(args.device))
        drawn = generate(
            loaded.objective, loaded.model, tuple(rows.shape), options, condition=condition, generator=generator,
            device=args.device,
        )  # fmt: skip
        costs.append(drawn.stats)
        return drawn.tokens

    with flag_errors():
        filled = answer_all(fill, tokens, given, args.batch_size, one_pattern_per_batch(loaded.objective))
    if args.stats:
        print(json.dumps(_prompt_stats(costs, length)), file=sys.stderr)
    output = answer_records(records, loaded.tokenizer, filled.cpu(), given, ends_answers(loaded))
    if args.out:
        atomic_write(args.out, output)
        print(f"wrote {len(records)} answer(s) to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(output)
    return 0


def _prompt_stats(costs: list, length: int) -> dict:
    """What answering cost, over its batches: ``nfe`` the network calls of every batch together, ``batches`` and
    ``nfe_per_sequence`` the mean over the prompts of the calls each took part in (batches of ``length``)."""
    total = {key: sum(getattr(cost, key) for cost in costs) for key in ("nfe", "steps", "seconds", "tokens")}
    rows = [cost.tokens // length for cost in costs]
    per_sequence = sum(cost.nfe_per_sequence * count for cost, count in zip(costs, rows, strict=True))
    return {
        **total,
        "batches": len(costs),
        "nfe_per_sequence": per_sequence / max(sum(rows), 1),
        "tokens_per_second": total["tokens"] / max(total["seconds"], 1e-12),
    }
