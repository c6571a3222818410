"""The training loop: ``train(config)`` from Python, the same under ``torchrun`` on many GPUs and nodes."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import CONFIG_FILE, config_json, list_checkpoints, read_config, save_checkpoint
from ..config import ConfigError, RunConfig, config_from_dict
from ..data.dna import random_reverse_complement
from ..devices import fast_bf16
from ..fileio import atomic_write_text
from ..version import __version__
from . import distributed
from .budget import (
    FIRST_FIT,
    SAFETY,
    BudgetProbe,
    evaluation_seconds,
    schedule_steps,
    stop_seconds,
    unfinished_schedule_warning,
)
from .evaluate import evaluate_during_training
from .logger import MetricsLogger
from .optim import step_seed
from .progress import Skips, Window
from .rundir import claim, find_start, run_directory
from .setup import RunData, build, check_batch, prepare_data, resolve_from_data, restore
from .signals import StopSignals
from .step import TrainingDiverged, TrainState, all_finite, step_or_fall_back, train_step


@dataclass
class TrainResult:
    """What a finished (or time-limited) run produced."""

    run_dir: Path
    checkpoint: Path
    step: int
    train_loss: float
    """Mean training loss over the last logging window, nats per token."""
    val_bits_per_token: float | None
    samples: list[str]
    tokens_per_second: float
    num_parameters: int
    interrupted: str | None = None
    """``"SIGTERM"`` or ``"SIGINT"`` when a signal stopped the run (after saving a checkpoint)."""


def train(config: RunConfig, resume: bool = False, until_step: int | None = None, progress: bool = True) -> TrainResult:
    """Train a model as ``config`` says; resume the run in its run directory when ``resume``.

    Every batch, time and noise draw is a function of ``(train.seed, step)``, and dropout is seeded per
    (step, rank), so a resumed run continues exactly as an uninterrupted one, and a run on N processes
    sees the same global batches as a run on one.

    Args:
        config: the run configuration (``train.run_name`` names the run directory under ``train.out_dir``).
        resume: continue from the latest checkpoint of that run directory.
        until_step: stop after this step (saving a checkpoint) without changing the schedule, which
            still ends at ``train.max_steps``.
        progress: show a progress bar on rank 0.
    """
    started = time.perf_counter()
    info, device = distributed.setup(config.train.device)
    deterministic = torch.are_deterministic_algorithms_enabled()
    if device.type == "cpu":
        # compiled CPU kernels otherwise reduce in an order that varies between processes (about 1% slower)
        torch.use_deterministic_algorithms(True)
    try:
        check_batch(config, info)
        run_dir = run_directory(config)
        checkpoint = find_start(run_dir, resume)
        data = prepare_data(config, info, checkpoint)
        config = resolve_from_data(config, data)
        state = build(config, data.tokenizer, device, info)
        lock = _claim(run_dir, checkpoint, resume, info)  # only now, with data and model checked, is anything written
        try:
            elapsed_before = restore(state, checkpoint, run_dir) if checkpoint is not None else 0.0
            result = _loop(state, data, run_dir, device, until_step, progress, elapsed_before, started)
            distributed.barrier(info)  # rank 0 may still be writing; tearing gloo down under it can abort a peer
        finally:
            if lock is not None:
                lock.release()
        return result
    finally:
        torch.use_deterministic_algorithms(deterministic)
        distributed.teardown()


def _claim(run_dir: Path, checkpoint: Path | None, resume: bool, info):
    """Rank 0 takes the run's lock; a refusal reaches every rank, so none waits for the others forever."""
    lock, refusal = None, None
    if info.is_main:
        try:
            lock = claim(run_dir, checkpoint, resume)
        except ConfigError as error:
            refusal = str(error)
    refusal = distributed.broadcast_object(refusal, info)
    if refusal:
        raise ConfigError(refusal)
    return lock


