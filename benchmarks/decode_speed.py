"""Decoding speed at batch 1: a diffusion model (confidence-threshold order, its cache) against an autoregressive
one (KV cache), both through ``Objective.sample``, in one interleaved run.

Each repetition decodes every prompt (a prefix of a validation window of the AR checkpoint's corpus, or nothing:
``--prompts 0``) with both models, at the same length, temperature and top-p; the model that goes first swaps
from one decode to the next (D A, A D, ...), so a change in the machine's load falls on both alike. Reported per
model: new tokens per second (from the samplers' own timing), network calls per new token (their counts), and the
quality of the continuations: generative perplexity under SmolLM2-135M (``GenerativePerplexity.from_smollm2``;
skipped with a note when not installed) and unigram entropy. Ratios are diffusion / AR, against the targets of
issue 37 (speed >= 2x, gen-PPL at most 15% above, entropy within 5%). Writes ``DIR/decode_speed.json`` and a PNG.

    python benchmarks/decode_speed.py --diffusion runs/tiny-block-... --ar runs/tiny-ar-... --out results/
    python benchmarks/decode_speed.py --diffusion A2D_RUN --ar AR_RUN --length 128 --prompts 4 --threshold 0.9
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from scorediff.errors import ScorediffError
from scorediff.loading import load
from scorediff.sampling.options import SamplingOptions

MODELS = ("diffusion", "ar")
#: issue 37's targets for the adapted model against its AR parent (diffusion / AR)
TARGETS = {"speed_at_least": 2.0, "gen_ppl_at_most": 1.15, "entropy_within": 0.05}


def options_for(args) -> dict[str, SamplingOptions]:
    """The same temperature, top-p and draw rule for both; the diffusion model decodes in the confidence order,
    committing at least ``tokens_per_step`` positions per call and every position at least ``threshold`` sure."""
    shared = {"temperature": args.temperature, "top_p": args.top_p, "greedy": args.greedy}
    diffusion = SamplingOptions(
        order="confidence", tokens_per_step=args.tokens_per_step, threshold=args.threshold, **shared
    )
    return {"diffusion": diffusion, "ar": SamplingOptions(**shared)}


def prompts_for(ar, count: int, prompt_tokens: int) -> torch.Tensor | None:
    """``count`` prompts of ``prompt_tokens`` tokens, int64 (count, prompt_tokens): the heads of validation windows
    spread over the AR checkpoint's corpus; None for unconditional decoding."""
    if count == 0 or prompt_tokens == 0:
        return None
    if ar.config is None:
        raise ScorediffError(f"{ar.path} states no corpus to take prompts from; pass --prompts 0")
    from scorediff.training.distributed import DistInfo
    from scorediff.training.setup import prepare_data

    windows = prepare_data(ar.config, DistInfo(), ar.path).val.spread_windows(count)
    if len(windows) < count or windows.shape[1] < prompt_tokens:
        raise ScorediffError(f"the validation split has {len(windows)} windows of {windows.shape[1]} tokens")
    return windows[:, :prompt_tokens]


def check_pair(models: dict) -> None:
    """The diffusion checkpoint is a diffusion model, the AR one autoregressive, and both read the same tokens."""
    if models["diffusion"].objective.name != "diffusion" or models["ar"].objective.name != "autoregressive":
        kinds = {name: type(m.objective).__name__ for name, m in models.items()}
        raise ScorediffError(f"--diffusion needs a diffusion model and --ar an autoregressive one; got {kinds}")
    vocab = {name: m.objective.num_tokens for name, m in models.items()}
    same = len(set(vocab.values())) == 1
    if same and all(m.tokenizer is not None for m in models.values()):
        every_id = list(range(vocab["ar"]))
        same = models["diffusion"].tokenizer.decode(every_id) == models["ar"].tokenizer.decode(every_id)
    if not same:
        raise ScorediffError(f"the two models must share a tokenizer; they have {vocab} tokens (or decode apart)")


