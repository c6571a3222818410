"""Before the first step: the run directory, the data, the objective and model, and a resumed state."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..builders import build_model, build_objective
from ..checkpoint import (
    EMA_FILE,
    MODEL_FILE,
    SHARDED_DIR,
    TRAINER_FILE,
    TRAINER_TENSORS_FILE,
    check_weights,
    load_optimizer,
    read_config,
    read_json,
    read_tensors,
)
from ..config import ConfigError, RunConfig, config_from_dict
from ..data.chat import reads_own_bos
from ..data.examples import ExampleSet, example_format, example_splits
from ..data.prepare import LEARNT, build_tokenizer, prepare_dna_shards, prepare_shards
from ..data.tokenizers import Tokenizer, load_tokenizer
from ..data.windows import TokenWindows
from ..errors import InputError, ScorediffError
from ..model.causal import CausalTransformer
from . import distributed, lora, sharded
from .adapt import adapted_weights, check_annealable, is_adaptation
from .distributed import DistInfo
from .fsdp import is_sharded, load_whole
from .resume import check_resumable, check_whole_state
from .rundir import step_of
from .step import TrainState, new_state


@dataclass
class RunData:
    """The tokenizer and the two splits of the run's token shards."""

    tokenizer: Tokenizer
    train: TokenWindows | ExampleSet
    val: TokenWindows | ExampleSet


def check_arguments(config, resume, until_step) -> None:
    """``train``'s arguments are of their kinds (a dict or a path escaped as an AttributeError; a path given as
    ``resume`` resumed the run the configuration names)."""
    if not isinstance(config, RunConfig):
        raise InputError(f"config must be a RunConfig (scorediff.load_config); got {type(config).__name__}")
    if not isinstance(resume, bool):
        raise InputError(f"resume must be True or False (the run is the one config names); got {resume!r}")
    if until_step is not None and (not isinstance(until_step, int) or isinstance(until_step, bool) or until_step < 1):
        raise InputError(f"until_step must be a whole number >= 1 or None; got {until_step!r}")


def check_batch(config: RunConfig, info: DistInfo) -> None:
    tc = config.train
    if tc.batch_size % (info.world_size * tc.grad_accum):
        raise ConfigError(
            f"train.batch_size={tc.batch_size} must be divisible by world_size * grad_accum = "
            f"{info.world_size} * {tc.grad_accum}"
        )


def prepare_data(config: RunConfig, info: DistInfo, checkpoint: Path | None, initial=None) -> RunData:
    """Rank 0 builds the tokenizer (or reads the checkpoint's, else that of ``initial``, the ``Loaded`` model a run
    starts from, whose ids its weights were trained on) and tokenises into the shard cache; the other ranks read
    what it wrote. Nothing is written into the run directory here."""
    data = config.data
    tokenizer = load_tokenizer(checkpoint) if checkpoint is not None else getattr(initial, "tokenizer", None)
    if checkpoint is None and initial is not None and tokenizer is None and data.tokenizer in LEARNT:
        raise ConfigError(
            f"train.init={config.train.init} comes without a tokenizer, and a {data.tokenizer} tokenizer learnt from "
            "the data would give ids its weights never saw: name the one it was trained with (--tokenizer PATH, "
            "gpt2 or byte)"
        )
    if example_format(data.source):  # small enough to read on every rank; the same seeded split everywhere
        if tokenizer is None:
            tokenizer = build_tokenizer(data.tokenizer, data.source, num_tokens=data.num_tokens)
        train, val = example_splits(data.source, tokenizer, config.model.seq_len, data.val_fraction, config.train.seed,
                                    reads_bos=reads_own_bos(config.objective, config.model))  # fmt: skip
        return RunData(tokenizer, train, val)
    shards = None
    if info.is_main:
        if tokenizer is None:
            tokenizer = build_tokenizer(data.tokenizer, data.source, data.text_field, data.bpe_vocab_size)
        if tokenizer.kind == "dna":
            shards = prepare_dna_shards(
                data.source, data.cache_dir or None, data.val_fraction, data.dna_policy, data.label_regex
            )
        else:
            shards = prepare_shards(data.source, tokenizer, data.cache_dir or None, data.val_fraction, data.text_field)
        tokenizer.save(shards)  # the shard folder is named after this tokenizer; the other ranks read it there
    shards = Path(distributed.broadcast_object(str(shards) if shards else None, info))
    if tokenizer is None:
        tokenizer = load_tokenizer(shards)
    seq_len = config.model.seq_len
    return RunData(tokenizer, TokenWindows(shards, "train", seq_len), TokenWindows(shards, "val", seq_len))


