"""The ``scorediff`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time

import torch

from . import AbsorbingGraph, ExactScore, GeometricSchedule, LogLinearSchedule, UniformGraph, elbo, sample
from .commands import (
    UsageError,
    chat_cmd,
    dna,
    evaluate,
    export_cmd,
    infill_cmd,
    lm_eval_cmd,
    plan_cmd,
    playground_cmd,
    prepare_cmd,
    push,
    sample_cmd,
    seed_value,
    train_cmd,
)
from .devices import keep_freed_memory
from .errors import ScorediffError
from .version import __version__


def _usage(message: str):
    return UsageError(message)


def _demo(args: argparse.Namespace) -> int:
    """Sample a known distribution with its exact score and report how close the samples come."""
    if args.num_tokens < 2 or args.seq_len < 1 or args.num_tokens**args.seq_len > 100_000:
        raise _usage(
            f"--num-tokens >= 2 and --seq-len >= 1 with num_tokens ** seq_len <= 100000 expected; "
            f"got {args.num_tokens} and {args.seq_len}"
        )
    if args.samples < 1 or args.steps < 1:
        raise _usage(f"--samples and --steps must be >= 1; got {args.samples} and {args.steps}")
    torch.manual_seed(args.seed)  # the Dirichlet draw of the data distribution
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.num_tokens,) * args.seq_len
    data_probs = torch.distributions.Dirichlet(torch.full((args.num_tokens**args.seq_len,), 0.5, dtype=torch.float64))
    data_probs = data_probs.sample().reshape(shape)
    flat = data_probs.reshape(-1)
    entropy = float(-(flat * flat.log()).sum())
    strides = args.num_tokens ** torch.arange(args.seq_len - 1, -1, -1)
    setups = [
        ("absorbing", AbsorbingGraph(args.num_tokens), LogLinearSchedule()),
        ("uniform", UniformGraph(args.num_tokens), GeometricSchedule()),
    ]
    print(
        f"data: {args.num_tokens} tokens, length {args.seq_len}, {flat.numel()} sequences, "
        f"entropy {entropy:.4f} nats; {args.samples} samples with the exact score, {args.steps} steps"
    )
    reference = torch.multinomial(flat, args.samples, True, generator=generator)
    floor = 0.5 * float((torch.bincount(reference, minlength=flat.numel()) / args.samples - flat).abs().sum())
    print(f"  total variation of {args.samples} exact draws from the data itself (the noise floor): {floor:.4f}")
    x_0_index = torch.multinomial(flat, 2000, True, generator=generator)
    x_0 = torch.stack(torch.unravel_index(x_0_index, shape), -1)
    nll = float(-flat[x_0_index].log().mean())
    results = [{"noise_floor_total_variation": floor}]
    for graph_name, graph, schedule in setups:
        score_fn = ExactScore(graph, data_probs)
        for predictor in ("analytic", "euler"):
            start = time.perf_counter()
            shape_out = (args.samples, args.seq_len)
            x = sample(score_fn, graph, schedule, shape_out, args.steps, predictor, generator=generator)
            counts = torch.bincount((x * strides).sum(-1), minlength=flat.numel()).double()
            tv = 0.5 * float((counts / args.samples - flat).abs().sum())
            seconds = time.perf_counter() - start
            print(f"  {graph_name:9s} {predictor:8s} total variation to the data: {tv:.4f} ({seconds:.1f}s)")
            results.append({"graph": graph_name, "predictor": predictor, "total_variation": tv, "seconds": seconds})
        # Paired per draw: the bound minus -log p(x_0) is >= 0 on average (by KL(p_1 || base)), up to Monte Carlo error.
        gaps = elbo(score_fn, graph, schedule, x_0, num_t=32, generator=generator) + flat[x_0_index].log()
        gap, error = float(gaps.mean()), 1.96 * float(gaps.std()) / len(gaps) ** 0.5
        print(
            f"  {graph_name:9s} likelihood bound - (-log p(x_0)) = {gap:+.4f} +- {error:.4f} nats/sequence "
            f"(-log p(x_0) = {nll:.4f}; 2000 draws)"
        )
        results.append({"graph": graph_name, "bound_minus_nll_nats": gap, "ci95": error, "nll_nats": nll})
    if args.json:
        print(json.dumps(results))
    return 0


LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # every character str.splitlines breaks at


def one_line(text: object) -> str:
    """``text`` on one line: line breaks that came with a user's input are shown escaped."""
    return "".join(c.encode("unicode_escape").decode() if c in LINE_BREAKS else c for c in str(text))


