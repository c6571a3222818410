"""A run directory: its name, the one trainer that writes into it, what it writes (the run's config, tokenizer and
checkpoints), and what a killed run left behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from datetime import datetime
from pathlib import Path

from ..checkpoint import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    checkpoint_intact,
    config_json,
    list_checkpoints,
    read_config,
    save_checkpoint,
)
from ..config import ConfigError, RunConfig, config_from_dict
from ..fileio import DirectoryLock, LockHeld, atomic_write_text, remove_debris
from ..version import __version__
from . import distributed, sharded
from .fsdp import is_sharded
from .lora import checkpoint_weights
from .step import TrainingDiverged, TrainState, all_finite

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*")


def run_directory(config: RunConfig) -> Path:
    """``train.out_dir / train.run_name`` (default ``<preset>-<date>-<time>``); a name is one folder, no path."""
    name = config.train.run_name or f"{config.preset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if not NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigError(
            f"train.run_name must be one folder name (letters, digits, _ . + = -, not starting with . or -); "
            f"got {name!r}"
        )
    return Path(config.train.out_dir) / name


def config_of_run(run_dir: str | Path) -> RunConfig:
    """The configuration a run directory was started with."""
    return config_from_dict(read_config(Path(run_dir))[1])


def find_start(run_dir: Path, resume: bool, quiet: bool = False) -> Path | None:
    """The newest intact checkpoint to resume from (None for a new run); a resume without one and a restart
    over one are refused. A newest checkpoint that is truncated or incomplete is passed over for the one
    before it, with a note on stderr unless ``quiet``."""
    checkpoints = list_checkpoints(run_dir)
    if not resume:
        if checkpoints:
            raise ConfigError(f"run directory {run_dir} already holds checkpoints; pass resume or another run name")
        return None
    unreadable = next((p for c in checkpoints for p in c.rglob("*") if not os.access(p, os.R_OK)), None)
    if unreadable is not None:  # an intact checkpoint this user may not read was passed over and overwritten
        raise ConfigError(f"cannot resume {run_dir}: {unreadable} cannot be read (permission denied)")
    intact = [path for path in checkpoints if checkpoint_intact(path)]
    if not intact:
        what = "no intact checkpoint" if checkpoints else "no checkpoint"
        raise ConfigError(f"cannot resume: {run_dir} holds {what}")
    if intact[-1] != checkpoints[-1] and not quiet:
        note = f"note: {checkpoints[-1].name} is incomplete or corrupt; resuming from {intact[-1].name}"
        print(note, file=sys.stderr, flush=True)
    return intact[-1]


def claim(run_dir: Path, start: Path | None, resume: bool) -> DirectoryLock:
    """Take the run's lock (refused while another trainer holds it), then clean what a killed run left:
    half-written checkpoints, and metrics past the step it resumes from (or all of them for a new run)."""
    try:
        lock = DirectoryLock(run_dir).acquire()
    except LockHeld as held:
        message = f"another `scorediff train` ({held}) is writing into {run_dir}; wait or use another name"
        raise ConfigError(message) from None
    try:
        if find_start(run_dir, resume, quiet=True) != start:  # checked again now that nobody else can write
            raise ConfigError(f"{run_dir} changed while this run was preparing; start it again")
        for folder in (run_dir, run_dir / CHECKPOINT_DIR):  # found at the first save, after the training
            if folder.is_dir() and not os.access(folder, os.W_OK):
                raise ConfigError(f"cannot write into {folder}: permission denied")
        remove_debris(run_dir / CHECKPOINT_DIR)
        trim_metrics(run_dir / "metrics.jsonl", step_of(start))
    except BaseException:
        lock.release()
        raise
    return lock


def step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name.removeprefix("step_")) if checkpoint is not None else 0


def claim_on_main(run_dir: Path, start: Path | None, resume: bool, info) -> DirectoryLock | None:
    """Rank 0 takes the run's lock (``claim``; the other ranks hold none); a refusal reaches every rank, so none
    waits for the others forever."""
    lock, refusal = None, None
    if info.is_main:
        try:
            lock = claim(run_dir, start, resume)
        except ConfigError as error:
            refusal = str(error)
    refusal = distributed.broadcast_object(refusal, info)
    if refusal:
        raise ConfigError(refusal)
    return lock


def discard_if_empty(run_dir: Path) -> None:
    """Remove a run directory this run created that holds no checkpoint and no metrics record: a new run that failed
    before it logged or saved anything (out of memory at its first step, say) leaves no folder of a config and a
    tokenizer that looks like a run; one with metrics keeps them."""
    metrics = run_dir / "metrics.jsonl"
    if not list_checkpoints(run_dir) and not (metrics.is_file() and metrics.stat().st_size):
        shutil.rmtree(run_dir, ignore_errors=True)


def trim_metrics(path: Path, last_step: int) -> None:
    """Keep only the records up to ``last_step``: the steps after it are about to be run again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):  # a line cut short by a kill, or not a record at all
            continue
        step = record.get("step", 0) if isinstance(record, dict) else None
        if isinstance(step, int) and not isinstance(step, bool) and step <= last_step:
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def write_config(state: TrainState, run_dir: Path) -> None:
    """Record the run's configuration (as the budget has fitted it so far) in ``run_dir/config.json``."""
    atomic_write_text(run_dir / CONFIG_FILE, config_json(state.objective.header(), state.config.to_dict()))


def save(
    state: TrainState, run_dir: Path, tokenizer, elapsed: float, val_bits: float | None, last: bool = False
) -> Path | None:
    """Write a checkpoint of ``state`` (rank 0 writes it; an FSDP run's processes each write their shards, and its
    ``last`` checkpoint holds the whole weights too); returns it on rank 0, None on the others. Weights that are no
    longer finite (on any process) are never saved."""
    if distributed.any_rank([not all_finite(state)], state.info, next(state.model.parameters()).device)[0]:
        raise TrainingDiverged(
            f"the weights became non-finite at step {state.step} (optim.lr={state.config.optim.lr:g}); "
            f"nothing was saved for this step"
        )
    trainer_info = {
        "tokens_seen": state.tokens_seen,
        "elapsed_seconds": elapsed,
        "val_bits_per_token": val_bits,
        "world_size": state.info.world_size,
        "scorediff_version": __version__,
    }
    if is_sharded(state.config):
        return sharded.save(state, run_dir, tokenizer, trainer_info, export=last)
    if not state.info.is_main:
        return None
    model_state, ema_state, adapters = checkpoint_weights(state)  # a LoRA run's merged, plus its adapters
    return save_checkpoint(
        run_dir,
        state.step,
        state.objective.header(),
        state.config.to_dict(),
        model_state,
        ema_state,
        tokenizer,
        state.optimizer,
        trainer_info,
        keep_last=state.config.train.keep_last,
        adapters=adapters,
    )
