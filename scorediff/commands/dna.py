"""``scorediff eval-dna``: generated windows against held-out real ones, with biology-aware metrics."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from .. import dna_metrics
from ..data.dna import parse_sources
from ..data.prepare import prepare_dna_shards
from ..data.sources import DataError
from ..data.windows import TokenWindows, spread_examples_over
from ..generation import generate, sampling_options
from ..loading import load
from ..sampling import SAMPLERS
from ..training.distributed import DistInfo
from ..training.evaluate import nats_per_window
from ..training.setup import prepare_data
from . import (
    UsageError,
    add_load_options,
    atomic_write,
    check_device,
    check_folder_writable,
    check_output,
    label_id,
    positive,
    seed_value,
)
from .dna_report import print_result, write_plots


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "eval-dna",
        help="DNA: k-mer spectra, GC content, a discriminator and a species classifier on generated windows",
        description="Generate windows from a DNA checkpoint and compare them with held-out real windows. For a "
        "conditional model, every label is generated (or only --label) at each --guidance weight.",
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run directory, or Hub id org/name[@rev]")
    parser.add_argument(
        "--data",
        action="append",
        help="held-out FASTA (name=file for labelled files, repeatable; default: the run's validation split)",
    )
    parser.add_argument("--label", help="a conditional model: evaluate this class only (default: every class)")
    parser.add_argument(
        "--guidance", type=float, nargs="+", default=[0.0], help="guidance weights; the JSON's top level is the first"
    )
    parser.add_argument("--num-samples", type=int, default=256, help="generated windows per class (or in all)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the run's sampling.steps)")
    parser.add_argument(
        "--predictor",
        choices=list(SAMPLERS),
        help="diffusion: the step rule (default: the run's), or first_hitting (exact; absorbing graph)",
    )
    parser.add_argument("--max-windows", type=int, default=1024, help="real windows to compare with and to score")
    parser.add_argument("--num-t", type=int, default=16, help="Monte Carlo times per window of the bound")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=seed_value, default=0)
    add_load_options(parser)
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--plots", metavar="DIR", help="write k-mer spectra, GC histograms, accuracy vs guidance")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for flag in ("--num-samples", "--steps", "--max-windows", "--num-t", "--batch-size"):
        positive(flag, getattr(args, flag[2:].replace("-", "_")))
    check_device(args.device)
    data = [path for _, path in _sources(args)]
    check_output("--json", args.json, "results", {"--data": data, "--checkpoint": args.checkpoint})
    if args.plots:
        check_folder_writable(args.plots)
    loaded = load(args.checkpoint, device=args.device, dtype=args.dtype)
    if loaded.tokenizer is None or loaded.tokenizer.kind != "dna":
        raise UsageError(f"{loaded.path} is not a DNA model (its tokenizer is not data.tokenizer=dna)")
    if args.predictor and loaded.kind != "diffusion":
        raise UsageError("--predictor applies to diffusion models; this checkpoint is autoregressive")
    if args.predictor == "first_hitting" and loaded.graph.mask_id is None:
        raise UsageError(f"--predictor first_hitting needs the absorbing graph; this model uses {loaded.graph!r}")
    names = loaded.label_names
    classes = _classes(args, loaded, names)
    real = _real_windows(args, loaded, names)
    result = {"checkpoint": str(loaded.path), "kind": loaded.kind, "labels": names, "windows": len(real["x_0"])}
    result.update(_likelihood(args, loaded, real))
    classifier, result["real_species_accuracy"] = _species_classifier(real, len(names), args.seed)
    result["by_guidance"] = [_at_guidance(args, loaded, real, classes, classifier, w) for w in args.guidance]
    result.update({k: v for k, v in result["by_guidance"][0].items() if k != "samples"})
    print_result(result)
    if args.plots:
        write_plots(Path(args.plots), real, result)
    for entry in result["by_guidance"]:
        entry.pop("samples")
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=2) + "\n")
    return 0


def _sources(args) -> list[tuple[str | None, str]]:
    """The ``(label or None, path)`` of each ``--data`` FASTA file (``name=path``, repeated or comma-separated)."""
    try:
        return parse_sources(",".join(args.data)) if args.data else []
    except DataError as error:
        raise UsageError(str(error)) from None


def _classes(args, loaded, names: list[str]) -> list[int | None]:
    """The label ids to generate: every class of a conditional model (or ``--label``), else the one ``None``."""
    if args.label is not None:
        return [label_id(loaded, args.label)]
    if not names and any(w != 0 for w in args.guidance):
        raise UsageError("--guidance needs a conditional model; this one was trained without labels")
    if any(not math.isfinite(w) for w in args.guidance):
        raise UsageError(f"--guidance must be finite numbers; got {args.guidance}")
    return list(range(len(names))) or [None]


def _real_windows(args, loaded, names: list[str]) -> dict[str, Tensor]:
    """At most ``--max-windows`` held-out windows of the model's length, spread evenly over all there are (with
    ``--data``, over the whole of those files); labels translated to the model's label ids."""
    config, seq_len = loaded.config, loaded.model.config.seq_len
    stated = {name for name, _ in _sources(args) if name is not None}
    if names and stated - set(names):  # before any shard is written to the cache
        raise UsageError(f"the data's labels {sorted(stated - set(names))} are not the model's ({', '.join(names)})")
    try:
        if args.data:
            data = config.data
            shards = prepare_dna_shards(
                ",".join(args.data), data.cache_dir or None, data.val_fraction, data.dna_policy, data.label_regex
            )
            splits = [TokenWindows(shards, split, seq_len) for split in ("train", "val")]  # all of it is held out
        else:
            splits = [prepare_data(config, DistInfo(), loaded.path).val]
    except (DataError, ValueError) as error:
        raise UsageError(str(error)) from None
    examples = spread_examples_over(splits, args.max_windows)
    real = {"x_0": examples["x_0"]}
    data_names = splits[0].labels
    if names and data_names:
        unknown = sorted(set(data_names) - set(names))
        if unknown:
            raise UsageError(f"the data's labels {unknown} are not the model's ({', '.join(names)})")
        ids = torch.tensor([names.index(n) for n in data_names])
        real["label"] = ids[examples["label"]]
    return real


