"""The checks of ``benchmarks/gpu_check.py`` that run scorediff, one function each: ``check(ctx) -> dict`` of what it
found (``gpu_device.py`` holds those of the device and torch alone).

Every training measurement runs the trainer's own code (``training.step.new_state`` and ``train_step``: forward,
loss, backward, clipping, AdamW, EMA) on the ``small`` preset's network (or the micro sizes of ``--cpu-smoke``), at
a micro-batch that fits one device; the batches are drawn by the objective as the trainer draws them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch

from scorediff.builders import build_model, build_objective
from scorediff.commands.plan_cmd import meta_network
from scorediff.config import RunConfig, load_config
from scorediff.devices import fast_bf16
from scorediff.model.flops import training_flops_per_token
from scorediff.sampling.options import SamplingOptions
from scorediff.training import fsdp
from scorediff.training.distributed import DistInfo
from scorediff.training.gpus import GPUS
from scorediff.training.plan import make_plan
from scorediff.training.step import new_state, train_step

MICRO = ("model.hidden_size=32", "model.n_heads=4", "model.n_blocks=2", "model.seq_len=32", "model.cond_dim=16",
         "model.dropout=0")  # fmt: skip
"""--cpu-smoke's network. No dropout: a CPU attends with dropout through the math kernel, whose saved probabilities
the plan does not count (``training.activations``)."""


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is: the ``small`` preset as it is, ``--quick``, or ``--cpu-smoke``'s micro net."""

    overrides: tuple[str, ...]
    micro_batch: int
    vocab: int
    warmup: int
    steps: int
    sample_steps: int
    sample_batches: tuple[int, ...]


SIZES = {
    "full": Sizes((), 8, 50257, 3, 10, 128, (1, 8)),
    "quick": Sizes(("model.seq_len=256",), 4, 50257, 1, 3, 32, (1, 8)),
    "cpu-smoke": Sizes(MICRO, 2, 61, 1, 2, 4, (1, 2)),
}


@dataclass
class Context:
    """What the checks share: the device, the sizes, the GPU's entry in ``training.gpus`` and earlier results."""

    device: torch.device
    sizes: Sizes
    gpu: str | None
    results: dict = field(default_factory=dict)


def run_config(ctx: Context, preset: str = "small", extra: tuple[str, ...] = (), **train) -> RunConfig:
    """``preset`` at the check's sizes: one micro-batch per step, one process, bf16 unless told; ``extra``
    overrides last."""
    values = {"batch_size": ctx.sizes.micro_batch, "grad_accum": 1, "compile": False, "bf16": True, **train}
    overrides = [f"train.{key}={str(value).lower()}" for key, value in values.items()]
    return load_config(preset, [*ctx.sizes.overrides, *overrides, *extra])


def make_state(ctx: Context, config: RunConfig):
    """A fresh training state of ``config`` on the device, its weights seeded; FSDP shards here when asked."""
    objective = build_objective(config, ctx.sizes.vocab)
    torch.manual_seed(0)
    model = build_model(config, objective)
    config = dataclasses.replace(config, model=model.config)
    return new_state(config, objective, model, ctx.device, DistInfo())


def batches(ctx: Context, state, count: int) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    x_0 = torch.randint(0, ctx.sizes.vocab, (ctx.sizes.micro_batch, state.config.model.seq_len), generator=generator)
    drawn = [state.objective.draw(x_0, generator) for _ in range(count)]
    return [{key: value.to(ctx.device) for key, value in batch.items()} for batch in drawn]


def sync(ctx: Context) -> None:
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_step(ctx: Context, state, steps: list[dict]) -> float:
    sync(ctx)
    start = time.perf_counter()
    for batch in steps:
        train_step(state, batch)
    sync(ctx)
    return (time.perf_counter() - start) / len(steps)


