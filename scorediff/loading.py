"""``load`` any checkpoint: ours (diffusion or autoregressive), or the original SEDD layout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .builders import build_model, build_objective
from .checkpoint import (
    EMA_FILE,
    MODEL_FILE,
    CheckpointError,
    Header,
    check_weights,
    read_json,
    resolve_checkpoint,
    safetensors_header,
    split_config,
    trainer_state,
)
from .config import ConfigError, RunConfig, config_from_dict
from .converters import LAYOUTS, published_layout, published_tokenizer, read_gguf, read_published
from .converters import gguf as gguf_layout
from .data.tokenizers import Tokenizer, load_tokenizer
from .devices import torch_device
from .errors import InputError
from .graphs import Graph
from .hub import locate
from .objectives import Objective
from .placement import empty_network, model_dtype, place, read_safetensors
from .schedules import NoiseSchedule
from .types import ScoreFn

IN_CONFIG = "the model in config.json"


@dataclass
class Loaded:
    """A model ready to sample and score.

    Attributes:
        kind: ``"diffusion"`` or ``"autoregressive"``, as the checkpoint states.
        model: the network, in eval mode, EMA weights when the checkpoint has them.
        objective: how the model is scored and sampled (``objective.nll``, ``objective.sample``).
        tokenizer: None when the checkpoint has none (the original SEDD layout).
        graph, schedule, score_fn: the forward process and the ``ScoreFn`` of a diffusion model (None for an
            autoregressive one, and ``score_fn`` None for block diffusion, which is sampled and scored through
            ``objective``). ``score_fn`` takes sigma_bar, as the original model does.
        config: the resolved run configuration (None for the original layout).
        step: training step of the checkpoint (None when unknown).
        path: the checkpoint directory.
        info: what the trainer recorded (step, validation bound, tokens seen), empty when unknown.
        weights: which weights ``model`` holds: ``"ema"``, ``"raw"``, or ``"as stored"`` (the original layout).
        source: what was asked for: the local path, or the Hub id (``org/name[@revision]``).
        layout: the checkpoint's format: ``"scorediff"``, or the published model it was converted from.
    """

    kind: str
    model: torch.nn.Module
    objective: Objective
    tokenizer: Tokenizer | None
    graph: Graph | None
    schedule: NoiseSchedule | None
    score_fn: ScoreFn | None
    config: RunConfig | None
    step: int | None
    path: Path
    info: dict
    weights: str = "as stored"
    source: str = ""
    layout: str = "scorediff"

    @property
    def label_names(self) -> list[str]:
        """The class names of a conditional model, in the order of its label ids (empty: unconditional)."""
        return [name for name in (self.config.data.labels if self.config else "").split(",") if name]

    def save_pretrained(self, directory: str | Path, **card) -> Path:
        """A folder for the Hub that ``load`` reads back (see ``scorediff.publish``)."""
        from .publish import save_pretrained

        return save_pretrained(self, directory, **card)

    def push_to_hub(self, repo: str, **options) -> str:
        """Upload the ``save_pretrained`` folder to the Hub repository ``repo`` (see ``scorediff.publish``)."""
        from .publish import push_to_hub

        return push_to_hub(self, repo, **options)


def load(
    path: str | Path, device: str | torch.device = "cpu", ema: bool = True, dtype: str | torch.dtype | None = None
) -> Loaded:
    """Load a checkpoint directory, a run directory (its latest checkpoint), a published model's folder (SEDD,
    RADD, MDLM, BD3-LM; transformers' LLaMA, Qwen2, Qwen3 and SmolLM2; LLaDA; Dream), a ``.gguf`` file of the
    llama, qwen2 or qwen3 architecture, or any folder on the Hub by id (``org/name`` or ``org/name@revision``; a local
    path of that name wins).

    Args:
        path: the directory or Hub id.
        device: where to put the model; ``"meta"`` builds it without weights (shapes, configuration, tokenizer and
            every check of names and shapes, no weight read from a safetensors file), to inspect a model larger
            than memory as ``scorediff info`` does.
        ema: use the EMA weights when present.
        dtype: the weights' dtype, ``"float32"`` (None), ``"bfloat16"``, ``"float16"`` or ``"float64"`` (or that
            ``torch.dtype``). The network is built without storage and each weight is read, converted and put on
            ``device`` one at a time (``scorediff.placement``), so loading needs about the model's size in ``dtype``:
            LLaDA-8B about 16 GB in bfloat16. Outputs (logits, scores) are float32 whatever the weights' dtype.

    Raises:
        InputError: a ``path`` that is no path (None, a number, ""), a ``dtype`` or ``device`` not one of those.
        CheckpointError: a path that holds no model scorediff reads, or weights that do not fit it.
    """
    if not isinstance(path, str | os.PathLike) or path == "":  # "" would silently name the working directory
        raise InputError(f"path must be a checkpoint folder, run directory, .gguf file or Hub id; got {path!r}")
    if not isinstance(ema, bool):  # "yes" was taken as true
        raise InputError(f"ema must be True or False; got {ema!r}")
    dtype = model_dtype(dtype)
    device = torch.device("meta") if str(device) == "meta" else torch_device(device)
    location = locate(path)
    if location.suffix == ".gguf" and location.is_file():
        loaded = _load_gguf(location, dtype, device)
    else:
        loaded = _load_folder(resolve_checkpoint(location), ema, dtype, device)
    loaded.source = str(path)
    return loaded


def _load_folder(checkpoint: Path, ema: bool, dtype: torch.dtype, device: torch.device) -> Loaded:
    raw = read_json(checkpoint / "config.json")
    if isinstance(raw, dict) and published_layout(raw) is not None:
        return _load_published(checkpoint, raw, dtype, device)
    if isinstance(raw, dict) and "model_type" in raw:  # a transformers config.json of another model
        raise CheckpointError(
            f"{checkpoint} holds a {raw['model_type']!r} model of another library; scorediff reads its own "
            f"checkpoints, the published {', '.join(layout.NAME for layout in LAYOUTS)} models and "
            f"{gguf_layout.NAME} files"
        )
    header, values = split_config(raw, checkpoint / "config.json")
    try:
        config = config_from_dict(values)
    except ConfigError as error:
        raise CheckpointError(f"{checkpoint / 'config.json'} is not a scorediff configuration ({error})") from None
    objective = _objective(header, config, checkpoint)
    tokenizer = _tokenizer(checkpoint)
    if tokenizer is not None and not _tokenizer_fits(tokenizer, header):
        raise CheckpointError(
            f"{checkpoint}: tokenizer has {tokenizer.vocab_size} tokens but the model was built for {header.num_tokens}"
        )
    weights = checkpoint / (EMA_FILE if ema and (checkpoint / EMA_FILE).exists() else MODEL_FILE)
    model = _read_model(empty_network(build_model, config, objective), weights, dtype, device)
    info = trainer_state(checkpoint)
    return Loaded(
        kind=header.objective,
        model=model,
        objective=objective,
        tokenizer=tokenizer,
        graph=objective.graph,
        schedule=objective.schedule,
        score_fn=objective.sequence_score(model),
        config=config,
        step=info.get("step"),
        path=checkpoint,
        info=info,
        weights="ema" if weights.name == EMA_FILE else "raw",
    )


def _read_model(model: torch.nn.Module, weights: Path, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """``model``, built on the meta device, given the weights of ``weights`` in ``dtype`` on ``device``: sizes first,
    against the file's header, so nothing large is allocated for a lie; then each tensor checked as it is read."""
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    check_weights(safetensors_header(weights), shapes, IN_CONFIG, weights)

    def check(name: str, tensor: torch.Tensor) -> None:
        check_weights({name: tensor}, {name: shapes[name]}, IN_CONFIG, weights)

    model.load_state_dict(read_safetensors(weights, dtype, device, check), assign=True)  # the tensors themselves
    return place(model, dtype, device)


