"""What ``scorediff sample`` and ``scorediff infill`` share: their common flags, loading the model, drawing the
samples and writing them (``sample_cmd`` and ``infill_cmd`` add the two commands)."""

from __future__ import annotations

import json
import os
import sys

import torch

from ..generation import generate
from ..loading import load
from ..sampling import SAMPLERS
from ..sampling.options import APPROXIMATE_CACHES
from ..sampling.orders import ORDERS
from . import (
    UsageError,
    add_load_options,
    atomic_write,
    check_device,
    check_memory,
    check_output,
    positive,
    seed_value,
)
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
    parser.add_argument(
        "--greedy", action="store_true", help="autoregressive: take the likeliest token instead of drawing one"
    )
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


def _load(args):
    positive("--num-samples", args.num_samples)
    positive("--steps", args.steps)
    check_device(args.device)
    inputs = {"--checkpoint": args.checkpoint, "--prompts": getattr(args, "prompts", None),
              "--fasta": getattr(args, "fasta", None)}  # fmt: skip
    if args.out and args.trajectory and os.path.realpath(args.out) == os.path.realpath(args.trajectory):
        raise UsageError(f"--out and --trajectory both name {args.out}; give each its own file")
    check_output("--out", args.out, "answers" if inputs["--prompts"] else "samples", inputs)
    check_output("--trajectory", args.trajectory, "trajectory", inputs)
    loaded = load(args.checkpoint, device=args.device, dtype=args.dtype)
    if loaded.tokenizer is None:
        raise UsageError(f"{loaded.path} comes without a tokenizer, so its tokens cannot be turned into text")
    return loaded


def _max_length(loaded) -> int:
    return loaded.model.config.seq_len


def _generate(args, loaded, length: int, condition=None, options=None) -> tuple[torch.Tensor, object]:
    """The samples and, with ``--trajectory``, how the first was denoised; ``--stats`` printed on stderr.
    ``options``: the flags' ``sampling_options`` when None."""
    options = options or sampling_options(args, loaded)
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


def _check_trajectory_path(path: str) -> None:
    if not path.endswith((".html", ".png")):
        raise UsageError(f"--trajectory must name a .html or .png file; got {path!r}")
