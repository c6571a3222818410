"""The launch plan's arithmetic against what a real CPU step holds: saved activations measured through
``saved_tensors_hooks`` (unique storages), and the exact bytes of weights, gradients, AdamW state and EMA."""

import math

import pytest
import torch

from scorediff.builders import build_model, build_objective
from scorediff.commands.plan_cmd import meta_network
from scorediff.config import load_config
from scorediff.model.flops import training_flops_per_token
from scorediff.training.activations import NetworkShape, activation_bytes
from scorediff.training.distributed import DistInfo
from scorediff.training.gpus import GPUS
from scorediff.training.lora import attach
from scorediff.training.plan import make_plan, state_bytes
from scorediff.training.step import new_state

BATCH, LENGTH, NUM_TOKENS = 3, 32, 20
SMALL = ["model.hidden_size=32", "model.n_heads=4", f"model.seq_len={LENGTH}", "model.n_blocks=2", "model.dropout=0"]
NETWORKS = {
    "dit-diffusion": ("tiny", []),
    "dit-score-entropy": ("small", []),  # time-conditioned, score entropy, scale_by_sigma
    "dit-uniform": ("small", ["diffusion.graph=uniform"]),
    "dit-block": ("tiny-block", []),
    "dit-ar": ("tiny-ar", []),
    "llama-diffusion": ("tiny-llama", []),
    "llama-gqa-qknorm": ("tiny-llama", ["model.n_kv_heads=2", "model.qk_norm=true"]),
    "llama-conditioned": (
        "tiny-llama",
        ["model.time_conditioning=true", "diffusion.graph=uniform", "diffusion.mask_count=false"],
    ),  # fmt: skip
    "llama-shift": ("tiny-llama", ["model.shift=true"]),
    "llama-block": ("tiny-llama", ["model.block_size=4"]),
    "llama-shifted-block": ("tiny-llama", ["model.block_size=4", "model.shift=true"]),
    "llama-ar": ("tiny-llama-ar", []),
}


def _config(name, extra=()):
    preset, overrides = NETWORKS[name]
    return load_config(preset, [*SMALL, "train.batch_size=6", "train.compile=false", *overrides, *extra])


def saved_bytes(model, objective, batch) -> int:
    """Bytes of the distinct storages autograd saves in one loss forward, the model's own tensors left out."""
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    seen = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            seen.setdefault(storage.data_ptr(), storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        objective.loss(model, batch)
    return sum(seen.values())


@pytest.mark.parametrize("name", list(NETWORKS))
def test_activation_formula_matches_saved_tensors(name):
    """float32: the formula (read on a meta-device network) is at most 1% under the measured bytes; the gap is the
    O(batch) tensors it leaves out (loss weights and masks, (B, 1) factors), never the O(B L D) ones."""
    config = _config(name)
    objective = build_objective(config, NUM_TOKENS)
    torch.manual_seed(0)
    model = build_model(config, objective).train()
    generator = torch.Generator().manual_seed(0)
    batch = objective.draw(torch.randint(0, NUM_TOKENS, (BATCH, LENGTH), generator=generator), generator)
    measured = saved_bytes(model, objective, batch)
    formula = activation_bytes(NetworkShape.of(meta_network(config, NUM_TOKENS)), BATCH).total
    assert 0.99 * measured <= formula <= measured, (formula, measured)


def test_checkpointing_keeps_block_inputs_and_one_block():
    shape = NetworkShape.of(meta_network(_config("dit-diffusion"), NUM_TOKENS))
    full = activation_bytes(shape, BATCH)
    inputs = 2 * 4 * BATCH * LENGTH * 32  # two blocks' float32 (B, L, D) inputs
    assert full.checkpointed == full.outside + inputs + full.per_block[0]
    assert full.checkpointed < full.total


@pytest.mark.parametrize("name", ["dit-diffusion", "llama-gqa-qknorm", "dit-ar", "llama-ar lora"])
def test_state_bytes_match_a_real_step(name):
    """Weights, gradients, AdamW's state after one step and the EMA: the bytes of the trainer's own tensors (a LoRA
    run's: rank-4 adapters in every linear layer, gradients and moments for them alone)."""
    network, _, lora = name.partition(" ")
    config = _config(network, ["train.lora_rank=4"] if lora else [])
    objective = build_objective(config, NUM_TOKENS)
    state = new_state(config, objective, build_model(config, objective), torch.device("cpu"), DistInfo())
    if lora:
        pytest.importorskip("peft")
        state = attach(state, torch.device("cpu"))
        assert (
            0 < sum(p.numel() for p in state.model.parameters() if p.requires_grad) < state.model.num_parameters() / 2
        )
    generator = torch.Generator().manual_seed(0)
    batch = objective.draw(torch.randint(0, NUM_TOKENS, (BATCH, LENGTH), generator=generator), generator)
    objective.loss(state.model, batch).sum().backward()
    gradients = sum(p.grad.numel() * p.grad.element_size() for p in state.model.parameters() if p.grad is not None)
    state.optimizer.step()
    optimizer = sum(t.numel() * t.element_size() for s in state.optimizer.state.values() for t in s.values())
    planned = state_bytes(meta_network(config, NUM_TOKENS), 1, False, 4)
    assert planned.weights == sum(p.numel() * p.element_size() for p in state.model.parameters())
    assert planned.gradients == gradients
    assert planned.optimizer == optimizer
    assert planned.ema == sum(t.numel() * t.element_size() for t in state.ema.shadow.values())
    assert planned.buffers == sum(b.numel() * b.element_size() for b in state.model.buffers())
    assert planned.compute_copies == planned.ddp_buckets == 0


def test_fsdp_shards_rows_with_padding():
    """FSDP2 splits dim 0 in ceil(rows / N): at N = 3 each tensor keeps ceil(rows / 3) of its rows."""
    model = meta_network(_config("llama-diffusion"), NUM_TOKENS)
    sharded = state_bytes(model, 3, True, 2)
    rows = sum(math.ceil(p.shape[0] / 3) * p[0].numel() for p in model.parameters())
    assert sharded.weights == sharded.ema == sharded.gradients == 4 * rows
    assert sharded.optimizer == 4 * (2 * rows + len(list(model.parameters())))
    replicated = state_bytes(model, 3, False, 2)
    assert replicated.ddp_buckets == replicated.gradients  # DDP's flat copy of the gradients
    assert sharded.weights < replicated.weights / 2.9


def test_plan_time_and_micro_batch():
    config = _config("dit-diffusion", ["train.batch_size=64", "train.grad_accum=2", "train.max_steps=1000"])
    model = meta_network(config, NUM_TOKENS)
    plan = make_plan(model, config, 4, GPUS["a100"], 0.5)
    assert plan.micro_batch == 64 // (4 * 2)
    assert plan.tokens == 1000 * 64 * LENGTH
    assert plan.flops_per_token == training_flops_per_token(model)
    assert plan.seconds == pytest.approx(plan.tokens * plan.flops_per_token / (4 * 312e12 * 0.5), rel=1e-12)
    bf16 = plan.ddp.state
    assert bf16.compute_copies > 0 and plan.fsdp.activations == plan.ddp.activations