def _objective(header: Header, config: RunConfig, checkpoint: Path) -> Objective:
    """The objective the header states, checked against the configuration under it."""
    source = checkpoint / "config.json"
    if header.objective != config.objective:
        raise CheckpointError(f"{source}: header says {header.objective!r}, config says {config.objective!r}")
    if header.objective == "diffusion" and header.graph != config.diffusion.graph:
        raise CheckpointError(f"{source}: header says graph {header.graph!r}, config says {config.diffusion.graph!r}")
    objective = build_objective(config, header.num_tokens)
    stated = (header.mask_id, header.vocab_size)
    built = (objective.graph.mask_id if objective.graph is not None else None, objective.vocab_size)
    if stated != built:
        raise CheckpointError(f"{source}: mask_id and vocab_size {stated} do not match the objective's {built}")
    return objective


def _load_published(checkpoint: Path, config: dict, dtype: torch.dtype, device: torch.device) -> Loaded:
    """A published model of another codebase (SEDD, RADD, MDLM, LLaMA, ...), converted to scorediff's network, with
    the folder's tokenizer (LLaMA family) or GPT-2's (SEDD's 50,257 tokens, when installed)."""
    layout, model, objective = read_published(checkpoint, config, dtype, device)
    tokenizer = published_tokenizer(checkpoint, config, objective.vocab_size)
    if tokenizer is None and objective.graph is not None:
        tokenizer = _gpt2_if_available(objective.graph)
    return _converted(layout, model, objective, tokenizer, checkpoint)


