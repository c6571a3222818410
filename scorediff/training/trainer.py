"""The training loop: ``train(config)`` from Python, the same under ``torchrun`` on many GPUs and nodes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from .. import __version__
from ..builders import build_graph, build_model, build_schedule
from ..config import ConfigError, RunConfig, config_from_dict
from ..data.prepare import build_tokenizer, prepare_shards
from ..data.tokenizers import load_tokenizer
from ..data.windows import TokenWindows
from ..losses import sample_times, weighted_score_entropy
from . import distributed
from .checkpoint import list_checkpoints, load_optimizer, optimizer_tensors, read_json, read_tensors, save_checkpoint
from .ema import EMA
from .evaluate import evaluate_during_training
from .logger import MetricsLogger
from .optim import lr_at, make_optimizer, step_seed
from .resume import check_resumable


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


def run_directory(config: RunConfig) -> Path:
    name = config.train.run_name or f"{config.preset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    return Path(config.train.out_dir) / name


def train(config: RunConfig, resume: bool = False, until_step: int | None = None, progress: bool = True) -> TrainResult:
    """Train a score network as ``config`` says; resume the run in ``run_dir`` when ``resume``.

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
    info, device = distributed.setup(config.train.device)
    try:
        return _train(config, resume, until_step, progress, info, device)
    finally:
        distributed.teardown()