def decode_once(loaded, options: SamplingOptions, prompt: torch.Tensor | None, length: int, seed: int) -> dict:
    """One continuation of ``length`` tokens after ``prompt`` (int64 (P,) or None), at batch 1."""
    prefix = 0 if prompt is None else len(prompt)
    shape = (1, prefix + length)
    condition = None
    if prompt is not None:
        tokens = torch.zeros(shape, dtype=torch.int64)
        tokens[0, :prefix] = prompt
        given = torch.zeros(shape, dtype=torch.bool)
        given[0, :prefix] = True
        condition = (tokens, given)
    generator = torch.Generator().manual_seed(seed)
    drawn = loaded.objective.sample(loaded.model, shape, options, condition=condition, generator=generator)
    new = drawn.tokens[0, prefix:].tolist()
    text = loaded.tokenizer.decode(new) if loaded.tokenizer is not None else " ".join(map(str, new))
    return {"seconds": drawn.stats.seconds, "nfe": drawn.stats.nfe, "new_tokens": length, "text": text}


def interleaved(models: dict, options: dict, prompts, length: int, repeats: int, seed: int) -> list[dict]:
    """Every (repetition, prompt) decoded by both models, the first model swapping each time (D A, A D, ...)."""
    rows = [None] if prompts is None else list(prompts)
    for name in MODELS:  # warm-up: first-call costs (allocations, a bf16 copy) fall outside the timing
        decode_once(models[name], options[name], rows[0], length, seed)
    runs, turn = [], 0
    for repeat in range(repeats):
        for index, prompt in enumerate(rows):
            for name in MODELS if turn % 2 == 0 else MODELS[::-1]:
                run = decode_once(models[name], options[name], prompt, length, seed + 1000 * repeat + index)
                runs.append({"model": name, "repeat": repeat, "prompt": index, **run})
                print(json.dumps({k: v for k, v in runs[-1].items() if k != "text"}), flush=True)
            turn += 1
    return runs


def summarise(runs: list[dict], evaluator) -> dict:
    """Per model: tokens per second and calls per token over all its runs, and the quality of its texts."""
    from scorediff.evaluation import unigram_entropy

    out = {}
    for name in MODELS:
        mine = [r for r in runs if r["model"] == name]
        tokens, seconds = sum(r["new_tokens"] for r in mine), sum(r["seconds"] for r in mine)
        texts, calls = [r["text"] for r in mine], sum(r["nfe"] for r in mine)
        out[name] = {
            "decodes": len(mine), "new_tokens": tokens, "seconds": seconds, "network_calls": calls,
            "tokens_per_second": tokens / seconds, "calls_per_token": calls / tokens,
            "unigram_entropy_bits": unigram_entropy(texts),
            "generative_perplexity": evaluator.perplexity(texts) if evaluator is not None else None,
        }  # fmt: skip
    return out


def ratios(summary: dict) -> dict:
    """diffusion / AR of every measured number, and whether issue 37's targets are met."""
    keys = ("tokens_per_second", "calls_per_token", "generative_perplexity", "unigram_entropy_bits")
    d, a = summary["diffusion"], summary["ar"]
    out = {f"{k}_ratio": d[k] / a[k] if d[k] is not None and a[k] else None for k in keys}
    gen_ppl, entropy = out["generative_perplexity_ratio"], out["unigram_entropy_bits_ratio"]
    out["targets"] = {
        "speed_at_least_2x": out["tokens_per_second_ratio"] >= TARGETS["speed_at_least"],
        "gen_ppl_within_15_percent": None if gen_ppl is None else gen_ppl <= TARGETS["gen_ppl_at_most"],
        "entropy_within_5_percent": None if entropy is None else abs(entropy - 1) <= TARGETS["entropy_within"],
    }
    return out