def _likelihood(args, loaded, real: dict[str, Tensor]) -> dict:
    """Bits per base on the real windows: the bound of a diffusion model (its class-conditional one when the
    windows are labelled), the exact likelihood of an autoregressive one."""
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    x, labels = real["x_0"], real.get("label") if loaded.kind == "diffusion" else None
    score = (loaded.objective, loaded.model, x, generator, args.num_t, args.batch_size, args.device, labels)
    bits = nats_per_window(*score).cpu() / x.shape[1] / math.log(2)
    half = 1.96 * float(bits.std()) / math.sqrt(len(bits)) if len(bits) > 1 else float("nan")
    mean = float(bits.mean())
    return {"bits_per_base": mean, "bits_per_base_ci95": [mean - half, mean + half], "exact": loaded.objective.exact}


def _species_classifier(real: dict[str, Tensor], num_labels: int, seed: int):
    """A k-mer classifier fitted on half of the labelled real windows, and its accuracy on the other half."""
    if "label" not in real or num_labels < 2:
        return None, None
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(real["x_0"]), generator=generator)
    fit, held = order[: len(order) // 2], order[len(order) // 2 :]
    classifier = dna_metrics.KmerClassifier(num_labels).fit(real["x_0"][fit], real["label"][fit])
    return classifier, classifier.accuracy(real["x_0"][held], real["label"][held])


def _generate(args, loaded, label: int | None, guidance: float) -> Tensor:
    options = sampling_options(loaded.config)
    if loaded.kind == "diffusion":
        options = replace(options, steps=args.steps or options.steps, predictor=args.predictor or options.predictor)
    if label is not None:
        options = replace(options, label=label, guidance=guidance)
    generator = torch.Generator(device=args.device).manual_seed(args.seed + 1000 * (label or 0))
    length, rows = loaded.model.config.seq_len, []
    for start in range(0, args.num_samples, args.batch_size):
        count = min(args.batch_size, args.num_samples - start)
        shape = (count, length)
        rows.append(
            generate(loaded.objective, loaded.model, shape, options, generator=generator, device=args.device).tokens
        )
    return torch.cat(rows).cpu()


def _at_guidance(args, loaded, real, classes, classifier, guidance: float) -> dict:
    generated = {c: _generate(args, loaded, c, guidance) for c in classes}
    everything = torch.cat(list(generated.values()))
    reference, samples, halves = _compared_sets(real, generated, args.seed)
    if len(reference) < 4:
        raise UsageError(f"only {len(reference)} real windows of the evaluated classes; need more --data")
    entry = {
        "guidance": guidance,
        "kmer_js": dna_metrics.kmer_js(reference, samples),
        # the same distance between two halves of the real windows: what finite samples alone give
        "kmer_js_real_halves": dna_metrics.kmer_js(*halves),
        "gc_distance": dna_metrics.gc_distance(reference, samples),
        "gc_mean_real": float(dna_metrics.gc_content(reference).mean()),
        "gc_mean_generated": float(dna_metrics.gc_content(samples).mean()),
        "discriminator_auroc": dna_metrics.discriminator_auroc(reference, samples, seed=args.seed),
        "compared_windows": len(samples),
        "samples": everything,
    }
    if classifier is not None:
        intended = torch.cat([torch.full((len(v),), c) for c, v in generated.items()])
        entry["species_accuracy"] = classifier.accuracy(everything, intended)
    return entry


def _compared_sets(real: dict[str, Tensor], generated: dict, seed: int) -> tuple[Tensor, Tensor, tuple]:
    """Real and generated windows of the same size and, for a conditional model, the same classes in the same
    numbers; and a second set of real windows like the first, whose distance to it is the floor that finite
    samples set.

    Generated classes come in equal numbers while real windows come in the proportions of the data (genome
    sizes); comparing the two mixtures would score the mixing, not the model, so each class is compared with as
    many real windows of that class as were generated for it (fewer of both when real ones run short).
    """
    generator = torch.Generator().manual_seed(seed)
    if None in generated or "label" not in real:
        pools = [(real["x_0"], torch.cat(list(generated.values())))]
    else:
        pools = [(real["x_0"][real["label"] == label], rows) for label, rows in generated.items()]
    reference, samples, second = [], [], []
    for mine, rows in pools:
        mine = mine[torch.randperm(len(mine), generator=generator)]
        count = min(len(rows), len(mine) // 2)
        reference.append(mine[:count])
        second.append(mine[count : 2 * count])
        samples.append(rows[:count])
    reference = torch.cat(reference)
    return reference, torch.cat(samples), (reference, torch.cat(second))
