"""Low-rank adaptation (LoRA; Hu et al. 2021, arXiv 2106.09685) through ``peft``, beside full fine-tuning.

With ``train.lora_rank = r > 0``, each linear layer named by ``train.lora_targets`` keeps its weight ``W`` (out, in)
frozen and learns ``W + (lora_alpha / r) B A``, with ``A`` (r, in) and ``B`` (out, r); ``B`` starts at zero, so the
first step sees the initial network. Every other weight is frozen too: only ``A`` and ``B`` are optimised.

Checkpoints hold the merged weights in the ordinary layout, so every reader of a run (``scorediff.load``, sample,
eval, push) reads a LoRA run as any other; the adapters, live and averaged, go to ``checkpoint.LORA_FILE`` for
resuming. The frozen weights are not saved twice: a resumed run rebuilds them as the run first did (the seeded
network, then ``train.init``) and checks them against the saved merge.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import torch
from torch import Tensor, nn

from ..checkpoint import LORA_FILE, MODEL_FILE, CheckpointError, check_weights, read_tensors
from ..config import ConfigError, RunConfig
from .step import TrainState, new_state

ADAPTER = "default"
"""peft's name of the one adapter."""
BASE = ".base_layer."
"""What peft puts between an adapted layer's name and its frozen weight's."""
EMA_PREFIX = "ema."
"""The averaged adapters' names in ``LORA_FILE``: the live ones' behind this prefix."""


def require_peft(config: RunConfig) -> None:
    """Refuse a LoRA run (``ConfigError``, one line) when ``peft`` is not installed; a no-op otherwise."""
    if not config.train.lora_rank:
        return
    try:
        import peft  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"train.lora_rank={config.train.lora_rank} trains LoRA adapters through peft, which is not installed: "
            f"pip install 'scorediff[lora]'"
        ) from None


def attach(state: TrainState, device: torch.device) -> TrainState:
    """Inject LoRA adapters into ``state.model`` (in place, its initial weights already loaded) and return a fresh
    state at step 0 whose optimizer holds the adapters alone and whose moving average starts at the weights.

    Raises:
        ConfigError: peft is missing, or ``train.lora_targets`` names no layer or a layer that is not linear
            (through ``target_layers``).
    """
    require_peft(state.config)
    torch.manual_seed(state.config.train.seed)  # A's initial values
    inject(state.model, state.config)
    return new_state(state.config, state.objective, state.model, device, state.info)


def inject(model: nn.Module, config: RunConfig) -> None:
    """Put the adapters ``config.train`` describes into ``model``, in place (peft's ``inject_adapter_in_model``)."""
    from peft import LoraConfig, inject_adapter_in_model

    tc = config.train
    targets = target_layers(model, tc.lora_targets)
    width, name = min((min(model.get_submodule(n).weight.shape), n) for n in targets)
    if tc.lora_rank > width:  # B A of a higher rank spans no more than the full (out, in) matrix it adds to
        rank = tc.lora_rank
        raise ConfigError(f"train.lora_rank must be at most {width}, the narrower side of {name}'s weight; got {rank}")
    options = LoraConfig(r=tc.lora_rank, lora_alpha=tc.lora_alpha, lora_dropout=tc.lora_dropout, target_modules=targets)
    inject_adapter_in_model(options, model)


def target_layers(model: nn.Module, patterns: str) -> list[str]:
    """The full names of the layers of ``model`` that the comma-separated ``patterns`` name (see
    ``TrainConfig.lora_targets``); ``ConfigError`` when none is, or one is not linear."""
    patterns = patterns.split(",")
    names = [
        name
        for name, _ in model.named_modules()
        if name and any(fnmatchcase(name, pattern) or fnmatchcase(name, f"*.{pattern}") for pattern in patterns)
    ]
    if not names:
        raise ConfigError(f"train.lora_targets={','.join(patterns)!r} names no layer of this network")
    for name in names:
        kind = type(model.get_submodule(name))
        if kind is not nn.Linear:
            raise ConfigError(f"train.lora_targets: {name} is a {kind.__name__}; LoRA here adapts linear layers only")
    return names