_CPU_ALLOCATOR = re.compile(r"DefaultCPUAllocator: (can't allocate memory|not enough memory)")
# what CUDA reports as a plain RuntimeError when memory runs out outside the caching allocator (a kernel, cuBLAS)
_CUDA_OUT_OF_MEMORY = re.compile(r"CUDA error: out of memory|CUBLAS_STATUS_ALLOC_FAILED")
# torch.OutOfMemoryError is torch >= 2.5's name for it; the package accepts torch >= 2.2
_GPU_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
# torch's CPU allocator says "allocate 4294967296 bytes", its GPU allocators and numpy "allocate 4.00 GiB"
_REQUEST = re.compile(r"allocate (\d+(?:\.\d+)?) ?(bytes|KiB|MiB|GiB|TiB|PiB|EiB)\b")
_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_LOWER = {
    "train": "lower train.batch_size (or raise train.grad_accum) or model.seq_len",
    "sample": "ask for fewer --num-samples, a smaller --batch-size or a shorter --length",
    "infill": "ask for fewer --num-samples or a shorter --length",
    "chat": "ask for a shorter --length",
    "eval": "lower --batch-size",
    "eval-dna": "ask for fewer --num-samples or a smaller --batch-size",
    "lm-eval": "lower --batch-size",
}


def out_of_memory(error: BaseException, command: str) -> str | None:
    """The one line for an allocation that failed (``torch.OutOfMemoryError`` of a GPU, the CPU allocator's
    RuntimeError, Python's or numpy's MemoryError): what ran out, the size asked for, and what to lower for
    ``command``; None for any other error."""
    text = str(error)
    if isinstance(error, _GPU_OUT_OF_MEMORY) or (isinstance(error, RuntimeError) and _CUDA_OUT_OF_MEMORY.search(text)):
        what = "GPU memory"
    elif isinstance(error, RuntimeError) and _CPU_ALLOCATOR.search(text):
        what = "CPU memory"
    elif isinstance(error, MemoryError):
        what = "memory"
    else:
        return None
    request = _REQUEST.search(text)
    if request:
        size = float(request.group(1)) * 1024 ** _UNITS.index(request.group(2))
        what += f" (an allocation of {size / 2**30:,.2f} GiB failed)"
    return f"out of {what}; {_LOWER.get(command, 'ask for less at once')}"


def _fail(message: object) -> int:
    print(f"scorediff: error: {one_line(message)}", file=sys.stderr)
    return 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr and exit code 2."""

    def error(self, message: str):
        print(f"{self.prog}: error: {one_line(message)}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scorediff", description="Score Entropy Discrete Diffusion: train, sample, infill, eval, eval-dna."
    )
    parser.add_argument("--version", action="version", version=f"scorediff {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train_cmd.add_parser(commands)
    sample_cmd.add_parser(commands)
    infill_cmd.add_parser(commands)
    chat_cmd.add_parser(commands)
    evaluate.add_parsers(commands)
    dna.add_parser(commands)
    push.add_parser(commands)
    lm_eval_cmd.add_parser(commands)
    playground_cmd.add_parser(commands)
    plan_cmd.add_parser(commands)
    export_cmd.add_parser(commands)
    prepare_cmd.add_parser(commands)
    demo = commands.add_parser("demo", help="sample a small known distribution with its exact score")
    demo.add_argument("--num-tokens", type=int, default=4)
    demo.add_argument("--seq-len", type=int, default=4)
    demo.add_argument("--samples", type=int, default=20000)
    demo.add_argument("--steps", type=int, default=64)
    demo.add_argument("--seed", type=seed_value, default=0)
    demo.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    demo.set_defaults(run=_demo)
    return parser


class Terminated(BaseException):
    """SIGTERM, raised where the command is, so that what it was writing is removed as after an error (a temporary
    shard folder was left behind); the trainer takes SIGTERM itself while it trains, to save and stop."""


@contextlib.contextmanager
def _terminated_as_an_error():
    if threading.current_thread() is not threading.main_thread():  # only the main thread may take signals
        yield
        return

    def terminate(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for a user's mistake, with a one-line message)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    overrides = [a for a in unknown if a.startswith("--") and "=" in a and "." in a.split("=", 1)[0]]
    rest = [a for a in unknown if a not in overrides]
    if rest or (overrides and not getattr(args, "accepts_overrides", False)):
        parser.error(f"unrecognized arguments: {' '.join(rest or overrides)}")
    args.overrides = overrides
    keep_freed_memory()  # this process is ours: the CPU steps of every command reuse their memory
    try:
        with _terminated_as_an_error():
            return args.run(args)
    except (ScorediffError, ImportError) as error:  # a user's mistake, a missing extra: one line, exit 2
        return _fail(error)
    except (RuntimeError, MemoryError) as error:  # torch.OutOfMemoryError is a RuntimeError
        message = out_of_memory(error, args.command)
        if message is None:
            raise
        return _fail(message)
    except BrokenPipeError:  # `scorediff info ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:  # a folder that cannot be written, a disk that is full, ...
        where = f": {error.filename}" if error.filename else ""
        return _fail(f"{error.strerror or error}{where}")
    except KeyboardInterrupt:
        print("scorediff: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("scorediff: terminated", file=sys.stderr)
        return 143