def draw_batch(state: TrainState, windows, device: torch.device) -> dict[str, torch.Tensor]:
    """This process's rows of the global batch of the current step, with the objective's noise, on ``device``."""
    tc, info = state.config.train, state.info
    generator = torch.Generator().manual_seed(step_seed(tc.seed, state.step, 0))
    examples = windows.random_examples(tc.batch_size, generator)  # the global batch, the same on every rank
    x_0 = examples["x_0"]
    if state.config.data.reverse_complement:
        x_0 = random_reverse_complement(x_0, generator)
    fields = {"given": examples["given"]} if "given" in examples else {}
    if state.config.model.num_labels:
        fields["label"] = examples["label"]
    batch = state.objective.draw(x_0, generator, **fields)
    local = tc.batch_size // info.world_size
    rows = slice(info.rank * local, (info.rank + 1) * local)
    torch.manual_seed(step_seed(tc.seed, state.step, 1 + info.rank))  # dropout
    return {name: value[rows].to(device) for name, value in batch.items()}


def _loop(state, data: RunData, run_dir, device, until_step, progress, elapsed_before, started) -> TrainResult:
    info, tc = state.info, state.config.train
    logger = _start_logging(state, data, run_dir, device)
    last_step = min(tc.max_steps, until_step) if until_step is not None else tc.max_steps
    bar = logger.progress(total=tc.max_steps, initial=state.step, enabled=progress)
    window, skips = Window(), Skips(tc.max_skipped_steps)
    run_start = time.perf_counter()
    val_bits, samples, last_saved, interrupted = None, [], None, None
    probe = BudgetProbe(state.step, BudgetProbe.refit_at(state.config.optim.warmup_steps))
    configured_steps = tc.max_steps  # a fit may lengthen an earlier fit's schedule up to here
    stop_after, warning = stop_seconds(tc), unfinished_schedule_warning(tc)
    if warning:
        logger.print(warning)
    state.model.train()

    def next_step():  # the batch is drawn inside, so a step retried without compilation draws the same again
        return train_step(state, draw_batch(state, data.train, device))

    with StopSignals() as signals:
        while state.step < last_step:
            output = step_or_fall_back(state, next_step, logger.print)
            skips.count(output, state)
            loss = None if output.skipped else float(distributed.all_reduce_sum(output.loss, info)) / info.world_size
            window.add(loss)
            bar.update(1)
            step_seconds = probe.after_step(state) if probe.wants(state) else None
            if step_seconds is not None:
                elapsed = time.perf_counter() - started
                fit_to_budget(state, data, run_dir, device, step_seconds, elapsed, configured_steps, logger, probe)
                probe.restart(state.step)
                tc = state.config.train
                last_step = min(tc.max_steps, until_step) if until_step is not None else tc.max_steps
                bar.total = tc.max_steps
                bar.refresh()
            if state.step % tc.log_every == 0 or state.step == last_step:
                record = window.record(state, output.grad_norm, elapsed_before + time.perf_counter() - run_start)
                logger.log({**record, "skipped_steps": skips.total})
                shown = f"{window.train_loss:.3f}"
                bar.set_postfix(loss=shown, tok_s=f"{record['tokens_per_second']:,.0f}", skipped=skips.total)
            late = time.perf_counter() - run_start > stop_after
            late, signalled = distributed.any_rank([late, signals.received is not None], info, device)
            interrupted = (signals.received or "SIGTERM") if signalled else None
            stop = state.step == last_step or late or signalled
            aside = time.perf_counter()  # evaluations and checkpoints are not step time for the budget's probe
            if ((tc.eval_every and state.step % tc.eval_every == 0) or stop) and not signalled:
                val_bits, samples = evaluate_during_training(state, data.tokenizer, data.val, device, logger)
                window.restart()
                # the evaluation used up the time: stop here, not one step later
                stop = stop or time.perf_counter() - run_start > stop_after
                stop = distributed.any_rank([stop], info, device)[0]
            if (tc.save_every and state.step % tc.save_every == 0) or stop:
                elapsed = elapsed_before + time.perf_counter() - run_start
                last_saved = save(state, run_dir, data.tokenizer, elapsed, val_bits) or last_saved
                window.restart()
            probe.exclude(time.perf_counter() - aside)
            if stop:
                break
    bar.close()
    logger.close()
    if info.is_main:
        logger.plot()
    # a resumed run that had already reached its last step saves nothing new
    checkpoint = (last_saved or list_checkpoints(run_dir)[-1]) if info.is_main else run_dir
    return TrainResult(
        run_dir,
        checkpoint,
        state.step,
        window.train_loss,
        val_bits,
        samples,
        window.tokens_per_second,
        state.model.num_parameters(),
        interrupted,
    )


