"""The sampling options of ``scorediff sample`` and ``infill``: flags and the run's config to the keyword arguments of
``scorediff.generation.generate``, every mistake a one-line ``UsageError``."""

from __future__ import annotations

import math

from ..objectives import BlockDiffusionObjective
from . import UsageError, label_id, positive

DIFFUSION_FLAGS = {
    "--steps": "steps",
    "--predictor": "predictor",
    "--trajectory": "trajectory",
    "--greedy-tail": "greedy_tail",
    "--label": "label",
    "--guidance": "guidance",
    "--order": "order",
    "--tokens-per-step": "tokens_per_step",
    "--threshold": "threshold",
    "--sample-tokens": "sample_tokens",
    "--remask-rounds": "remask_rounds",
    "--remask-tokens": "remask_tokens",
}


def sampling_options(args, loaded) -> dict:
    """The sampling options for the checkpoint's kind; a diffusion-only flag on an autoregressive one is refused."""
    if loaded.kind == "autoregressive":
        for flag, name in DIFFUSION_FLAGS.items():
            if getattr(args, name):
                raise UsageError(f"{flag} applies to diffusion models; this checkpoint is autoregressive")
    sampling = loaded.config.sampling if loaded.config is not None else None
    temperature = args.temperature if args.temperature is not None else (sampling.temperature if sampling else 1.0)
    top_p = args.top_p if args.top_p is not None else (sampling.top_p if sampling else 1.0)
    if not 0 < temperature < math.inf:
        raise UsageError(f"--temperature must be finite and > 0; got {temperature}")
    if not 0 < top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1]; got {top_p}")
    positive("--block", args.block)
    options = {"temperature": temperature, "top_p": top_p, "block": args.block}
    if loaded.kind == "autoregressive":
        return {**options, "cache": not args.no_cache}
    if args.trajectory and left_to_right(loaded):
        raise UsageError("--trajectory draws one window at once; a block diffusion model fills one block at a time")
    predictor = args.predictor or (sampling.predictor if sampling else "analytic")
    if predictor == "first_hitting" and loaded.graph.mask_id is None:
        raise UsageError("--predictor first_hitting needs the absorbing graph; this model uses the uniform graph")
    return {
        **options,
        **_conditioning(args, loaded),
        **_order(args, loaded),
        "steps": args.steps or (sampling.steps if sampling else 128),
        "predictor": predictor,
        "cache": not args.no_cache,
        "greedy_tail": args.greedy_tail,
        "return_trajectory": bool(args.trajectory),
    }


def _order(args, loaded) -> dict:
    """``--order`` and its companions as sampling options (only those given, so a plain run is unchanged)."""
    positive("--tokens-per-step", args.tokens_per_step)
    positive("--remask-rounds", args.remask_rounds)
    positive("--remask-tokens", args.remask_tokens)
    adaptive = args.order not in (None, "random") or args.tokens_per_step or args.threshold is not None
    if not adaptive:
        for flag, given in (("--sample-tokens", args.sample_tokens), ("--remask-rounds", args.remask_rounds)):
            if given:
                raise UsageError(f"{flag} applies with --order confidence, margin or entropy")
        if args.remask_tokens:
            raise UsageError("--remask-tokens applies with --remask-rounds")
        return {}
    if args.remask_tokens and not args.remask_rounds:
        raise UsageError("--remask-tokens applies with --remask-rounds")
    context = loaded.model.config.seq_len
    if (args.remask_rounds or 0) > context:  # each round is a network call; more than one per position is waste
        raise UsageError(f"--remask-rounds must be at most the context, {context}; got {args.remask_rounds}")
    if loaded.graph.mask_id is None:
        raise UsageError("--order needs the absorbing graph (masks to fill); this model uses the uniform graph")
    if args.threshold is not None and (args.order != "confidence" or not 0 < args.threshold <= 1):
        raise UsageError(f"--threshold applies with --order confidence, in (0, 1]; got {args.threshold}")
    return {
        "order": args.order or "random",
        "tokens_per_step": args.tokens_per_step,
        "threshold": args.threshold,
        "greedy": not args.sample_tokens,
        "remask_rounds": args.remask_rounds or 0,
        "remask_tokens": args.remask_tokens or 1,
    }


def _conditioning(args, loaded) -> dict:
    """``--label`` as the model's label id, and ``--guidance``; both checked against what the model knows."""
    if args.guidance is not None and args.label is None:
        raise UsageError("--guidance needs --label (the class to guide towards)")
    if args.label is None:
        return {}
    label = label_id(loaded, args.label)
    guidance = 0.0 if args.guidance is None else args.guidance
    if not math.isfinite(guidance):
        raise UsageError(f"--guidance must be a finite number; got {guidance}")
    return {"label": label, "guidance": guidance}


def left_to_right(loaded) -> bool:
    """Whether the model generates left to right (autoregressive, or block diffusion), so it sees no suffix."""
    return loaded.kind == "autoregressive" or isinstance(loaded.objective, BlockDiffusionObjective)