def evaluator_or_note(skip: bool):
    """The generative-perplexity evaluator, or None and why not."""
    if skip:
        return None, "generative perplexity skipped (--no-gen-ppl)"
    from scorediff.evaluation import GenerativePerplexity

    try:
        return GenerativePerplexity.from_smollm2(), None
    except ImportError as error:
        return None, f"generative perplexity skipped: {error}"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, ratio = result["summary"], result["ratios"]
    threshold = result["options"]["diffusion"]["threshold"]
    at_least = result["options"]["diffusion"]["tokens_per_step"]
    labels = [f"diffusion\n(confidence order, threshold {threshold},\n{at_least}+ per call)", "AR\n(KV cache)"]
    colours = ["tab:blue", "tab:orange"]
    speed = f"speed: diffusion / AR = {ratio['tokens_per_second_ratio']:.2f}x"
    panels = [
        ("tokens_per_second", "new tokens per second", speed),
        ("generative_perplexity", "generative perplexity", "gen-PPL (lower is better)"),
        ("unigram_entropy_bits", "unigram entropy (bits)", "unigram entropy"),
    ]  # fmt: skip
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for axis, (key, ylabel, title) in zip(axes, panels, strict=True):
        values = [summary[name][key] for name in MODELS]
        if None in values:
            why = "\n".join(result["notes"]) or "not measured"
            axis.text(0.5, 0.5, why, ha="center", va="center", wrap=True, fontsize=8)
            axis.set(title=title, xticks=[], yticks=[])
            continue
        bars = axis.bar(labels, values, color=colours)
        notes = [f"{v:,.0f}" if v >= 100 else f"{v:.3g}" for v in values]
        if key == "tokens_per_second":
            calls = [summary[name]["calls_per_token"] for name in MODELS]
            notes = [f"{n}\n{c:.2f} calls/token" for n, c in zip(notes, calls, strict=True)]
        axis.bar_label(bars, notes, fontsize=8)
        axis.set(ylabel=ylabel, title=title)
        axis.margins(y=0.2)
    figure.suptitle(f"batch 1, {result['length']} new tokens, {result['machine']}, {result['date'][:10]}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diffusion", required=True, help="a diffusion or block diffusion checkpoint")
    parser.add_argument("--ar", required=True, help="an autoregressive checkpoint")
    parser.add_argument("--length", type=int, default=64, help="new tokens per decode")
    parser.add_argument("--prompts", type=int, default=4, help="validation prompts (0: unconditional)")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of every prompt per model")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0, help="the confidence order draws without it")
    parser.add_argument("--greedy", action="store_true", help="both models take their likeliest tokens")
    parser.add_argument("--threshold", type=float, default=0.9, help="confidence order: commit what is this sure")
    parser.add_argument("--tokens-per-step", type=int, default=1, help="confidence order: commit at least this many")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-gen-ppl", action="store_true", help="skip the SmolLM2 evaluator")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    for name in ("length", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.prompts < 0 or args.prompt_tokens < 0:
        parser.error("--prompts and --prompt-tokens must be >= 0")
    return args


def run(args: argparse.Namespace, command: str) -> dict:
    models = {"diffusion": load(args.diffusion), "ar": load(args.ar)}
    check_pair(models)
    options = options_for(args)
    prompts = prompts_for(models["ar"], args.prompts, args.prompt_tokens)
    runs = interleaved(models, options, prompts, args.length, args.repeats, args.seed)
    evaluator, note = evaluator_or_note(args.no_gen_ppl)
    notes = [note] if note else []
    if args.top_p < 1 and not args.greedy:  # decode_in_order reads no top_p: say so rather than hide it
        notes.append("top_p acts on the AR model only; the confidence order draws from the whole distribution")
    summary = summarise(runs, evaluator)
    return {
        "benchmark": "decode_speed", "command": command, "date": datetime.now(timezone.utc).isoformat(),
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "checkpoints": {"diffusion": args.diffusion, "ar": args.ar},
        "batch": 1, "length": args.length, "prompts": 0 if prompts is None else len(prompts),
        "prompt_tokens": 0 if prompts is None else prompts.shape[1], "repeats": args.repeats,
        "options": {name: dataclasses.asdict(o) for name, o in options.items()},
        "evaluator": getattr(evaluator, "name", None), "notes": notes,
        "order": [r["model"] for r in runs], "runs": runs, "summary": summary, "ratios": ratios(summary),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = shlex.join(["python", "benchmarks/decode_speed.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        result = run(args, command)
    except ScorediffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "decode_speed.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, path.with_suffix(".png"))
    print(json.dumps({"summary": result["summary"], "ratios": result["ratios"]}, indent=2))
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