def parameter_summary(model: nn.Module) -> str:
    """``"N parameters"``, or for a model with frozen weights how many of them train."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable == total:
        return f"{total:,} parameters"
    return f"{total:,} parameters, {trainable:,} trainable (LoRA adapters, {100 * trainable / total:.2f}%)"


def is_adapter(name: str) -> bool:
    return ".lora_" in name


def merge(weights: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
    """The ordinary layout of an adapted network's state dict: each adapted ``W`` replaced by
    ``W + scale B A`` (computed in float32, stored in W's dtype) under the layer's own name, the adapters dropped.

    .. math:: W' = W + \\frac{\\alpha}{r} B A
    """
    merged = {}
    for name, value in weights.items():
        if is_adapter(name):
            continue
        if BASE in name:
            layer, field = name.split(BASE)
            if field == "weight":
                a = weights[f"{layer}.lora_A.{ADAPTER}.weight"].float()  # (r, in)
                b = weights[f"{layer}.lora_B.{ADAPTER}.weight"].float()  # (out, r)
                value = (value.float() + scale * (b @ a)).to(value.dtype)
            name = f"{layer}.{field}"
        merged[name] = value
    return merged


def scale_of(config: RunConfig) -> float:
    return config.train.lora_alpha / config.train.lora_rank


def ordinary(weights: dict[str, Tensor], config: RunConfig) -> dict[str, Tensor]:
    """A state dict of a run's network in the ordinary layout: merged (``merge``) for a LoRA run, else as it is."""
    return merge(weights, scale_of(config)) if config.train.lora_rank else weights


def checkpoint_weights(state: TrainState) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor] | None]:
    """What a checkpoint of ``state`` holds: the model's and the EMA's weights in the ordinary layout, and for a
    LoRA run the adapters (live, then averaged behind ``EMA_PREFIX``; None otherwise)."""
    live, ema = state.model.state_dict(), state.ema.state_dict(state.model)
    if not state.config.train.lora_rank:
        return live, ema, None
    adapters = {name: value for name, value in live.items() if is_adapter(name)}
    adapters.update({EMA_PREFIX + name: value for name, value in ema.items() if is_adapter(name)})
    return ordinary(live, state.config), ordinary(ema, state.config), adapters


def restore(state: TrainState, checkpoint) -> None:
    """Load a LoRA run's adapters and their average from ``checkpoint`` into ``state``, whose frozen weights were
    rebuilt as the run first built them.

    Raises:
        CheckpointError: the adapter file is missing or does not fit, or the rebuilt frozen weights plus the
            adapters are not the merged weights the checkpoint holds (``train.init`` changed since).
    """
    live = state.model.state_dict()
    names = [name for name in live if is_adapter(name)]
    shapes = {name: tuple(live[name].shape) for name in names}
    stored = read_tensors(checkpoint / LORA_FILE)
    check_weights(stored, shapes | {EMA_PREFIX + n: s for n, s in shapes.items()}, "this run's LoRA adapters")
    state.model.load_state_dict({**live, **{name: stored[name] for name in names}})
    state.ema.load({**live, **{name: stored[EMA_PREFIX + name] for name in names}})  # frozen weights: never moved
    saved = read_tensors(checkpoint / MODEL_FILE)
    for name, value in merge(state.model.state_dict(), scale_of(state.config)).items():
        if not torch.allclose(value.float(), saved[name].float(), rtol=1e-4, atol=1e-6):
            raise CheckpointError(
                f"cannot resume the LoRA run in {checkpoint.parent.parent}: its frozen weights, rebuilt from "
                f"train.init={state.config.train.init!r}, are not those it was trained on ({name} differs)"
            )
