"""The training loop: ``train(config)`` from Python, the same under ``torchrun`` on many GPUs and nodes."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import list_checkpoints
from ..config import RunConfig
from ..devices import fast_bf16
from . import distributed
from .adapt import unfinished_anneal_warning
from .budget import FIRST_FIT, BudgetProbe, fit_message, fit_schedule, unfinished_schedule_warning
from .evaluate import evaluate_during_training
from .fsdp import check_parallel
from .logger import MetricsLogger
from .lora import attach, parameter_summary, require_peft
from .progress import Window
from .rundir import claim_on_main, discard_if_empty, find_start, run_directory, save, write_config
from .setup import (
    RunData,
    build,
    check_arguments,
    check_batch,
    check_resume,
    data_tokens,
    initialise,
    load_initial,
    prepare_data,
    resolve_from_data,
    restore,
)
from .step import StepOutput, TrainState, draw_batch, release_network, step_or_fall_back, train_step
from .stopping import Stop, StopRules


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
    check_arguments(config, resume, until_step)
    started = time.perf_counter()
    info, device = distributed.setup(config.train.device)
    deterministic = torch.are_deterministic_algorithms_enabled()
    if device.type == "cpu":
        # compiled CPU kernels otherwise reduce in an order that varies between processes (about 1% slower)
        torch.use_deterministic_algorithms(True)
    state = None
    try:
        check_batch(config, info)
        check_parallel(config, info)
        require_peft(config)
        run_dir = run_directory(config)
        checkpoint = find_start(run_dir, resume)
        lora_rank = config.train.lora_rank
        starts = config.train.init and (checkpoint is None or lora_rank)  # LoRA's frozen weights are not saved apart
        initial = load_initial(config.train.init) if starts else None  # its tokenizer, then its weights
        data = prepare_data(config, info, checkpoint, initial)
        config = resolve_from_data(config, data)
        state = build(config, data.tokenizer, device, info, data_tokens(checkpoint, initial))
        if starts:
            initialise(state, config.train.init, initial)
        del initial  # the network holds its weights now; a large model is not kept twice
        if lora_rank:
            state = attach(state, device)
        if checkpoint is not None:
            check_resume(state, checkpoint, run_dir)
        fresh = info.is_main and not run_dir.exists()
        # only now, with data and model checked, is anything written
        lock = claim_on_main(run_dir, checkpoint, resume, info)
        try:
            elapsed_before = restore(state, checkpoint) if checkpoint is not None else 0.0
            logger = _open_log(state, data, run_dir, device)
            run = _Run(state, data, run_dir, device, logger, until_step, progress, started, elapsed_before)
            result = _loop(run)
            distributed.barrier(info)  # rank 0 may still be writing; tearing gloo down under it can abort a peer
        except BaseException:
            if fresh:
                discard_if_empty(run_dir)
            raise
        finally:
            if lock is not None:
                lock.release()
        return result
    finally:
        torch.use_deterministic_algorithms(deterministic)
        release_network(state)
        distributed.teardown()


@dataclass
class _Run:
    """What the loop works with, besides the ``TrainState`` it advances, and what it has produced so far."""

    state: TrainState
    data: RunData
    run_dir: Path
    device: torch.device
    logger: MetricsLogger
    until_step: int | None
    """Stop after this step too (None: at the schedule's end only)."""
    progress: bool
    """Show a progress bar (rank 0)."""
    started: float
    """``time.perf_counter()`` when ``train`` was called: the time budget counts the setup too."""
    elapsed_before: float
    """Seconds of training before this process (those of a resumed run)."""
    loop_started: float = field(init=False)
    """``time.perf_counter()`` when the loop started: ``train.max_minutes`` counts from here."""
    bar: Any = field(init=False)
    rules: StopRules = field(init=False)
    probe: BudgetProbe = field(init=False)
    window: Window = field(default_factory=Window)
    val_bits: float | None = None
    samples: list[str] = field(default_factory=list)
    last_saved: Path | None = None
    interrupted: str | None = None

    def __post_init__(self):
        tc, optim = self.state.config.train, self.state.config.optim
        self.bar = self.logger.progress(total=tc.max_steps, initial=self.state.step, enabled=self.progress)
        anneal_warning = unfinished_anneal_warning(tc.max_steps, tc.attention_anneal_steps)
        for warning in (unfinished_schedule_warning(tc), anneal_warning):
            if warning:
                self.logger.print(warning)
        self.rules = StopRules(tc, self.until_step, self.state.info, self.device)
        self.probe = BudgetProbe(self.state.step, BudgetProbe.refit_at(optim.warmup_steps), cap=tc.max_steps)
        self.loop_started = time.perf_counter()

    def loop_seconds(self) -> float:
        return time.perf_counter() - self.loop_started

    def elapsed(self) -> float:
        """Seconds of training of the whole run, resumed or not."""
        return self.elapsed_before + self.loop_seconds()


def _open_log(state: TrainState, data: RunData, run_dir: Path, device: torch.device) -> MetricsLogger:
    """Write the run's config and tokenizer (rank 0), open the metrics log and print the run header."""
    info, tc = state.info, state.config.train
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        data.tokenizer.save(run_dir)
        write_config(state, run_dir)
    logger = MetricsLogger(run_dir, enabled=info.is_main)
    precision = "bf16 autocast" if tc.bf16 and fast_bf16(device) else "float32"
    logger.print(f"run directory: {run_dir}")
    logger.print(
        f"{state.objective.name} model: {parameter_summary(state.model)}; data: "
        f"{data.train.meta['train_tokens']:,} training tokens, {data.tokenizer!r}; "
        f"{info.world_size} process(es) on {device.type}, {precision}"
    )
    return logger


def _loop(run: _Run) -> TrainResult:
    """Step until a stop rule says so (see ``stopping``), fitting the schedule to the budget, logging, evaluating
    and saving as the run's config says; the last step is always evaluated (unless a signal stopped it) and saved."""
    state = run.state
    state.model.train()
    with run.rules:
        while state.step < run.rules.last_step(state.config.train):
            output = _step(run)
            _fit_when_timed(run)
            _log_when_due(run, output)
            if _evaluate_and_save(run, run.rules.after_step(state, run.loop_seconds())):
                break
    return _finish(run)


def _step(run: _Run) -> StepOutput:
    """One optimizer step, through the NaN guard, counted in the window and the progress bar."""
    state, info = run.state, run.state.info

    def next_step():  # the batch is drawn inside, so a step retried without compilation draws the same again
        return train_step(state, draw_batch(state, run.data.train, run.device))

    output = step_or_fall_back(state, next_step, run.logger.print)
    run.rules.guard(output, state)
    run.window.add(None if output.skipped else float(distributed.all_reduce_sum(output.loss, info)) / info.world_size)
    run.bar.update(1)
    return output


def _fit_when_timed(run: _Run) -> None:
    """When the budget's probe has timed its steps: fit the schedule, record it in the run's config, and say so
    for the first fit and the last."""
    state, probe = run.state, run.probe
    step_seconds = probe.after_step(state) if probe.wants(state) else None
    if step_seconds is None:
        return
    first = state.step == FIRST_FIT
    steps = fit_schedule(state, probe, step_seconds, time.perf_counter() - run.started, run.data.val, run.device)
    state.config = dataclasses.replace(state.config, train=dataclasses.replace(state.config.train, max_steps=steps))
    if state.info.is_main:
        write_config(state, run.run_dir)
    timing = {"step_seconds": step_seconds, "eval_seconds": probe.eval_seconds}
    run.logger.log({"step": state.step, "schedule_steps": steps, **timing})
    final = probe.final(state)
    if first or final:
        run.logger.print(fit_message(state.config.train, step_seconds, probe.eval_seconds, final))
    probe.restart(state.step)
    run.bar.total = steps
    run.bar.refresh()


def _log_when_due(run: _Run, output: StepOutput) -> None:
    """Every ``train.log_every`` steps and at the last: the window's loss and throughput."""
    state = run.state
    if state.step % state.config.train.log_every and state.step != run.rules.last_step(state.config.train):
        return
    record = run.window.record(state, output.grad_norm, run.elapsed())
    run.logger.log({**record, "skipped_steps": run.rules.skips.total})
    throughput = f"{record['tokens_per_second']:,.0f}"
    run.bar.set_postfix(loss=f"{run.window.train_loss:.3f}", tok_s=throughput, skipped=run.rules.skips.total)


def _evaluate_and_save(run: _Run, stop: Stop) -> bool:
    """Evaluate and save when due or when stopping; returns whether the loop stops after this step."""
    state, tc = run.state, run.state.config.train
    aside = time.perf_counter()  # evaluations and checkpoints are not step time for the budget's probe
    stopping, run.interrupted = stop.now, stop.signal
    if (_due(state.step, tc.eval_every) or stopping) and stop.signal is None:
        run.val_bits, run.samples = evaluate_during_training(
            state, run.data.tokenizer, run.data.val, run.device, run.logger
        )
        run.window.restart()
        stopping = stopping or run.rules.late(run.loop_seconds())  # the evaluation used up the time: stop now
    if _due(state.step, tc.save_every) or stopping:
        saved = save(state, run.run_dir, run.data.tokenizer, run.elapsed(), run.val_bits, last=stopping)
        run.last_saved = saved or run.last_saved
        run.window.restart()
    run.probe.exclude(time.perf_counter() - aside)
    return stopping


def _due(step: int, every: int) -> bool:
    return bool(every) and step % every == 0


def _finish(run: _Run) -> TrainResult:
    """Close the log (rank 0 plots it) and report the run."""
    run.bar.close()
    run.logger.close()
    info = run.state.info
    if info.is_main:
        run.logger.plot()
    # a resumed run that had already reached its last step saves nothing new
    checkpoint = (run.last_saved or list_checkpoints(run.run_dir)[-1]) if info.is_main else run.run_dir
    return TrainResult(
        run.run_dir,
        checkpoint,
        run.state.step,
        run.window.train_loss,
        run.val_bits,
        run.samples,
        run.window.tokens_per_second,
        run.state.model.num_parameters(),
        run.interrupted,
    )
