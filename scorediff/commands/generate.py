"""``scorediff sample`` and ``scorediff infill``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..generation import generate
from ..loading import load
from ..sampling import SAMPLERS
from ..sampling.options import APPROXIMATE_CACHES
from ..sampling.orders import ORDERS
from ..templates import gap, parse_template
from . import (
    UsageError,
    add_load_options,
    atomic_write,
    check_device,
    check_memory,
    check_writable,
    positive,
    seed_value,
)
from .infill_inputs import fasta_region
from .prompts import answer_all, answer_records, ends_answers, one_pattern_per_batch, read_prompts, wait_for_answers
from .sampling_options import flag_errors, sampling_options
from .trajectory import write_trajectory


def _common(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run directory, or Hub id org/name[@rev]")
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--steps", type=int, help="diffusion: sampling steps (default: the run's sampling.steps)")
    parser.add_argument(
        "--predictor",
        choices=list(SAMPLERS),
        help="diffusion: the step rule, or first_hitting (exact, one token per network call; absorbing graph)",
    )
    parser.add_argument("--temperature", type=float, help="> 0 (default: the run's sampling.temperature, 1)")
    parser.add_argument("--top-p", type=float, help="nucleus sampling, in (0, 1] (default: the run's, 1)")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute everything at every step (autoregressive: the whole prefix; diffusion: unchanged sequences)",
    )
    parser.add_argument(
        "--approximate-cache",
        choices=list(APPROXIMATE_CACHES),
        help="with --order, a time-independent absorbing model: Fast-dLLM's APPROXIMATE KV cache, prefix or dual "
        "(reuses keys computed before a block's tokens changed, so the tokens may differ from the exact decode)",
    )
    parser.add_argument(
        "--cache-block", type=int, help="with --approximate-cache: positions decoded per cache refresh (32)"
    )
    parser.add_argument("--greedy-tail", action="store_true", help="diffusion: the last step takes the likeliest token")
    parser.add_argument(
        "--order",
        choices=list(ORDERS),
        help="diffusion: random (the samplers; exact) or fill the positions the model is surest of first: "
        "confidence, margin or entropy (not samplers of the model's law)",
    )
    parser.add_argument("--tokens-per-step", type=int, help="with --order: positions filled per network call")
    parser.add_argument("--threshold", type=float, help="--order confidence: also fill every position this sure")
    parser.add_argument(
        "--sample-tokens", action="store_true", help="with --order: draw each token instead of taking the likeliest"
    )
    parser.add_argument(
        "--remask-rounds", type=int, help="with --order: rounds that refill the least sure filled positions"
    )
    parser.add_argument("--remask-tokens", type=int, help="with --remask-rounds: positions refilled per round (1)")
    parser.add_argument("--block", type=int, help="past the context: new tokens per window (default: half of it)")
    parser.add_argument(
        "--stats",
        action="store_true",
        help="print JSON on stderr: network calls per batch (nfe) and per sequence, steps, seconds, tokens/s",
    )
    parser.add_argument("--label", help="a conditional model's class, by the name it was trained with")
    parser.add_argument(
        "--guidance", type=float, help="classifier-free guidance weight with --label (0: the conditional model)"
    )
    parser.add_argument("--seed", type=seed_value, default=0)
    add_load_options(parser)
    parser.add_argument("--out", help="write to this file instead of printing")
    parser.add_argument("--format", choices=["text", "jsonl"], default="text")
    parser.add_argument("--trajectory", help="also write how the first sample is denoised: a .html or .png file")


def add_parsers(commands) -> None:
    parser = commands.add_parser("sample", help="generate text from a checkpoint")
    _common(parser)
    parser.add_argument("--length", type=int, help="tokens per sample (default: the model's length)")
    parser.add_argument(
        "--prompts", help="a JSONL file of 'prompt' records (or 'tokens'/'given'): one answer each, as JSONL"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="with --prompts: prompts per batch")
    parser.add_argument(
        "--end-anywhere",
        action="store_true",
        help="with --prompts and --order: commit the end token at any position, even before the answer is written",
    )
    parser.set_defaults(run=run_sample)

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


def _load(args):
    positive("--num-samples", args.num_samples)
    positive("--steps", args.steps)
    check_device(args.device)
    if args.out:
        check_writable(args.out)
    if args.trajectory:
        check_writable(args.trajectory)
    loaded = load(args.checkpoint, device=args.device, dtype=args.dtype)
    if loaded.tokenizer is None:
        raise UsageError(f"{loaded.path} has no tokenizer.json, so its tokens cannot be turned into text")
    return loaded


def _max_length(loaded) -> int:
    return loaded.model.config.seq_len


def _generate(args, loaded, length: int, condition=None) -> tuple[torch.Tensor, object]:
    """The samples and, with ``--trajectory``, how the first was denoised; ``--stats`` printed on stderr."""
    options = sampling_options(args, loaded)
    check_memory(estimate_bytes(loaded.model.config, args.num_samples, length, _steps(options, loaded)))
    shape = (args.num_samples, length)
    with flag_errors():  # what the objective refuses of the model, by the flag that asked for it
        drawn = generate(
            loaded.objective, loaded.model, shape, options, condition=condition, seed=args.seed, device=args.device
        )
    if args.stats:
        print(json.dumps(drawn.stats.to_dict()), file=sys.stderr)
    return drawn.tokens, drawn.trajectory


def estimate_bytes(model_config, num_samples: int, length: int, steps: int) -> int:
    """A generous estimate of what sampling allocates: float64 per-position distributions and scores of one
    window, the network's activations, the output and the time grid."""
    window = min(length, model_config.seq_len)
    distributions = 8 * 8 * num_samples * window * model_config.vocab_size
    activations = 4 * 16 * num_samples * window * model_config.hidden_size * max(1, model_config.mlp_ratio)
    return distributions + activations + 16 * num_samples * length + 32 * steps