def _load_gguf(path: Path, dtype: torch.dtype, device: torch.device) -> Loaded:
    """A GGUF file of the llama, qwen2 or qwen3 architecture, dequantised (``scorediff.converters.gguf``)."""
    model, objective, tokenizer = read_gguf(path, dtype, device)
    return _converted(gguf_layout.NAME, model, objective, tokenizer, path)


def _converted(layout: str, model, objective: Objective, tokenizer: Tokenizer | None, path: Path) -> Loaded:
    """A converted model: autoregressive or diffusion as its objective is, with no run configuration."""
    kind = "autoregressive" if objective.graph is None else "diffusion"
    return Loaded(kind, model, objective, tokenizer, objective.graph, objective.schedule,
                  objective.sequence_score(model), None, None, path, {}, layout=layout)  # fmt: skip


def _gpt2_if_available(graph: Graph) -> Tokenizer | None:
    """The published SEDD models use GPT-2's 50,257 tokens; attach that tokenizer when its files are installed."""
    if graph.num_tokens != 50257:
        return None
    from .data.tokenizers import HFTokenizer, gpt2_files

    try:
        return HFTokenizer.from_gpt2_files(*gpt2_files())
    except (ImportError, FileNotFoundError):
        return None


def _tokenizer_fits(tokenizer: Tokenizer, header) -> bool:
    """Whether ``tokenizer`` is the one the model was built for: as many tokens as its data tokens; one more, the
    absorbing mask, when the tokenizer names it at the mask's id (a run from a converted LLaDA or Dream); or, a
    Hugging Face tokenizer, fewer: a published model's embedding often has rows past its tokenizer's ids (Qwen2.5's
    151,936 rows for 151,665 tokens), and a run from it keeps them."""
    if tokenizer.vocab_size == header.num_tokens:
        return True
    if header.mask_id == header.num_tokens and tokenizer.vocab_size == header.num_tokens + 1:
        return True
    return tokenizer.kind == "hf" and tokenizer.vocab_size < header.num_tokens


def _tokenizer(checkpoint: Path) -> Tokenizer | None:
    if not (checkpoint / "tokenizer.json").exists():
        return None
    try:
        return load_tokenizer(checkpoint)
    except Exception as error:  # the tokenizers library raises its own exception type for a bad file
        raise CheckpointError(f"{checkpoint / 'tokenizer.json'} cannot be used ({error})") from None
