"""``scorediff eval`` (likelihood bound with a confidence interval) and ``scorediff info``."""

from __future__ import annotations

import argparse
import json
import math

import torch

from ..data.chat import reads_own_bos
from ..data.examples import example_format, read_examples
from ..data.sources import DataError, iter_text
from ..data.windows import spread_indices
from ..data.zero_shot import CONVENTIONS, ZERO_SHOT, zero_shot_rows, zero_shot_windows
from ..loading import load
from ..model import training_flops_per_token
from ..training.distributed import DistInfo
from ..training.evaluate import nats_per_window
from ..training.setup import prepare_data
from . import (
    UsageError,
    add_load_options,
    atomic_write,
    check_device,
    check_output,
    positive,
    seed_value,
)


def add_parsers(commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="score held-out text: perplexity and bits per token (a bound for diffusion, exact for autoregressive)",
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run directory, or Hub id org/name[@rev]")
    parser.add_argument("--data", help="text to score (default: the run's own validation split)")
    parser.add_argument("--dataset", help=f"a dataset of the papers' zero-shot table: {', '.join(ZERO_SHOT)}")
    parser.add_argument("--split", help="--dataset: the split to score (default: test)")
    parser.add_argument("--dataset-path", help="--dataset: a save_to_disk copy to read instead of the Hub")
    parser.add_argument(
        "--chunking", choices=CONVENTIONS, default="sedd", help="--dataset: SEDD's windows (default) or MDLM's"
    )
    parser.add_argument("--num-t", type=int, default=32, help="diffusion: Monte Carlo times per window")
    parser.add_argument(
        "--max-windows", type=int, help="windows to score, spread out (0: all; default 256, all of a --dataset)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=seed_value, default=0)
    add_load_options(parser)
    parser.add_argument("--raw-weights", action="store_true", help="score the trained weights, not their EMA")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.set_defaults(run=run_eval)

    parser = commands.add_parser("info", help="what a checkpoint holds")
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run directory, or Hub id org/name[@rev]")
    parser.add_argument("--json", action="store_true", help="print everything as JSON")
    parser.set_defaults(run=run_info)


def _windows(args, loaded) -> dict[str, torch.Tensor]:
    """``x_0``: the windows to score, int64 (N, L); ``label``: their labels (N,), when the run's data has them."""
    seq_len = loaded.model.config.seq_len
    limit = args.max_windows or None
    if args.dataset is not None:
        windows = _zero_shot(args, loaded, seq_len)
        return {"x_0": windows[spread_indices(len(windows), limit)]}
    if args.data is None:
        if loaded.config is None:
            raise UsageError("this checkpoint records no training data; pass --data")
        try:  # the run's own validation split, read as it was trained: text or DNA shards, labels included
            return prepare_data(loaded.config, DistInfo(), loaded.path).val.spread_examples(limit)
        except (DataError, ValueError) as error:
            raise UsageError(str(error)) from None
    if example_format(args.data):  # prompted examples: the answers are scored given their prompts
        try:
            reads_bos = reads_own_bos(loaded.kind, loaded.model.config)
            tokens, given = read_examples(args.data, loaded.tokenizer, seq_len, reads_bos)
        except DataError as error:
            raise UsageError(str(error)) from None
        picked = spread_indices(len(tokens), limit)
        return {"x_0": tokens[picked], "given": given[picked]}
    tokens: list[int] = []
    needed = None if limit is None else limit * seq_len
    for piece in iter_text(args.data, loaded.config.data.text_field if loaded.config else "text"):
        if piece is None:
            continue
        try:
            tokens += loaded.tokenizer.encode(piece)
        except ValueError as error:
            raise UsageError(f"{args.data}: {error}") from None
        if needed is not None and len(tokens) >= needed:
            break
    count = len(tokens) // seq_len if needed is None else min(limit, len(tokens) // seq_len)
    if count == 0:
        raise UsageError(f"{args.data} has {len(tokens)} tokens; need at least the model's length {seq_len}")
    return {"x_0": torch.tensor(tokens[: count * seq_len]).view(count, seq_len)}


def _zero_shot(args, loaded, seq_len: int) -> torch.Tensor:
    """The windows of a dataset of the papers' zero-shot table, tokenised by the model's tokenizer."""
    if loaded.tokenizer is None:
        raise UsageError(f"{loaded.path} has no tokenizer, so --dataset text cannot be tokenised")
    rows = zero_shot_rows(args.dataset, args.split, args.dataset_path)
    try:
        windows = zero_shot_windows(rows, loaded.tokenizer.encode, loaded.tokenizer.separator, seq_len, args.chunking)
    except ValueError as error:
        raise UsageError(f"{args.dataset}: {error}") from None
    return windows


def _described(args) -> str:
    if args.dataset:
        return f"{args.dataset} {args.split or ZERO_SHOT[args.dataset].split} ({args.chunking} windows)"
    return args.data or "validation split"


def _nats(args, loaded, windows: torch.Tensor, labels: torch.Tensor | None, given: torch.Tensor | None) -> torch.Tensor:
    """Nats per window, given each window's label when ``labels`` (int64 (N,)) are passed, and of the positions
    not ``given`` (bool (N, L)) given the others."""
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    score = (loaded.objective, loaded.model, windows, generator, args.num_t, args.batch_size, args.device, labels)
    return nats_per_window(*score, given=given).cpu()


def run_eval(args: argparse.Namespace) -> int:
    if args.dataset is not None and args.data is not None:
        raise UsageError("give either --data or --dataset, not both")
    if args.dataset is None and (args.split or args.dataset_path or args.chunking != "sedd"):
        raise UsageError("--split, --dataset-path and --chunking go with --dataset")
    if args.max_windows is None:
        args.max_windows = 0 if args.dataset else 256
    positive("--num-t", args.num_t)
    positive("--batch-size", args.batch_size)
    positive("--max-windows", args.max_windows, allow_zero=True)
    check_device(args.device)
    check_output("--json", args.json, "results", {"--data": args.data, "--checkpoint": args.checkpoint})
    loaded = load(args.checkpoint, device=args.device, ema=not args.raw_weights, dtype=args.dtype)
    if loaded.tokenizer is None and args.data is not None:
        raise UsageError(f"{loaded.path} comes without a tokenizer, so --data text cannot be tokenised")
    examples = _windows(args, loaded)
    windows, objective = examples["x_0"], loaded.objective
    # a conditional diffusion model is scored given each window's label (as eval-dna does)
    conditional = "label" in examples and loaded.kind == "diffusion" and loaded.model.config.num_labels > 0
    given = examples.get("given")
    nats = _nats(args, loaded, windows, examples["label"] if conditional else None, given)
    seq_len = windows.shape[1]
    scored = torch.full((len(windows),), seq_len) if given is None else (~given).sum(-1)  # (N,) tokens scored
    mean = float(nats.sum() / scored.sum())  # nats per scored token
    residual = (nats - mean * scored) / scored.double().mean()  # the ratio's delta-method terms
    half_width = 1.96 * float(residual.std()) / math.sqrt(len(nats)) if len(nats) > 1 else float("nan")
    answers = windows if given is None else [row[~known] for row, known in zip(windows, given, strict=True)]
    text = loaded.tokenizer is not None and loaded.tokenizer.kind != "integer"  # token ids have no characters
    chars = sum(len(loaded.tokenizer.decode(row.tolist())) for row in answers) if text else None
    result = {
        "checkpoint": str(loaded.path),
        "data": _described(args),
        "kind": loaded.kind,
        "exact": objective.exact,
        "windows": len(windows),
        "tokens": int(scored.sum()),
        "prompted": given is not None,
        "num_t": None if objective.exact else args.num_t,
        "conditional": conditional,
        "weights": loaded.weights,
        "nats_per_token": mean,
        "nats_per_token_ci95": [mean - half_width, mean + half_width],
        "bits_per_token": mean / math.log(2),
        "bits_per_token_ci95": [(mean - half_width) / math.log(2), (mean + half_width) / math.log(2)],
        "perplexity": math.exp(mean),
        "perplexity_ci95": [math.exp(mean - half_width), math.exp(mean + half_width)],
    }
    if chars:
        bits_per_char = float(nats.sum()) / chars / math.log(2)
        scale = bits_per_char / result["bits_per_token"]
        result["bits_per_char"] = bits_per_char
        result["bits_per_char_ci95"] = [v * scale for v in result["bits_per_token_ci95"]]
    if objective.exact:
        how, relation = "exact negative log-likelihood; 95% confidence intervals over windows", "="
    else:
        how = f"{args.num_t} times each (upper bounds; 95% confidence intervals over windows and Monte Carlo draws)"
        relation = "<="
    condition = ", each given its label" if conditional else ""
    if given is not None:
        condition = f", {result['tokens']} answer tokens given their prompts"
    weights = f", {result['weights']} weights" if result["weights"] != "as stored" else ""
    print(f"{result['windows']} windows x {seq_len} tokens of {result['data']}{condition}{weights}, {how}")
    low, high = result["perplexity_ci95"]
    print(f"perplexity      {relation} {result['perplexity']:.3f}  [{low:.3f}, {high:.3f}]")
    low, high = result["bits_per_token_ci95"]
    print(f"bits per token  {relation} {result['bits_per_token']:.4f}  [{low:.4f}, {high:.4f}]")
    if "bits_per_char" in result:
        low, high = result["bits_per_char_ci95"]
        print(f"bits per char   {relation} {result['bits_per_char']:.4f}  [{low:.4f}, {high:.4f}]")
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=2) + "\n")
    return 0