DNA_GRAPHS = ("jc69", "k80", "f81", "hky85")


def resolve_from_data(config: RunConfig, data: RunData) -> RunConfig:
    """The fields the data decides, to be recorded in the run's config: a conditional model's number of labels,
    F81/HKY85 base frequencies counted in the training split, a dense graph's rates read from their file."""
    diffusion, model = config.diffusion, config.model
    if config.objective != "diffusion":
        return config
    if diffusion.graph in DNA_GRAPHS and data.tokenizer.kind != "dna":
        raise ConfigError(f"diffusion.graph={diffusion.graph} is a model of DNA: it needs data.tokenizer=dna")
    labels = data.train.labels
    if labels and model.num_labels not in (0, len(labels)):
        raise ConfigError(f"model.num_labels={model.num_labels}, but the data has {len(labels)} labels: {labels}")
    model = dataclasses.replace(model, num_labels=len(labels))
    data_config = dataclasses.replace(config.data, labels=",".join(labels))
    if diffusion.graph in ("f81", "hky85") and not diffusion.base_frequencies:
        counts = data.train.meta["base_counts"]
        diffusion = dataclasses.replace(diffusion, base_frequencies=",".join(f"{c / sum(counts):.6g}" for c in counts))
    if diffusion.graph == "dense" and diffusion.rate_matrix and not diffusion.rate_matrix.lstrip().startswith("["):
        path = Path(diffusion.rate_matrix).expanduser()
        try:
            rows = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise ConfigError(f"diffusion.rate_matrix: cannot read a JSON list of rows from {path}: {error}") from None
        diffusion = dataclasses.replace(diffusion, rate_matrix=json.dumps(rows))
    return dataclasses.replace(config, model=model, diffusion=diffusion, data=data_config)


def data_tokens(checkpoint: Path | None, initial=None) -> int | None:
    """The run's number of data tokens when something other than its tokenizer decides it: its checkpoint's when it
    resumes, else those of the model it starts from (``initial``, whose ids its weights know: a converted LLaDA's or
    Dream's tokenizer also names the mask, and published embeddings often have rows past their tokenizer's ids);
    None: the tokenizer's."""
    if checkpoint is not None:
        return read_config(checkpoint)[0].num_tokens
    return initial.objective.num_tokens if initial is not None else None


def build(
    config: RunConfig, tokenizer: Tokenizer, device: torch.device, info: DistInfo, num_tokens: int | None = None
) -> TrainState:
    """The objective over ``num_tokens`` data tokens (``data_tokens``; None: the tokenizer's), the seeded initial
    model and a fresh training state; ``config`` resolved to the model's."""
    objective = build_objective(config, num_tokens or tokenizer.vocab_size)
    torch.manual_seed(config.train.seed)  # the initial weights
    model = build_model(config, objective)
    config = dataclasses.replace(config, model=model.config)  # resolved: vocab_size, scale_by_sigma
    check_annealable(model, config.train.attention_anneal_steps)
    return new_state(config, objective, model, device, info, shard_now=not config.train.lora_rank)


def load_initial(source: str, device: str = "cpu"):
    """The model at ``source`` (``scorediff.load``'s ``Loaded``), or a one-line ``ConfigError`` naming train.init;
    ``device="meta"`` reads its header only (``scorediff plan``)."""
    from ..loading import load  # the loader reads converters and the Hub; a run without --init needs neither

    try:
        return load(source, device=device)
    except ScorediffError as error:
        raise ConfigError(f"train.init: {error}") from None


def initialise(state: TrainState, source: str, initial=None) -> None:
    """Start ``state`` from the weights of the model at ``source`` (anything ``scorediff.load`` reads; its EMA
    weights when it has them): the network and its moving average both become them. An autoregressive llama
    given to a shifted masked-diffusion llama is adapted (A2D, ``adapt.adapted_weights``).

    Args:
        initial: ``source`` already loaded (``load_initial``), so that it is read once; None reads it here.

    Raises:
        ConfigError: one line, when ``source`` is no model scorediff loads or its weights do not fit this run's
            network (names and shapes, through ``checkpoint.check_weights``), or an AR model cannot be adapted.
    """
    weights = initial_weights((initial or load_initial(source)).model, state.model, source)
    load_whole(state.model, weights)
    state.ema.load(state.model.state_dict())