def fit_to_budget(
    state: TrainState, data: RunData, run_dir: Path, device, step_seconds, elapsed, cap, logger, probe: BudgetProbe
) -> None:
    """Set ``train.max_steps`` to what fits in ``train.time_budget_minutes`` (at most ``cap``, the configured
    value) and record it in the run's config; say so for the first fit and the last."""
    first = state.step == FIRST_FIT
    tc = state.config.train
    if probe.eval_seconds is None or state.step <= probe.refit_step:  # measured in the warmup, then kept
        probe.eval_seconds = evaluation_seconds(state, data.val, device)
    eval_seconds = probe.eval_seconds
    left = SAFETY * tc.time_budget_minutes * 60 - elapsed
    steps = schedule_steps(state, step_seconds, eval_seconds, left, cap=cap)
    steps = distributed.broadcast_object(steps, state.info)  # rank 0's measurement decides for all
    state.config = dataclasses.replace(state.config, train=dataclasses.replace(tc, max_steps=steps))
    if state.info.is_main:
        atomic_write_text(run_dir / CONFIG_FILE, config_json(state.objective.header(), state.config.to_dict()))
    logger.log(
        {"step": state.step, "schedule_steps": steps, "step_seconds": step_seconds, "eval_seconds": eval_seconds}
    )
    final = probe.final(state)
    if first or final:
        logger.print(
            f"time budget {tc.time_budget_minutes:g} min: {step_seconds * 1000:.0f} ms per step, about "
            f"{eval_seconds:.0f} s per evaluation; the schedule ends at step {steps:,}"
            + ("" if final else " (fitted again as the run goes)")
        )


def _start_logging(state: TrainState, data: RunData, run_dir: Path, device) -> MetricsLogger:
    """Write the run's config and tokenizer (rank 0), open the metrics log and print the run header."""
    info, tc = state.info, state.config.train
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        data.tokenizer.save(run_dir)
        (run_dir / CONFIG_FILE).write_text(config_json(state.objective.header(), state.config.to_dict()))
    logger = MetricsLogger(run_dir, enabled=info.is_main)
    precision = "bf16 autocast" if tc.bf16 and fast_bf16(device) else "float32"
    logger.print(f"run directory: {run_dir}")
    logger.print(
        f"{state.objective.name} model: {state.model.num_parameters():,} parameters; data: "
        f"{data.train.meta['train_tokens']:,} training tokens, {data.tokenizer!r}; "
        f"{info.world_size} process(es) on {device.type}, {precision}"
    )
    return logger


def save(state: TrainState, run_dir: Path, tokenizer, elapsed: float, val_bits: float | None) -> Path | None:
    """Write a checkpoint of ``state`` (rank 0 only; the others return None); weights that are no longer finite
    are never saved."""
    if not all_finite(state):
        raise TrainingDiverged(
            f"the weights became non-finite at step {state.step} (optim.lr={state.config.optim.lr:g}); "
            f"nothing was saved for this step"
        )
    if not state.info.is_main:
        return None
    trainer_info = {
        "tokens_seen": state.tokens_seen,
        "elapsed_seconds": elapsed,
        "val_bits_per_token": val_bits,
        "world_size": state.info.world_size,
        "scorediff_version": __version__,
    }
    return save_checkpoint(
        run_dir,
        state.step,
        state.objective.header(),
        state.config.to_dict(),
        state.model.state_dict(),
        state.ema.state_dict(state.model),
        tokenizer,
        state.optimizer,
        trainer_info,
        keep_last=state.config.train.keep_last,
    )


def config_of_run(run_dir: str | Path) -> RunConfig:
    """The configuration a run directory was started with."""
    return config_from_dict(read_config(Path(run_dir))[1])