def run_info(args: argparse.Namespace) -> int:
    loaded = load(args.checkpoint, device="meta")  # the facts need no weights: an 8B model's need no 32 GB
    info = {
        "checkpoint": str(loaded.path),
        "source": loaded.source,
        "layout": loaded.layout,
        "kind": loaded.kind,
        "block_size": getattr(loaded.model.config, "block_size", 0) or None,
        "step": loaded.step,
        "parameters": loaded.model.num_parameters(),
        "training_flops_per_token": training_flops_per_token(loaded.model),
        "graph": repr(loaded.graph) if loaded.graph is not None else None,
        "schedule": repr(loaded.schedule) if loaded.schedule is not None else None,
        "tokenizer": repr(loaded.tokenizer) if loaded.tokenizer else None,
        "validation_bits_per_token": loaded.info.get("val_bits_per_token"),
        "validation_exact": loaded.objective.exact,
        "tokens_seen": loaded.info.get("tokens_seen"),
        "model": vars(loaded.model.config),
        "config": loaded.config.to_dict() if loaded.config else None,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key in (
        "checkpoint",
        "source",
        "layout",
        "kind",
        "block_size",
        "step",
        "parameters",
        "training_flops_per_token",
        "graph",
        "schedule",
        "tokenizer",
        "validation_bits_per_token",
        "tokens_seen",
    ):
        value = info[key]
        if key in ("parameters", "training_flops_per_token"):
            value = f"{value:,.0f}"
        elif isinstance(value, float):
            value = f"{value:.4f}"
        if value is not None or key not in ("graph", "schedule", "block_size"):
            print(f"{key:26s} {value}")
    print("model".ljust(26), ", ".join(f"{k}={v}" for k, v in info["model"].items()))
    if loaded.config is not None:
        sections = ["data", "diffusion", "optim", "train", "sampling"]
        if loaded.kind != "diffusion":
            sections.remove("diffusion")
        for section in sections:
            values = info["config"][section]
            print(section.ljust(26), ", ".join(f"{k}={v}" for k, v in values.items()))
    return 0