def compile_speedup(ctx: Context) -> dict:
    """``torch.compile`` of the network (``train.compile``): the first step's time (compilation), then a training
    step compiled against eager, bf16 both, on the same batches."""
    found, steps = {}, None
    for name, compiled in (("eager", False), ("compiled", True)):
        state = make_state(ctx, run_config(ctx, compile=compiled))
        steps = steps or batches(ctx, state, ctx.sizes.steps)
        sync(ctx)
        start = time.perf_counter()
        train_step(state, steps[0])
        sync(ctx)
        found[f"{name}_first_step_seconds"] = time.perf_counter() - start
        found[f"{name}_step_seconds"] = seconds_per_step(ctx, state, steps)
        del state
    torch._dynamo.reset()  # the compiled graphs go with the state
    found["compile_seconds"] = found["compiled_first_step_seconds"] - found["eager_step_seconds"]
    found["speedup"] = found["eager_step_seconds"] / found["compiled_step_seconds"]
    return found


def throughput(ctx: Context) -> dict:
    """Training tokens per second and model-FLOPs utilisation: FLOPs per token (``model.flops``) x tokens/s over
    the GPU's dense bf16 peak (``training.gpus``); eager here, compiled from the ``compile`` check when it ran."""
    state = make_state(ctx, run_config(ctx))
    steps = batches(ctx, state, ctx.sizes.warmup + ctx.sizes.steps)
    seconds_per_step(ctx, state, steps[: ctx.sizes.warmup])
    step_seconds = {"eager": seconds_per_step(ctx, state, steps[ctx.sizes.warmup :])}
    compiled = ctx.results.get("compile", {})
    if "compiled_step_seconds" in compiled:
        step_seconds["compiled"] = compiled["compiled_step_seconds"]
    tokens = ctx.sizes.micro_batch * state.config.model.seq_len
    flops = training_flops_per_token(state.model)
    peak = GPUS[ctx.gpu].bf16_tflops * 1e12 if ctx.gpu else None
    found = {"tokens_per_step": tokens, "flops_per_token": flops, "peak_bf16_flops": peak, "variants": {}}
    for name, seconds in step_seconds.items():
        rate = tokens / seconds
        mfu = flops * rate / peak if peak else None
        found["variants"][name] = {"step_seconds": seconds, "tokens_per_second": rate, "mfu": mfu}
    return found


def _counted_bytes(state, batch: dict) -> int:
    """Without CUDA's allocator: the bytes of the state's tensors after a step and of what one forward saves for
    the backward (distinct storages), the quantities ``plan`` predicts."""
    tensors = [*state.model.parameters(), *state.model.buffers(), *state.ema.state_dict(state.model).values()]
    tensors += [v for per in state.optimizer.state.values() for v in per.values() if torch.is_tensor(v)]
    held = sum(t.numel() * t.element_size() for t in tensors) + sum(4 * p.numel() for p in state.model.parameters())
    own, seen = {t.untyped_storage().data_ptr() for t in tensors}, {}

    def pack(tensor):
        if tensor.untyped_storage().data_ptr() not in own:
            seen.setdefault(tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), state.autocast:
        state.objective.loss(state.network, batch)
    return held + sum(seen.values())


def memory(ctx: Context) -> dict:
    """The peak memory of a training step (``torch.cuda.max_memory_allocated``, after a first step made AdamW's
    state) against ``training.plan``'s DDP total for the same configuration on one GPU. bf16 on a GPU; float32 on
    the CPU, where a bf16 step attends explicitly (``model.attention``), not through the kernel the plan counts."""
    config = run_config(ctx, bf16=ctx.device.type == "cuda" and fast_bf16(ctx.device))
    gpu = GPUS[ctx.gpu or "h100"]
    plan = make_plan(meta_network(config, ctx.sizes.vocab), config, 1, gpu, 0.4)
    before = torch.cuda.memory_allocated(ctx.device) if ctx.device.type == "cuda" else 0
    state = make_state(ctx, config)
    steps = batches(ctx, state, 2)
    train_step(state, steps[0])
    if ctx.device.type == "cuda":
        sync(ctx)
        torch.cuda.reset_peak_memory_stats(ctx.device)
        train_step(state, steps[1])
        measured = torch.cuda.max_memory_allocated(ctx.device) - before
        how = "torch.cuda.max_memory_allocated, less what was allocated before the state was built"
    else:
        measured, how = _counted_bytes(state, steps[1]), "counted tensors (no CUDA allocator)"
    planned = plan.ddp.total
    return {"measured_bytes": measured, "measured_by": how, "planned_bytes": planned,
            "planned_state_bytes": plan.ddp.state.total, "planned_activation_bytes": plan.ddp.activations,
            "measured_over_planned": measured / planned}  # fmt: skip