def _train(config, resume, until_step, progress, info, device) -> TrainResult:
    tc = config.train
    if tc.batch_size % (info.world_size * tc.grad_accum):
        raise ConfigError(
            f"train.batch_size={tc.batch_size} must be divisible by world_size * grad_accum = "
            f"{info.world_size} * {tc.grad_accum}"
        )
    run_dir = run_directory(config)
    checkpoints = list_checkpoints(run_dir)
    if resume and not checkpoints:
        raise ConfigError(f"cannot resume: {run_dir} holds no checkpoint")
    if not resume and checkpoints:
        raise ConfigError(f"run directory {run_dir} already holds checkpoints; pass resume or another run name")

    # Tokenizer and shards: rank 0 prepares (into the shard cache), the others read what it wrote.
    # Nothing is written into the run directory until the data and the model have been checked.
    tokenizer = None
    if resume:
        tokenizer = load_tokenizer(checkpoints[-1])
    elif info.is_main:
        tokenizer = build_tokenizer(
            config.data.tokenizer, config.data.source, config.data.text_field, config.data.bpe_vocab_size
        )
    shards = None
    if info.is_main:
        shards = _shards(config, tokenizer)
        tokenizer.save(shards)  # the shard folder is named after this tokenizer; the other ranks read it there
    shards = Path(distributed.broadcast_object(str(shards) if shards else None, info))
    if tokenizer is None:
        tokenizer = load_tokenizer(shards)
    seq_len = config.model.seq_len
    train_windows = TokenWindows(shards, "train", seq_len)
    val_windows = TokenWindows(shards, "val", seq_len)

    graph, schedule = build_graph(config.diffusion, tokenizer.vocab_size), build_schedule(config.diffusion)
    torch.manual_seed(tc.seed)  # the initial weights
    model = build_model(config, graph)
    config = dataclasses.replace(config, model=model.config)  # resolved: vocab_size, scale_by_sigma
    model.to(device)
    ema = EMA(model, tc.ema)
    optimizer = make_optimizer(model, config.optim, fused=device.type == "cuda")
    start_step, tokens_seen, elapsed_before = 0, 0, 0.0
    if resume:
        checkpoint = checkpoints[-1]
        check_resumable(read_json(checkpoint / "config.json"), config.to_dict(), run_dir)
        model.load_state_dict(read_tensors(checkpoint / "model.safetensors"))
        ema.load(read_tensors(checkpoint / "ema.safetensors"))
        state = read_json(checkpoint / "trainer_state.json")
        load_optimizer(optimizer, read_tensors(checkpoint / "trainer_state.safetensors"), state["optimizer"])
        start_step, tokens_seen, elapsed_before = state["step"], state["tokens_seen"], state["elapsed_seconds"]

    network = model
    if tc.compile:
        network = torch.compile(network)
    if info.enabled:
        network = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = distributed.bf16_autocast(device, tc.bf16)

    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(run_dir)
        (run_dir / "config.json").write_text(config.to_json())
    logger = MetricsLogger(run_dir, enabled=info.is_main)
    if info.is_main:
        logger.print(f"run directory: {run_dir}")
        logger.print(
            f"model: {model.num_parameters():,} parameters; data: {train_windows.meta['train_tokens']:,} "
            f"training tokens, {tokenizer!r}; {info.world_size} process(es) on {device.type}, "
            f"{'bf16 autocast' if tc.bf16 and distributed.fast_bf16(device) else 'float32'}"
        )
    local_batch = tc.batch_size // info.world_size
    micro_batch = local_batch // tc.grad_accum
    rows = slice(info.rank * local_batch, (info.rank + 1) * local_batch)
    last_step = min(tc.max_steps, until_step) if until_step is not None else tc.max_steps
    bar = logger.progress(total=tc.max_steps, initial=start_step, enabled=progress)
    window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
    run_start = time.perf_counter()
    tokens_per_second, val_bits, samples, train_loss = 0.0, None, [], float("nan")
    step, last_saved = start_step, None
    max_norm = config.optim.grad_clip if config.optim.grad_clip > 0 else float("inf")

    def out_of_time() -> bool:
        late = tc.max_minutes > 0 and (time.perf_counter() - run_start) > tc.max_minutes * 60
        return distributed.broadcast_flag(late, info, device)

    model.train()
    while step < last_step:
        generator = torch.Generator().manual_seed(step_seed(tc.seed, step, 0))
        x_0 = train_windows.random_batch(tc.batch_size, generator)  # the global batch, the same on every rank
        t = sample_times(
            tc.batch_size, antithetic=config.diffusion.antithetic, t_min=config.diffusion.t_min, generator=generator
        )
        x_t = graph.sample_transition(x_0, schedule.total(t), generator=generator)
        x_0, t, x_t = x_0[rows].to(device), t[rows].to(device), x_t[rows].to(device)
        torch.manual_seed(step_seed(tc.seed, step, 1 + info.rank))  # dropout

        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        loss_sum = torch.zeros((), device=device)
        for micro in range(tc.grad_accum):
            part = slice(micro * micro_batch, (micro + 1) * micro_batch)
            sync = micro == tc.grad_accum - 1 or not info.enabled
            with contextlib.nullcontext() if sync else network.no_sync(), autocast:
                per_sequence = weighted_score_entropy(network, graph, schedule, x_0[part], t[part], x_t=x_t[part])
                loss = per_sequence.sum() / (local_batch * seq_len)
            loss.backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(model, step)
        step += 1
        tokens_seen += tc.batch_size * seq_len

        step_loss = float(distributed.all_reduce_sum(loss_sum, info)) / info.world_size
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"training loss became {step_loss} at step {step}; lower optim.lr?")
        window_loss += step_loss
        window_count += 1
        bar.update(1)
        if step % tc.log_every == 0 or step == last_step:
            now = time.perf_counter()
            tokens_per_second = window_count * tc.batch_size * seq_len / max(now - window_start, 1e-9)
            train_loss = window_loss / window_count
            logger.log(
                {
                    "step": step,
                    "loss_nats_per_token": train_loss,
                    "lr": lr_at(step - 1, config),
                    "grad_norm": float(grad_norm),
                    "tokens_per_second": tokens_per_second,
                    "elapsed_seconds": elapsed_before + now - run_start,
                    "tokens_seen": tokens_seen,
                }
            )
            bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_second:,.0f}")
            window_loss, window_count, window_start = 0.0, 0, now

        stop = step == last_step or out_of_time()
        if (tc.eval_every and step % tc.eval_every == 0) or stop:
            val_bits, samples = evaluate_during_training(
                model, ema, graph, schedule, tokenizer, val_windows, config, step, info, device, logger
            )
            window_start = time.perf_counter()
            stop = stop or out_of_time()  # the evaluation used up the time: stop here, not one step later
        if (tc.save_every and step % tc.save_every == 0) or stop:
            last_saved = _save(
                run_dir,
                step,
                config,
                model,
                ema,
                tokenizer,
                optimizer,
                info,
                tokens_seen,
                elapsed_before + time.perf_counter() - run_start,
                val_bits,
            )
            window_start = time.perf_counter()
        if stop:
            break
    bar.close()
    logger.close()
    if info.is_main:
        logger.plot()
    # a resumed run that had already reached its last step saves nothing new
    checkpoint = (last_saved or list_checkpoints(run_dir)[-1]) if info.is_main else run_dir
    return TrainResult(
        run_dir, checkpoint, step, train_loss, val_bits, samples, tokens_per_second, model.num_parameters()
    )


def _shards(config: RunConfig, tokenizer) -> Path:
    data = config.data
    return prepare_shards(data.source, tokenizer, data.cache_dir or None, data.val_fraction, data.text_field)


def _save(run_dir, step, config, model, ema, tokenizer, optimizer, info, tokens_seen, elapsed, val_bits):
    if not info.is_main:
        return None
    tensors, rest = optimizer_tensors(optimizer)
    trainer_info = {
        "tokens_seen": tokens_seen,
        "elapsed_seconds": elapsed,
        "val_bits_per_token": val_bits,
        "world_size": info.world_size,
        "optimizer": rest,
        "scorediff_version": __version__,
    }
    return save_checkpoint(
        run_dir,
        step,
        config.to_dict(),
        model.state_dict(),
        ema.state_dict(model),
        tokenizer,
        tensors,
        trainer_info,
        keep_last=config.train.keep_last,
    )


def config_of_run(run_dir: str | Path) -> RunConfig:
    """The configuration a run directory was started with."""
    return config_from_dict(json.loads((Path(run_dir) / "config.json").read_text()))