def initial_weights(loaded: torch.nn.Module, model: torch.nn.Module, source: str) -> dict[str, torch.Tensor]:
    """The weights of ``loaded`` (the network at ``source``) for ``model``, adapted when an AR model starts a diffusion
    network, checked against its names and shapes (meta tensors are checked too: ``scorediff plan``).

    Raises:
        ConfigError: one line naming train.init, when they do not fit or cannot be adapted.
    """
    if isinstance(model, CausalTransformer) and not isinstance(loaded, CausalTransformer):
        raise ConfigError(  # its shapes may be the AR network's (LLaDA's mask row standing for the BOS)
            f"train.init: {source} is a diffusion model; an autoregressive run starts from an autoregressive model "
            f"(scorediff adapts AR models into diffusion, not back)"
        )
    try:
        weights = adapted_weights(loaded, model) if is_adaptation(loaded, model) else loaded.state_dict()
        shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
        check_weights(weights, shapes, "this run's network (its model.* options)", Path(source))
    except ScorediffError as error:
        raise ConfigError(f"train.init: {error}") from None
    return weights


def check_resume(state: TrainState, checkpoint: Path, run_dir: Path) -> None:
    """Refuse, before anything is written, to resume ``checkpoint`` into ``state``: another configuration (beyond
    ``resume.RESUMABLE_CHANGES``), a step past ``train.max_steps``, shards or whole weights, EMA and optimizer
    moments of other shapes, or a whole-weights checkpoint under FSDP."""
    _, saved = read_config(checkpoint)
    saved = config_from_dict(saved).to_dict()  # options added since the run was saved take their defaults
    check_resumable(saved, state.config.to_dict(), run_dir)
    check_trainer_state(checkpoint, run_dir)
    if state.config.train.max_steps < step_of(checkpoint):  # it "finished" and recorded the lower count
        raise ConfigError(
            f"cannot resume {run_dir} to train.max_steps={state.config.train.max_steps}: {checkpoint.name} is past it"
        )
    if (checkpoint / SHARDED_DIR).is_dir():
        sharded.check_shapes(state, checkpoint)
    elif is_sharded(state.config):
        raise ConfigError(
            f"cannot resume {run_dir} with train.parallel=fsdp: {checkpoint.name} was written by a ddp run "
            f"(whole weights); resume it with train.parallel=ddp, or start a new run from it with --init"
        )
    elif not state.config.train.lora_rank:  # a LoRA checkpoint's weights are checked by lora.restore
        check_whole_state(state, checkpoint)


#: what ``restore`` reads of ``trainer_state.json``: the JSON each field must hold (``optimizer``: whole weights only)
RESUMED_FIELDS = {
    "step": (int, "a whole number"),
    "tokens_seen": (int, "a whole number"),
    "elapsed_seconds": (int | float, "a number"),
    "optimizer": (dict, "an object"),
}


def check_trainer_state(checkpoint: Path, run_dir: Path) -> None:
    """Refuse a ``trainer_state.json`` without what ``restore`` reads (a hand-edited one escaped as a KeyError or
    TypeError after the run had started)."""
    path = checkpoint / TRAINER_FILE
    trainer = read_json(path)
    for key, (kind, expected) in RESUMED_FIELDS.items():
        if key == "optimizer" and (checkpoint / SHARDED_DIR).is_dir():  # in the shards
            continue
        value = trainer.get(key) if isinstance(trainer, dict) else None
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"cannot resume {run_dir}: {path}: {key} must be {expected}; got {value!r}")
    expected = step_of(checkpoint)
    if trainer["step"] != expected:  # -4 trained over the intact checkpoints after it
        raise ConfigError(f"cannot resume {run_dir}: {path}: step must be {expected}; got {trainer['step']}")


def restore(state: TrainState, checkpoint: Path) -> float:
    """Load weights, EMA and optimizer from ``checkpoint`` (checked by ``check_resume``) into ``state``; returns
    the seconds trained before."""
    trainer = read_json(checkpoint / TRAINER_FILE)
    if (checkpoint / SHARDED_DIR).is_dir():
        sharded.restore(state, checkpoint)
        state.step, state.tokens_seen = trainer["step"], trainer["tokens_seen"]
        return trainer["elapsed_seconds"]
    if state.config.train.lora_rank:
        lora.restore(state, checkpoint)
    else:
        state.model.load_state_dict(read_tensors(checkpoint / MODEL_FILE))
        state.ema.load(read_tensors(checkpoint / EMA_FILE))
    load_optimizer(state.optimizer, read_tensors(checkpoint / TRAINER_TENSORS_FILE), trainer["optimizer"])
    state.step, state.tokens_seen = trainer["step"], trainer["tokens_seen"]
    return trainer["elapsed_seconds"]
