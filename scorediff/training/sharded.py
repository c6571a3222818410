"""An FSDP run's checkpoints, through ``torch.distributed.checkpoint`` (DCP): every process writes its own shards,
and a checkpoint written by N processes is read by M, sharded or not (DCP stores each tensor's global shape and
each shard's offsets, and reads whatever rows a process now holds).

``sharded/`` holds ``model`` and ``ema`` (each weight by name), ``optimizer`` (AdamW's moments and step counts by
weight name) and ``rng.<rank>`` / ``cuda_rng.<rank>`` (each process's generators). The step, tokens seen and time
are in ``trainer_state.json`` as in any checkpoint; the learning rate, batches, noise and dropout masks are
functions of ``(train.seed, step)`` (dropout: of the rank too), so a resumed run continues as an uninterrupted one
at any world size. The folder is written under a temporary name and renamed when every process has finished, as
single-file checkpoints are; the last checkpoint of a run also holds ``model.safetensors`` and ``ema.safetensors``
whole (``export``), which is what ``scorediff.load``, sample, eval and push read.

``torch.distributed.checkpoint`` is imported where it is used: a DDP or single-process run never needs it. Shards
are read only on a torch with FSDP2 (>= 2.6, ``fsdp.FSDP2_TORCH``), the torch that writes them: an older DCP cannot
unpickle a newer one's metadata (torch 2.2 fails on ``_MEM_FORMAT_ENCODING``), so it is refused in one line first.
"""

from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from ..builders import build_model, build_objective
from ..checkpoint import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    EMA_FILE,
    MODEL_FILE,
    SHARDED_DIR,
    TRAINER_FILE,
    CheckpointError,
    config_json,
    prune_checkpoints,
    read_config,
)
from ..config import RunConfig, config_from_dict
from ..fileio import TMP_PREFIX, atomic_directory
from . import distributed
from .distributed import DistInfo
from .fsdp import FSDP2_TORCH, has_fsdp2, whole
from .lora import inject, ordinary
from .step import TrainState


def save(state: TrainState, run_dir: Path, tokenizer, trainer_info: dict, export: bool) -> Path | None:
    """Write ``run_dir/checkpoints/step_XXXXXXXX`` from every process (a collective); with ``export`` also the
    whole weights. Returns the folder on rank 0, None elsewhere."""
    info = state.info
    final = Path(run_dir) / CHECKPOINT_DIR / f"step_{state.step:08d}"
    weights = [
        ordinary(gather(d, info), state.config) for d in (state.model.state_dict(), state.ema.state_dict(state.model))
    ]
    with _shared_folder(final, info) as tmp:
        write_shards(_state_dict(state), tmp / SHARDED_DIR)
        if info.is_main:
            (tmp / CONFIG_FILE).write_text(config_json(state.objective.header(), state.config.to_dict()))
            tokenizer.save(tmp)
            if export:
                save_file(weights[0], str(tmp / MODEL_FILE))
                save_file(weights[1], str(tmp / EMA_FILE))
            (tmp / TRAINER_FILE).write_text(json.dumps(dict(trainer_info, step=state.step, sharded=True), indent=2))
        distributed.barrier(info)  # every shard and file written before rank 0 renames the folder
    if info.is_main:
        prune_checkpoints(run_dir, state.config.train.keep_last)
    return final if info.is_main else None


def write_shards(state_dict: dict, folder: Path) -> None:
    """DCP's save of this process's shards into ``folder`` (rank 0 also writes the index), a collective."""
    import torch.distributed.checkpoint as dcp

    dcp.save(state_dict, checkpoint_id=str(folder))


@contextmanager
def _shared_folder(final: Path, info: DistInfo):
    """Rank 0's temporary folder for ``final`` (renamed into place when the block ends without error), on every
    process."""
    if not info.is_main:
        yield Path(distributed.broadcast_object(None, info))
        return
    with atomic_directory(final) as tmp:
        distributed.broadcast_object(str(tmp), info)
        yield tmp


