"""DNA through the command line: a conditional model trained on real genome fixtures, guided sampling,
infilling a FASTA region, eval-dna's report, and one-line refusals of bad input."""

import argparse
import functools
import json
import shutil
from pathlib import Path

import pytest
import torch
from cli_run import assert_user_error, run_cli

from scorediff import load
from scorediff.builders import build_model, build_objective
from scorediff.cli import main
from scorediff.commands.dna import _real_windows
from scorediff.data.prepare import prepare_dna_shards
from scorediff.data.windows import TokenWindows
from scorediff.training.distributed import DistInfo
from scorediff.training.evaluate import evaluate_during_training, validation_nll
from scorediff.training.logger import MetricsLogger
from scorediff.training.setup import prepare_data
from scorediff.training.step import new_state

FIXTURES = Path(__file__).parents[1] / "fixtures" / "dna"
ECOLI, SAUREUS = FIXTURES / "ecoli_mg1655_4kb.fa", FIXTURES / "saureus_n315_4kb.fa"
MICRO = [
    "--model.hidden_size=32", "--model.cond_dim=16", "--model.n_blocks=1", "--model.n_heads=2",
    "--model.seq_len=32", "--train.batch_size=8", "--train.max_steps=6", "--train.eval_windows=4",
    "--train.eval_num_t=2", "--train.compile=false", "--train.time_budget_minutes=0", "--train.max_minutes=0",
    "--sampling.steps=4", "--quiet", "--num-samples=0",
]  # fmt: skip


@pytest.fixture(scope="module")
def dna_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dna_runs")
    cache = f"--data.cache_dir={out / 'cache'}"
    argv = ["train", "--config", "dna", "--data", f"ecoli={ECOLI}", "--data", f"saureus={SAUREUS}", cache]
    assert main([*argv, *MICRO, "--out", str(out), "--name", "species"]) == 0
    return out / "species"


def test_the_run_records_its_labels_and_samples_each(dna_run, capsys):
    config = json.loads((dna_run / "config.json").read_text())
    assert config["data"]["labels"] == "ecoli,saureus"
    assert config["model"]["num_labels"] == 2
    for label in ("ecoli", "saureus"):
        code, out, _ = run_cli(capsys, ["sample", "--checkpoint", str(dna_run), "--label", label, "--guidance", "2",
                                        "--num-samples", "2", "--format", "jsonl"])  # fmt: skip
        assert code == 0
        rows = [json.loads(line) for line in out.splitlines()]
        assert [len(r["text"]) for r in rows] == [32, 32] and set("".join(r["text"] for r in rows)) <= set("ACGT")
        assert rows[0]["label"] == ["ecoli", "saureus"].index(label) and rows[0]["guidance"] == 2.0


def test_infill_keeps_everything_outside_the_region(dna_run, capsys):
    code, out, _ = run_cli(capsys, ["infill", "--checkpoint", str(dna_run), "--fasta", str(ECOLI), "--region",
                                    "101-110", "--num-samples", "3", "--format", "jsonl"])  # fmt: skip
    assert code == 0
    genome = "".join(line.strip() for line in ECOLI.read_text().splitlines()[1:])
    for line in out.splitlines():
        row = json.loads(line)
        start = row["window_start"] - 1
        text = row["text"]
        assert len(text) == 32 and start <= 100 and start + 32 >= 110
        outside = [i for i in range(32) if not 100 <= start + i < 110]
        assert all(text[i] == genome[start + i] for i in outside)