def fsdp_one_gpu(ctx: Context) -> dict:
    """FSDP2 on one device: the trainer's own ``new_state`` (``fsdp.shard``: ``fully_shard`` per block and at the
    root, bf16 policy) and ``train_step`` in the one-process group of ``process_group``. ``fsdp.check_parallel``,
    which refuses ``train.parallel=fsdp`` on one process, is not called. Losses against the unsharded step's
    (dropout off, same batches)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        raise RuntimeError("no process group (the process_group check did not start one)")
    losses = {}
    for parallel in ("ddp", "fsdp"):
        state = make_state(ctx, run_config(ctx, extra=("model.dropout=0",), parallel=parallel))
        losses[parallel] = [float(train_step(state, batch).loss) for batch in batches(ctx, state, ctx.sizes.steps)]
        if parallel == "fsdp":
            found = {"sharded": all(hasattr(p, "to_local") for p in state.model.parameters())}
            # a step frees its gradients (zero_grad(set_to_none=True)): one more backward holds them to be counted
            state.objective.loss(state.network, batches(ctx, state, 1)[0]).mean().backward()
            found["local_state_bytes"] = fsdp.state_bytes(state.model, state.optimizer)
        del state
    gap = max(abs(a - b) / abs(b) for a, b in zip(losses["fsdp"], losses["ddp"], strict=True))
    method = "training.step.new_state (fsdp.shard: fully_shard per block and root) + train_step, 1-process group"
    return {**found, "method": method, "losses": losses["fsdp"], "unsharded_losses": losses["ddp"],
            "max_relative_gap": gap}  # fmt: skip


def sampling(ctx: Context) -> dict:
    """Sampling tokens per second at batch 1 and a larger batch: the diffusion network with the cached sampler
    (analytic predictor) and ``small-ar`` with its KV cache, bf16 copies where the device computes bf16, timed from
    the call to the tokens on the host. A row that fails (memory at the larger batch) records its error."""
    found = {}
    for preset, options in (
        ("small", SamplingOptions(steps=ctx.sizes.sample_steps, cache=True, predictor="analytic")),
        ("small-ar", SamplingOptions(cache=True)),
    ):
        config = run_config(ctx, preset)
        objective = build_objective(config, ctx.sizes.vocab)
        torch.manual_seed(0)
        model = build_model(config, objective).to(ctx.device).eval()
        draw(ctx, objective, model, options, 1, config.model.seq_len)  # warm-up: kernels, the allocator
        for batch in ctx.sizes.sample_batches:
            try:
                found[f"{preset} batch {batch}"] = draw(ctx, objective, model, options, batch, config.model.seq_len)
            except RuntimeError as error:  # torch.OutOfMemoryError is one
                found[f"{preset} batch {batch}"] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}
        del model
    return found


def draw(ctx: Context, objective, model, options: SamplingOptions, batch: int, length: int) -> dict:
    """One ``objective.sample`` of (batch, length) tokens; the generator lives on the device, as the draws do."""
    generator = torch.Generator(device=ctx.device).manual_seed(batch)
    sync(ctx)
    start = time.perf_counter()
    drawn = objective.sample(model, (batch, length), options, generator=generator, device=ctx.device)
    tokens = drawn.tokens.cpu()
    seconds = time.perf_counter() - start
    return {"tokens_per_second": tokens.numel() / seconds, "seconds": seconds, "batch": batch, "length": length,
            "nfe": drawn.stats.nfe}  # fmt: skip
