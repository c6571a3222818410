"""``load`` any checkpoint: ours, or the original SEDD layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .builders import build_graph, build_model, build_schedule
from .config import ConfigError, RunConfig, config_from_dict
from .data.tokenizers import Tokenizer, load_tokenizer
from .graphs import Graph
from .model import SEDDTransformer, is_original_config, read_original_checkpoint
from .schedules import NoiseSchedule
from .training.checkpoint import CheckpointError, read_json, read_tensors, resolve_checkpoint
from .types import ScoreFn


@dataclass
class Loaded:
    """A model ready to sample and score.

    Attributes:
        model: the network, in eval mode, EMA weights when the checkpoint has them.
        graph, schedule: the forward process it was trained with.
        tokenizer: None when the checkpoint has none (the original SEDD layout).
        score_fn: the ``ScoreFn`` of the math core (takes sigma_bar, as the original model does).
        config: the resolved run configuration (None for the original layout).
        step: training step of the checkpoint (None when unknown).
        path: the checkpoint directory.
        info: what the trainer recorded (step, validation bound, tokens seen), empty when unknown.
    """

    model: SEDDTransformer
    graph: Graph
    schedule: NoiseSchedule
    tokenizer: Tokenizer | None
    score_fn: ScoreFn
    config: RunConfig | None
    step: int | None
    path: Path
    info: dict


def load(path: str | Path, device: str | torch.device = "cpu", ema: bool = True) -> Loaded:
    """Load a checkpoint directory, a run directory (its latest checkpoint) or an original SEDD model folder.

    Args:
        path: the directory.
        device: where to put the model.
        ema: use the EMA weights when present.
    """
    checkpoint = resolve_checkpoint(path)
    raw = read_json(checkpoint / "config.json")
    if is_original_config(raw):
        model_config, graph, schedule, state = read_original_checkpoint(checkpoint)
        model = SEDDTransformer(model_config, graph.mask_id)
        _load_weights(model, state, checkpoint / "model.safetensors")
        model.to(device).eval()
        return Loaded(model, graph, schedule, _gpt2_if_available(graph), model, None, None, checkpoint, {})
    try:
        config = config_from_dict(raw)
    except ConfigError as error:
        raise CheckpointError(f"{checkpoint / 'config.json'} is not a scorediff configuration ({error})") from None
    tokenizer = load_tokenizer(checkpoint) if (checkpoint / "tokenizer.json").exists() else None
    vocab_size = config.model.vocab_size
    graph = build_graph(config.diffusion, vocab_size - (config.diffusion.graph in ("absorbing", "absorb")))
    schedule = build_schedule(config.diffusion)
    if tokenizer is not None and tokenizer.vocab_size != graph.num_tokens:
        raise CheckpointError(
            f"{checkpoint}: tokenizer has {tokenizer.vocab_size} tokens but the model was built for {graph.num_tokens}"
        )
    model = build_model(config, graph)
    weights = checkpoint / (
        "ema.safetensors" if ema and (checkpoint / "ema.safetensors").exists() else "model.safetensors"
    )
    _load_weights(model, read_tensors(weights), weights)
    model.to(device).eval()
    info = read_json(checkpoint / "trainer_state.json") if (checkpoint / "trainer_state.json").exists() else {}
    return Loaded(model, graph, schedule, tokenizer, model, config, info.get("step"), checkpoint, info)


def _gpt2_if_available(graph: Graph) -> Tokenizer | None:
    """The published SEDD models use GPT-2's 50,257 tokens; attach that tokenizer when its files are installed."""
    if graph.num_tokens != 50257:
        return None
    from .data.tokenizers import HFTokenizer, gpt2_files

    try:
        return HFTokenizer.from_gpt2_files(*gpt2_files())
    except (ImportError, FileNotFoundError):
        return None


def _load_weights(model: torch.nn.Module, state: dict, source: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"{source} does not match the model in config.json: {what}")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{source}: {name} has shape {tuple(tensor.shape)}, the model expects {tuple(expected[name].shape)} "
                f"(made for another vocabulary or size?)"
            )
    model.load_state_dict(state)