def test_eval_dna_reports_every_metric(dna_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    plots = tmp_path / "plots"
    code, printed, _ = run_cli(capsys, ["eval-dna", "--checkpoint", str(dna_run), "--guidance", "0", "1",
                                        "--num-samples", "24", "--max-windows", "48", "--json", str(out),
                                        "--plots", str(plots)])  # fmt: skip
    assert code == 0, printed
    assert [line.split(":")[0] for line in printed.splitlines()[-2:]] == ["guidance 0", "guidance 1"]
    for name in ("kmer_spectra.png", "gc_content.png", "accuracy_vs_guidance.png"):  # a conditional model's three
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads(out.read_text())
    for key in ("kmer_js", "gc_distance", "discriminator_auroc", "bits_per_base", "species_accuracy"):
        assert key in result
    assert set(result["kmer_js"]) == {"3", "4", "5", "6"}
    assert [e["guidance"] for e in result["by_guidance"]] == [0.0, 1.0]
    assert 0.5 < result["bits_per_base"] < 3.0  # an upper bound on held-out bases: above any real genome's entropy
    assert 0.0 <= result["discriminator_auroc"] <= 1.0 and 0.0 <= result["species_accuracy"] <= 1.0


def test_eval_scores_a_labelled_run_given_its_labels(dna_run, tmp_path, capsys):
    # the run's data is several labelled files: eval reads its DNA shards, not the source as one text pattern
    scored, dna = tmp_path / "eval.json", tmp_path / "eval-dna.json"
    common = ["--checkpoint", str(dna_run), "--max-windows", "48", "--num-t", "4", "--batch-size", "64"]
    code, printed, _ = run_cli(capsys, ["eval", *common, "--json", str(scored)])
    assert code == 0, printed
    assert "each given its label" in printed
    code, printed, _ = run_cli(capsys, ["eval-dna", *common, "--num-samples", "2", "--json", str(dna)])
    assert code == 0, printed
    result = json.loads(scored.read_text())
    assert result["conditional"] is True and result["windows"] == 12  # all the fixtures' validation windows
    # the same windows, times and labels: the same class-conditional bound as eval-dna's bits per base
    assert result["bits_per_token"] == pytest.approx(json.loads(dna.read_text())["bits_per_base"], rel=1e-6)


def test_the_bound_logged_in_training_is_the_class_conditional_one(dna_run, tmp_path):
    # the trainer scores its validation windows as eval does, each given its label (it scored the null label)
    config = load(dna_run).config
    data = prepare_data(config, DistInfo(), None)
    objective = build_objective(config, data.tokenizer.vocab_size)
    model = build_model(config, objective)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a model to which the label matters (adaLN and the output layer start at zero)
        model.label_embed.weight.normal_(0.0, 1.0, generator=generator)
        for layer in [*model.blocks, model.output_layer]:
            layer.adaLN_modulation.weight.normal_(0.0, 0.3, generator=generator)
        model.output_layer.linear.weight.normal_(0.0, 0.3, generator=generator)
    state = new_state(config, objective, model, torch.device("cpu"), DistInfo())
    logged, _ = evaluate_during_training(state, data.tokenizer, data.val, "cpu", MetricsLogger(tmp_path, False))
    examples = data.val.spread_examples(config.train.eval_windows)
    score = functools.partial(validation_nll, objective, model, examples["x_0"], config.train.eval_num_t, 0)
    given = score(DistInfo(), "cpu", labels=examples["label"])["val_bits_per_token"]
    null = score(DistInfo(), "cpu")["val_bits_per_token"]
    assert logged == pytest.approx(given, rel=1e-9)
    assert abs(null - given) > 0.05  # the two bounds differ for this model, so the test tells them apart


def test_eval_dna_samples_with_the_first_hitting_sampler(dna_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code, printed, _ = run_cli(capsys, ["eval-dna", "--checkpoint", str(dna_run), "--predictor", "first_hitting",
                                        "--data", f"ecoli={ECOLI}", "--data", f"saureus={SAUREUS}", "--num-samples",
                                        "8", "--max-windows", "200", "--json", str(out)])  # fmt: skip
    assert code == 0, printed
    result = json.loads(out.read_text())
    # two classes of 8 generated windows, each compared with as many real windows of its own class
    assert result["by_guidance"][0]["compared_windows"] == 16


def test_dna_mistakes_are_one_line(dna_run, tmp_path, capsys):
    run = str(dna_run)
    assert_user_error(capsys, ["sample", "--checkpoint", run, "--label", "hpylori"], "knows the labels ecoli, saureus")
    assert_user_error(capsys, ["sample", "--checkpoint", run, "--guidance", "2"], "--guidance needs --label")
    assert_user_error(capsys, ["infill", "--checkpoint", run, "--fasta", str(ECOLI), "--region", "90-10"], "START-END")
    assert_user_error(capsys, ["infill", "--checkpoint", run, "--fasta", str(ECOLI), "--region", "1-99"],
                      "context is 32")  # fmt: skip
    empty, only_n, odd = tmp_path / "empty.fa", tmp_path / "n.fa", tmp_path / "odd.fa"
    empty.write_text("")
    only_n.write_text(">r\n" + "N" * 200 + "\n")
    odd.write_text(">r\nACGTXACGT\n")
    out = tmp_path / "runs"
    base = ["train", "--config", "dna", *MICRO, "--out", str(out), f"--data.cache_dir={tmp_path / 'cache'}"]
    assert_user_error(capsys, [*base, "--data", str(empty)], "holds no FASTA record")
    assert_user_error(capsys, [*base, "--data", str(only_n)], "holds no bases")
    assert_user_error(capsys, [*base, "--data", str(odd), "--data.dna_policy=strict"], "'X' at base 5")
    assert_user_error(capsys, [*base, "--data", f"a={ECOLI}", "--data", str(SAUREUS)], "label every file or none")
    assert not out.exists() or not any(out.iterdir())  # nothing half-written
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "cache").rglob("*"))