def _steps(options, loaded) -> int:
    """The sampler steps the options ask of the model (none for an autoregressive one)."""
    return options.steps if "steps" in loaded.objective.option_fields else 0


def _record(args, loaded) -> dict:
    """What the JSONL output records about how the samples were drawn: the options the model reads, but where the
    windows start, whether states were kept and the hardware's bf16."""
    options = sampling_options(args, loaded)
    skipped = {"block", "trajectory", "bf16"}
    return {name: getattr(options, name) for name in options.__dataclass_fields__
            if name in loaded.objective.option_fields and name not in skipped}  # fmt: skip


def _emit(args, loaded, tokens: torch.Tensor, extra: dict) -> None:
    texts = [loaded.tokenizer.decode(row.tolist()) for row in tokens.cpu()]
    if args.format == "jsonl":
        lines = [json.dumps({"index": i, "text": t, "seed": args.seed, **extra}) for i, t in enumerate(texts)]
        output = "\n".join(lines) + "\n"
    else:
        output = "\n\n".join(
            texts if len(texts) == 1 else [f"--- sample {i + 1} ---\n{t}" for i, t in enumerate(texts)]
        )
        output += "\n"
    if args.out:
        atomic_write(args.out, output)
        print(f"wrote {len(texts)} sample(s) to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(output)


def _write_trajectory(args, loaded, trajectory, given=None) -> None:
    if not args.trajectory:
        return

    path = write_trajectory(args.trajectory, trajectory, loaded.tokenizer, loaded.graph.mask_id, given)
    print(f"wrote the denoising trajectory to {path}", file=sys.stderr)


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
    if not Path(args.prompts).is_file():
        raise UsageError(f"--prompts {args.prompts}: no such file")
    loaded = _load(args)
    length = min(args.length or _max_length(loaded), _max_length(loaded))
    records, tokens, given = read_prompts(args.prompts, loaded.tokenizer, length)
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


def run_infill(args: argparse.Namespace) -> int:
    if args.trajectory:
        _check_trajectory_path(args.trajectory)
    if args.fasta is not None and (args.template is not None or args.prefix or args.suffix or args.length):
        raise UsageError("give either --fasta/--region or --template or --prefix/--suffix/--length")
    if args.fasta is not None:
        return _infill_fasta(args)
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


def _check_trajectory_path(path: str) -> None:
    if not path.endswith((".html", ".png")):
        raise UsageError(f"--trajectory must name a .html or .png file; got {path!r}")