def gather(tensors: dict[str, Tensor], info: DistInfo) -> dict[str, Tensor]:
    """Whole, contiguous CPU copies of ``tensors`` on rank 0 (a collective, one tensor at a time); empty elsewhere."""
    gathered = {}
    for name, tensor in tensors.items():
        value = whole(tensor.detach())
        if info.is_main:
            gathered[name] = value.contiguous().cpu()
    return gathered


def _state_dict(state: TrainState) -> dict:
    """What a sharded checkpoint holds, as live tensors of ``state`` (DCP reads into them in place)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    rank = state.info.rank
    values = {
        "model": get_model_state_dict(state.model),
        "optimizer": get_optimizer_state_dict(state.model, state.optimizer),
        "ema": dict(state.ema.shadow),
        f"rng.{rank}": torch.get_rng_state(),
    }
    device = next(state.model.parameters()).device
    if device.type == "cuda":
        values[f"cuda_rng.{rank}"] = torch.cuda.get_rng_state(device)
    return values


def restore(state: TrainState, checkpoint: Path) -> None:
    """Load the model, optimizer, EMA and this rank's generators (where the checkpoint has this rank) of a sharded
    ``checkpoint`` into ``state``, at any world size, sharded or not."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    values = _state_dict(state)
    saved = _index(checkpoint)
    values = {key: value for key, value in values.items() if "rng." not in key or key in saved}
    _read_shards(values, checkpoint)
    set_model_state_dict(state.model, values["model"])
    set_optimizer_state_dict(state.model, state.optimizer, values["optimizer"])
    for key, value in values.items():
        if key.startswith("rng."):
            torch.set_rng_state(value)
        elif key.startswith("cuda_rng."):
            torch.cuda.set_rng_state(value, next(state.model.parameters()).device)


@contextmanager
def _one_process_is_meant():
    """Silence DCP's warning that it reads in one process without a process group: here that is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _index(checkpoint: Path) -> dict:
    """The names and metadata of what a sharded checkpoint holds (DCP flattens nested names with dots); every read
    of shards starts here, so a torch that cannot read them is refused (``CheckpointError``) before any is read."""
    if not has_fsdp2():
        raise CheckpointError(
            f"reading the shards of {checkpoint} (a train.parallel=fsdp checkpoint) needs torch >= {FSDP2_TORCH}, "
            f"which writes them; this is torch {torch.__version__}"
        )
    import torch.distributed.checkpoint as dcp

    try:
        return dcp.FileSystemReader(str(checkpoint / SHARDED_DIR)).read_metadata().state_dict_metadata
    except Exception as error:  # DCP raises what the unpickler and the filesystem raise
        raise CheckpointError(f"the shards of {checkpoint} cannot be read ({type(error).__name__}: {error})") from None


def _read_shards(values: dict, checkpoint: Path) -> None:
    """``dcp.load`` of ``values`` (in place) from the shards of ``checkpoint``; a shard that is missing, truncated
    or of other shapes is one ``CheckpointError`` line naming the cause (DCP wraps it in a multi-line
    ``CheckpointException``, a ``BaseException``)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        with _one_process_is_meant():
            dcp.load(values, checkpoint_id=str(checkpoint / SHARDED_DIR))
    except CheckpointException as error:
        cause = next(iter(error.failures.values()))[0]
        reason = f"{type(cause).__name__}: {cause}".splitlines()[0].removesuffix(": ")
        raise CheckpointError(f"the shards of {checkpoint} cannot be read ({reason})") from None


def _mismatch(saved: dict, network: dict[str, Tensor]) -> str | None:
    """The first weight of ``network`` (a state dict, meta tensors will do) that the shards' index ``saved`` lacks
    or holds in another shape, described (None when every one is there in its shape)."""
    for name, tensor in network.items():
        entry = saved.get(f"model.{name}")
        shape = tuple(getattr(entry, "size", ()) or ())
        if entry is None or shape != tuple(tensor.shape):
            found = "missing" if entry is None else f"of shape {shape}"
            return f"its {name} is {found}, the network has {tuple(tensor.shape)}"
    return None