def test_outputs_never_replace_the_fasta_read_or_the_run(dna_run, tmp_path, capsys):
    """Each wrote over its input (the FASTA held out, the one infilled) or the checkpoint's config.json, exit 0."""
    fasta = tmp_path / "held_out.fa"
    shutil.copy(ECOLI, fasta)
    config = sorted((dna_run / "checkpoints").iterdir())[-1] / "config.json"
    before = fasta.read_bytes(), config.read_bytes()
    run = str(dna_run)
    for data in (str(fasta), f"ecoli={fasta}", f"saureus={SAUREUS},ecoli={fasta}"):
        assert_user_error(capsys, ["eval-dna", "--checkpoint", run, "--data", data, "--json", str(fasta)],
                          r"--json .*held_out.fa is the --data file")  # fmt: skip
    assert_user_error(capsys, ["infill", "--checkpoint", run, "--fasta", str(fasta), "--region", "1-10", "--out",
                               str(fasta)], r"--out .*held_out.fa is the --fasta file")  # fmt: skip
    assert_user_error(capsys, ["eval-dna", "--checkpoint", run, "--json", str(config)], r"is a file of the model")
    assert (fasta.read_bytes(), config.read_bytes()) == before


def test_a_label_the_model_lacks_is_refused_before_shards_are_cached(dna_run, capsys):
    """``eval-dna --data hpylori=...`` wrote the file's shards into the cache, then refused the label."""
    cache = dna_run.parent / "cache"
    before = sorted(p.name for p in cache.iterdir())
    argv = ["eval-dna", "--checkpoint", str(dna_run), "--data", f"hpylori={ECOLI}"]
    assert_user_error(capsys, argv, r"the data's labels \['hpylori'\] are not the model's \(ecoli, saureus\)")
    assert sorted(p.name for p in cache.iterdir()) == before


def test_guidance_on_an_unconditional_model_is_refused(tmp_path, capsys):
    out = tmp_path / "runs"
    cache = f"--data.cache_dir={tmp_path / 'cache'}"
    argv = ["train", "--config", "dna", "--data", str(ECOLI), cache, *MICRO, "--out", str(out), "--name", "u"]
    assert main(argv) == 0
    run = str(out / "u")
    assert_user_error(capsys, ["sample", "--checkpoint", run, "--label", "ecoli"], "this model is unconditional")
    assert_user_error(capsys, ["eval-dna", "--checkpoint", run, "--guidance", "1"], "needs a conditional model")


def test_eval_dna_spreads_its_real_windows_over_the_whole_held_out_file(dna_run, tmp_path):
    loaded = load(dna_run)
    data, options = [f"ecoli={ECOLI}", f"saureus={SAUREUS}"], loaded.config.data
    shards = prepare_dna_shards(",".join(data), tmp_path, options.val_fraction, options.dna_policy, options.label_regex)
    train, val = (TokenWindows(shards, split, 32).all_examples()["x_0"] for split in ("train", "val"))
    every = torch.cat([train, val])
    count = len(every) // 3
    real = _real_windows(argparse.Namespace(data=data, max_windows=count), loaded, ["ecoli", "saureus"])
    picked = [i * len(every) // count for i in range(count)]
    assert torch.equal(real["x_0"], every[picked])
    # the evenly spaced picks reach into the file's validation part and into both files' windows
    assert max(picked) >= len(train) and set(real["label"].tolist()) == {0, 1}
    assert torch.equal(_real_windows(argparse.Namespace(data=data, max_windows=10**6), loaded, [])["x_0"], every)
    assert torch.equal(_real_windows(argparse.Namespace(data=data, max_windows=1), loaded, [])["x_0"], every[:1])
