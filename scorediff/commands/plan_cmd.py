"""``scorediff plan``: memory per GPU and time to the token budget of a run, before renting the GPUs."""

from __future__ import annotations

import argparse
import json

import torch

from ..builders import build_model, build_objective
from ..config import RunConfig, load_config
from ..data.prepare import build_tokenizer
from ..data.tokenizers import ByteTokenizer, DnaTokenizer
from ..placement import empty_network
from ..training.distributed import DistInfo
from ..training.gpus import GPUS
from ..training.lora import inject, require_peft
from ..training.plan import Plan, make_plan
from ..training.setup import check_batch, data_tokens, initial_weights, load_initial
from . import UsageError, add_run_config_option, atomic_write, check_output

GPT2_VOCAB = 50257
"""GPT-2's vocabulary: 50,256 byte-level BPE tokens and ``<|endoftext|>`` (its encoder.json)."""
GIB = 2**30
MIN_MFU = 0.001
"""The lowest model-FLOPs utilisation ``plan`` takes; below it no run is planned, and its time overflows."""


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "plan",
        help="memory per GPU (DDP and FSDP) and time to the token budget of a run, without running it",
        description="Build the run's network on the meta device and report parameters, FLOPs per token, memory per "
        "GPU and the time to train.max_steps x batch_size x seq_len tokens. Options as for train: "
        "--section.key=value.",
    )
    add_run_config_option(parser)
    parser.add_argument("--gpus", type=int, default=1, help="GPUs in the run (the world size)")
    parser.add_argument("--gpu", default="h100", help=f"one of {', '.join(GPUS)}")
    parser.add_argument("--mfu", type=float, default=0.4, help="model-FLOPs utilisation assumed, from 0.001 to 1")
    parser.add_argument("--vocab-size", type=int, help="data tokens of the tokenizer, instead of learning it")
    parser.add_argument("--json", metavar="PATH", help="also write the plan as JSON to PATH")
    parser.set_defaults(run=run, accepts_overrides=True)


def vocab_size(config: RunConfig) -> int:
    """The data tokens of the run's tokenizer: fixed for byte, dna and gpt2, ``data.bpe_vocab_size`` (at most) for a
    BPE not yet learnt; a char alphabet, a saved tokenizer or a file of token ids is read as ``train`` reads it."""
    name = config.data.tokenizer
    fixed = {"byte": ByteTokenizer().vocab_size, "dna": DnaTokenizer.vocab_size, "gpt2": GPT2_VOCAB}
    if name in fixed:
        return fixed[name]
    if name == "bpe":
        return config.data.bpe_vocab_size
    data = config.data
    return build_tokenizer(name, data.source, data.text_field, data.bpe_vocab_size, data.num_tokens).vocab_size


def meta_network(config: RunConfig, num_tokens: int, initial=None) -> torch.nn.Module:
    """The run's network as the trainer builds it (``setup.build``, then ``lora.attach`` for a LoRA run: only the
    adapters train), its tensors on the meta device: shapes only. ``initial``, the ``train.init`` model read on the
    meta device, is checked to fit it as the trainer checks it, before any adapter is added."""
    model = empty_network(build_model, config, build_objective(config, num_tokens))
    if initial is not None:
        initial_weights(initial.model, model, config.train.init)
    if config.train.lora_rank:
        require_peft(config)
        with torch.device("meta"):
            inject(model, config)
    return model


def _check(args: argparse.Namespace) -> None:
    if args.gpu not in GPUS:
        raise UsageError(f"unknown --gpu {args.gpu!r}; known: {', '.join(GPUS)}")
    if args.gpus < 1:
        raise UsageError(f"--gpus must be >= 1; got {args.gpus}")
    if not 0 < args.mfu <= 1:
        raise UsageError(f"--mfu must be in (0, 1]; got {args.mfu}")
    if args.mfu < MIN_MFU:  # 5e-324 made the time infinite, written to --json as Infinity, which is not JSON
        raise UsageError(f"--mfu must be at least {MIN_MFU} (0.1% of the peak); got {args.mfu}")
    if args.vocab_size is not None and args.vocab_size < 2:
        raise UsageError(f"--vocab-size must be >= 2; got {args.vocab_size}")


def _check_output(path: str | None, config: str, initial) -> None:
    """``--json`` may not replace what the plan reads: the ``--config`` file, or the ``train.init`` model (a file of
    a model folder never is written)."""
    check_output("--json", path, "figures", {"--config": config, "train.init": initial.path if initial else None})


def run(args: argparse.Namespace) -> int:
    _check(args)
    config = load_config(args.config, list(args.overrides))
    check_batch(config, DistInfo(world_size=args.gpus))
    initial = load_initial(config.train.init, device="meta") if config.train.init else None
    _check_output(args.json, args.config, initial)
    num_tokens = args.vocab_size or data_tokens(None, initial) or vocab_size(config)  # as train counts them
    model = meta_network(config, num_tokens, initial)
    plan = make_plan(model, config, args.gpus, GPUS[args.gpu], args.mfu)
    if args.json:
        atomic_write(args.json, json.dumps(plan.to_dict(), indent=2) + "\n")
    print(report(plan))
    return 0


def _gib(count: int) -> str:
    return f"{count / GIB:9.2f} GiB"


def report(plan: Plan) -> str:
    """The plan as the lines ``scorediff plan`` prints."""
    gpu, ddp, fsdp = plan.gpu, plan.ddp, plan.fsdp
    lines = [
        f"parameters: {plan.parameters:,} ({plan.trainable_parameters:,} trainable); "
        f"{plan.flops_per_token / 1e9:.3f} GFLOPs per token of a training step",
        f"{plan.gpus} x {gpu.name} ({gpu.bf16_tflops:g} TFLOP/s dense bf16, {gpu.memory_gb:g} GB); micro-batch "
        f"{plan.micro_batch} x {plan.seq_len} tokens per GPU, {plan.compute_dtype} compute",
        f"memory per GPU              {'DDP':>13} {'FSDP (formula)':>15}",
    ]
    for field in ("weights", "gradients", "optimizer", "ema", "buffers", "compute_copies", "ddp_buckets"):
        lines.append(f"  {field:25s} {_gib(getattr(ddp.state, field))} {_gib(getattr(fsdp.state, field))}")
    lines += [
        f"  {'activations':25s} {_gib(ddp.activations)} {_gib(fsdp.activations)}",
        f"  {'total':25s} {_gib(ddp.total)} {_gib(fsdp.total)}",
        f"  {'total, checkpointed':25s} {_gib(ddp.total_checkpointed)} {_gib(fsdp.total_checkpointed)}"
        f"   (activation checkpointing per block)",
    ]
    capacity = gpu.memory_gb * 1e9
    fits = {name: ("fits" if total <= capacity else "does not fit") for name, total in
            (("DDP", ddp.total), ("DDP checkpointed", ddp.total_checkpointed), ("FSDP", fsdp.total))}  # fmt: skip
    lines.append("  " + "; ".join(f"{name} {verdict}" for name, verdict in fits.items()) + f" in {gpu.memory_gb:g} GB")
    hours = plan.seconds / 3600
    lines += [
        f"time to {plan.tokens:,} tokens at {plan.mfu:.0%} MFU: {hours:,.1f} hours ({hours / 24:,.2f} days), "
        f"{plan.gpus * hours:,.0f} GPU-hours",
        "FSDP figures are the formula (FSDP2 shards weights, gradients, optimizer and EMA by N); "
        "train.parallel=fsdp trains so under torchrun",
    ]
    return "\n".join(lines)