def check_shapes(state: TrainState, checkpoint: Path) -> None:
    """Refuse (``CheckpointError``, one line) shards whose weights are not this network's: DCP reshards rows over
    processes, not a weight into another shape."""
    mismatch = _mismatch(_index(checkpoint), state.model.state_dict())
    if mismatch:
        mismatch = mismatch.replace("the network", "this run's network")
        raise CheckpointError(
            f"cannot resume from {checkpoint}: {mismatch} (a sharded checkpoint changes world size, not the model)"
        )


def averaged_copy(state: TrainState, device: torch.device) -> nn.Module | None:
    """On rank 0, an unsharded copy of the network holding the whole EMA weights (for evaluation and previews);
    None on the other processes. A collective."""
    weights = ordinary(gather(state.ema.state_dict(state.model), state.info), state.config)
    if not state.info.is_main:
        return None
    with torch.random.fork_rng(devices=[]):  # the copy's random initial weights leave the run's generator alone
        model = build_model(state.config, state.objective)
    model.load_state_dict(weights)
    return model.to(device)


def _shards_network(config: RunConfig, num_tokens: int, device: str) -> nn.Module:
    """The network whose weights a run's shards hold, built on ``device`` (a LoRA run's is the adapted network:
    its shards are named so), leaving the caller's random generator alone."""
    with torch.random.fork_rng(devices=[]), torch.device(device):
        model = build_model(config, build_objective(config, num_tokens))
        if config.train.lora_rank:
            inject(model, config)
    return model


def _check_export(saved: dict, model: nn.Module, checkpoint: Path) -> None:
    """Refuse shards that are not the weights of ``model``, the network of the checkpoint's config.json: a weight
    beyond it would be left out of the export without a word (DCP reads the weights asked for), one missing or of
    another shape fails the read."""
    network = model.state_dict()
    extra = sorted(key for key in saved if key.startswith("model.") and key[len("model.") :] not in network)
    if extra:
        raise CheckpointError(
            f"the shards of {checkpoint} hold {extra[0]}, which the network of its config.json lacks "
            f"({len(extra)} such weights); an export would leave them out"
        )
    mismatch = _mismatch(saved, network)
    if mismatch:
        raise CheckpointError(f"the shards of {checkpoint} do not fit the network of its config.json: {mismatch}")


def export(checkpoint: str | Path) -> Path:
    """Write the whole weights of a sharded ``checkpoint`` (``model.safetensors``, ``ema.safetensors``) into it, from
    one process, so that loaders read it like any checkpoint; the run's last checkpoint has them already.

    Each file is written under a temporary name and renamed, ``model.safetensors`` (what loaders look for) last.

    Returns:
        The checkpoint folder.
    """
    checkpoint = Path(checkpoint)
    saved = _index(checkpoint)  # a one-line CheckpointError when there are no readable shards
    for name in (EMA_FILE, MODEL_FILE):  # checked before either is written, so a refusal writes neither
        if (checkpoint / name).exists() and not (checkpoint / name).is_file():
            raise CheckpointError(f"{checkpoint / name} is not a file; export writes the weights under that name")
    header, values = read_config(checkpoint)
    config = config_from_dict(values)
    _check_export(saved, _shards_network(config, header.num_tokens, "meta"), checkpoint)  # before any allocation
    model = _shards_network(config, header.num_tokens, "cpu")
    weights = {"model": model.state_dict(), "ema": {name: p.detach().clone() for name, p in model.named_parameters()}}
    _read_shards(weights, checkpoint)
    ema = {name: weights["ema"].get(name, value) for name, value in weights["model"].items()}  # buffers: as saved
    for name, tensors in ((EMA_FILE, ordinary(ema, config)), (MODEL_FILE, ordinary(weights["model"], config))):
        tmp = checkpoint / f"{TMP_PREFIX}{name}"
        try:
            save_file({key: value.contiguous() for key, value in tensors.items()}, str(tmp))
            os.replace(tmp, checkpoint / name)
        finally:  # a full disk leaves no partial file behind
            tmp.unlink(missing_ok=True)
    return checkpoint
