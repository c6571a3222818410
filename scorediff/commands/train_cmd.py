"""``scorediff train``: the main job."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ..config import load_config, override_config, presets
from ..data.chat import reads_own_bos
from ..data.examples import example_format, example_splits
from ..errors import ScorediffError
from ..generation import generate, sampling_options
from ..loading import load
from ..training import train
from ..training.rundir import config_of_run
from ..training.signals import EXIT_CODES
from . import UsageError, check_device, check_folder_writable, check_memory, positive
from .generate import estimate_bytes
from .prompts import answer_text


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="train a model (default: the tiny preset on the embedded Shakespeare corpus, on the CPU)",
        description="Train a score network. Any option of the run configuration can be set with "
        "--section.key=value, e.g. --model.hidden_size=384 --train.batch_size=64.",
    )
    parser.add_argument(
        "--config",
        help=f"preset name ({', '.join(presets())}) or a YAML file "
        "(default: tiny; when resuming, the run's own configuration)",
    )
    parser.add_argument(
        "--data",
        action="append",
        help="embedded corpus, text file, folder, glob, JSONL, FASTA or saved dataset; FASTA with --tokenizer dna "
        "may be labelled for a conditional model and repeated: --data ecoli=a.fa.gz --data saureus=b.fa.gz",
    )
    parser.add_argument("--tokenizer", help="char | byte | dna | gpt2 | bpe | path to a tokenizer")
    parser.add_argument("--out", help="parent folder of run directories (default: runs)")
    parser.add_argument("--name", help="run directory name (default: <preset>-<date>-<time>)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="RUN_DIR",
        help="continue a run: the given run directory, or the newest one under --out",
    )
    parser.add_argument(
        "--init",
        metavar="MODEL",
        help="start from this model's weights (a checkpoint, run directory or Hub id that scorediff loads) "
        "instead of random ones; its shapes must be the run's",
    )
    parser.add_argument("--device", help="auto | cpu | cuda")
    parser.add_argument("--max-minutes", type=float, help="stop after this many minutes and save")
    parser.add_argument("--num-samples", type=int, default=3, help="samples printed at the end")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run, accepts_overrides=True)


def _newest_run(out: Path) -> Path:
    candidates = out.iterdir() if out.is_dir() else []
    runs = sorted((p for p in candidates if (p / "checkpoints").is_dir()), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise UsageError(f"--resume: no run with checkpoints under {out}")
    return runs[-1]


def _last_value(overrides: list[str], key: str) -> str | None:
    """The value the last ``key=value`` (or ``--key=value``) of ``overrides`` gives, None when none does."""
    values = [o.partition("=")[2] for o in overrides if o.removeprefix("--").partition("=")[0] == key]
    return values[-1] if values else None


def _refuse_a_second_tokenizer(init: str, flag: str) -> None:
    """A run from ``--init`` reads its data with the model's own tokenizer, the ids its weights were trained on: a
    ``--tokenizer`` beside it would be ignored. It is refused unless the model comes without one (SEDD's layout
    without GPT-2 installed); the model is read on the meta device, its header only."""
    try:
        tokenizer = load(init, device="meta").tokenizer
    except ScorediffError as error:
        raise UsageError(f"--init: {error}") from None
    if tokenizer is not None:
        raise UsageError(
            f"{flag}: a run from --init {init} reads its data with that model's own tokenizer "
            f"({tokenizer.vocab_size:,} tokens), the ids its weights know; leave {flag} out"
        )


def _check_samples_fit(config, num_samples: int) -> None:
    """The previews and the closing samples are drawn after minutes or hours of training: a request no memory
    holds is refused before the first step, not after the last (a lower bound when the vocabulary is not known
    until the data is read)."""
    count = max(num_samples, config.train.preview_samples)
    length = config.sampling.length or config.model.seq_len
    needed = estimate_bytes(config.model, count, length, config.sampling.steps)
    check_memory(needed, "fewer --num-samples or train.preview_samples, or a shorter sampling.length")


def run(args: argparse.Namespace) -> int:
    positive("--max-minutes", args.max_minutes)
    if args.device:
        check_device(args.device)
    check_folder_writable(args.out or "runs")
    positive("--num-samples", args.num_samples, allow_zero=True)
    overrides = list(args.overrides)
    for flag, key in (
        (",".join(args.data) if args.data else None, "data.source"),
        (args.tokenizer, "data.tokenizer"),
        (args.out, "train.out_dir"),
        (args.name, "train.run_name"),
        (args.device, "train.device"),
        (args.init, "train.init"),
        (args.max_minutes, "train.max_minutes"),
    ):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    # an empty value would silently mean no value: random weights, a dated run name
    for flag, key, expected in (
        (args.init is not None and "--init", "train.init", "a checkpoint, run directory, .gguf file or Hub id"),
        (args.name is not None and "--name", "train.run_name", "a run directory name"),
    ):
        value = _last_value(overrides, key)
        if value is not None and not value.strip():
            raise UsageError(f"{flag or '--' + key} expects {expected}; got {value!r}")
    init = _last_value(overrides, "train.init")
    resume = args.resume is not None
    if resume and init:
        raise UsageError("--init starts a new run from a model; --resume continues a run from its own weights")
    if init and _last_value(overrides, "data.tokenizer"):  # named here, not a preset's that the model replaces
        _refuse_a_second_tokenizer(init, "--tokenizer" if args.tokenizer else "--data.tokenizer")
    if resume:
        run_dir = _newest_run(Path(args.out or "runs")) if args.resume is True else Path(args.resume)
        if not (run_dir / "config.json").is_file():
            raise UsageError(f"--resume: {run_dir} is not a run directory (no config.json)")
        overrides += [f"train.out_dir={run_dir.parent}", f"train.run_name={run_dir.name}"]
        if args.config is None:
            config = override_config(config_of_run(run_dir), overrides)
        else:
            config = load_config(args.config, overrides)
    else:
        config = load_config(args.config or "tiny", overrides)
    _check_samples_fit(config, args.num_samples)
    start = time.perf_counter()
    result = train(config, resume=resume, progress=not args.quiet)
    if int(os.environ.get("RANK", 0)) != 0:  # under torchrun only the first process reports
        return 0
    minutes = (time.perf_counter() - start) / 60
    if result.interrupted:
        print(
            f"\nstopped by {result.interrupted} at step {result.step}; checkpoint: {result.checkpoint}\n"
            f"continue with: scorediff train --resume {result.run_dir}"
        )
        return EXIT_CODES[result.interrupted]
    print(
        f"\nfinished step {result.step} in {minutes:.1f} min; {result.num_parameters:,} parameters, "
        f"{result.tokens_per_second:,.0f} tokens/s"
    )
    if result.val_bits_per_token is not None:
        what = "nll" if config.objective == "autoregressive" else "bound"
        print(f"validation {what}: {result.val_bits_per_token:.3f} bits/token (EMA weights)")
    print(f"checkpoint: {result.checkpoint}")
    if args.num_samples:
        if not args.quiet:  # a large model's samples take minutes on a CPU: say what the wait is
            what = "a sample" if args.num_samples == 1 else f"{args.num_samples} samples"
            print(f"\ndrawing {what} to show (--num-samples 0 skips them)", flush=True)
        _print_samples(load(result.checkpoint), config, args.num_samples)
    return 0


def _print_samples(loaded, config, count: int) -> None:
    """Samples of the trained model; for prompted examples, its answers to the first validation prompts."""
    options = sampling_options(config)
    if example_format(config.data.source):
        reads_bos = reads_own_bos(loaded.kind, loaded.model.config)
        val = example_splits(config.data.source, loaded.tokenizer, config.model.seq_len, config.data.val_fraction,
                             config.train.seed, reads_bos)[1].spread_examples(count)  # fmt: skip
        tokens, given = val["x_0"], val["given"]
        answers = generate(loaded.objective, loaded.model, tuple(tokens.shape), options, condition=(tokens, given))
        for index, (row, known, reference) in enumerate(zip(answers.tokens, given, tokens, strict=True)):
            prompt = loaded.tokenizer.decode(row[known].tolist())
            print(f"\n--- prompt {index + 1} ---\n{prompt}\n--- answer ---\n{answer_text(loaded.tokenizer, row, known)}"
                  f"\n--- reference ---\n{answer_text(loaded.tokenizer, reference, known)}")  # fmt: skip
        return
    length = config.sampling.length or config.model.seq_len
    tokens = generate(loaded.objective, loaded.model, (count, length), options).tokens
    for index, row in enumerate(tokens):
        print(f"\n--- sample {index + 1} ---\n{loaded.tokenizer.decode(row.tolist())}")
