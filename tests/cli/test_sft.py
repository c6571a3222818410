"""Supervised fine-tuning on prompted examples (prompt/answer JSONL) of a loaded model and of an adapted one (into
masked or block diffusion): ``scorediff train --init MODEL --data tasks.jsonl`` keeps the model's tokenizer, starts
from its weights, and the result saves, loads and answers ``sample --prompts`` like any run."""

import json
import random

import pytest
import yaml
from cli_run import run_cli
from micro import corpus_head, micro_values

import scorediff
from scorediff.data import load_tokenizer

WORDS = ["".join(random.Random(i).choice("abcd") for _ in range(2 + i % 3)) for i in range(120)]


def llama_config(root, name, objective, block_size=0, **train) -> str:
    """A micro llama run's YAML (two blocks of width 32, context 16); diffusion is shifted, for adaptation."""
    values = micro_values(root / "text.txt", root / "cache", objective, max_steps=6, save_every=6, **train)
    values["model"].update(arch="llama", n_kv_heads=1, seq_len=16, n_blocks=2)
    if objective == "diffusion":
        values["model"].update(time_conditioning=False, shift=True, block_size=block_size)
        values["diffusion"] = {"mask_count": True}
    del values["train"]["device"]
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def train(capsys, root, config, name, *extra) -> tuple:
    argv = ["train", "--config", config, "--out", str(root), "--name", name, "--quiet", "--num-samples", "0", *extra]
    code, _, err = run_cli(capsys, argv)
    assert code == 0, err
    metrics = [json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines()]
    return root / name, [m["loss_nats_per_token"] for m in metrics if "loss_nats_per_token" in m]


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A micro AR llama trained 30 steps on Shakespeare's characters, and a file of reversal tasks in them."""
    root = tmp_path_factory.mktemp("sft")
    corpus_head(root / "text.txt", 50_000)
    tasks = root / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"prompt": f"rev {w}:", "answer": w[::-1]}) + "\n" for w in WORDS))
    return root, tasks


def answers(capsys, run, tasks, *order) -> list[dict]:
    prompts = tasks.parent / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"rev {w}:"}) + "\n" for w in WORDS[:6]))
    code, out, err = run_cli(capsys, ["sample", "--checkpoint", str(run), "--prompts", str(prompts), *order])
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["prompt"] for r in records] == [f"rev {w}:" for w in WORDS[:6]]
    return records


def answer_nats(capsys, run, tasks) -> float:
    """``scorediff eval`` of ``run`` on the tasks: nats per answer token given its prompt (a bound for diffusion)."""
    out = tasks.parent / "eval.json"
    argv = ["eval", "--checkpoint", str(run), "--data", str(tasks), "--max-windows", "40", "--num-t", "4"]
    code, _, err = run_cli(capsys, [*argv, "--seed", "0", "--json", str(out)])
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["prompted"] and result["windows"] == 40
    return result["nats_per_token"]


def test_sft_of_a_loaded_ar_model(capsys, parent):
    root, tasks = parent
    ar = llama_config(root, "ar", "autoregressive")
    base, _ = train(capsys, root, ar, "base", "--train.max_steps=30", "--train.save_every=30")
    tuned, losses = train(capsys, root, ar, "tuned", f"--init={base}", f"--data={tasks}")
    assert load_tokenizer(tuned).chars == load_tokenizer(base).chars  # the model's own ids, not the tasks' alphabet
    before, after = answer_nats(capsys, base, tasks), answer_nats(capsys, tuned, tasks)
    assert after < before - 0.5, (before, after)
    loaded = scorediff.load(tuned)
    assert loaded.kind == "autoregressive" and loaded.model.config.arch == "llama"
    answers(capsys, tuned, tasks)


@pytest.mark.parametrize("block_size", [0, 4])
def test_sft_of_an_adapted_model(capsys, parent, block_size):
    root, tasks = parent
    base, _ = train(capsys, root, llama_config(root, "ar", "autoregressive"), f"base-{block_size}",
                    "--train.max_steps=30", "--train.save_every=30")  # fmt: skip
    anneal = {} if block_size else {"attention_anneal_steps": 3}  # blocks keep the parent's causal prefix
    a2d = llama_config(root, f"a2d-{block_size}", "diffusion", block_size, **anneal)
    adapted, _ = train(capsys, root, a2d, f"adapted-{block_size}", f"--init={base}")  # A2D on text, then SFT
    tuned, _ = train(capsys, root, a2d, f"tuned-{block_size}", f"--init={adapted}", f"--data={tasks}")
    straight, _ = train(capsys, root, a2d, f"straight-{block_size}", f"--init={base}", f"--data={tasks}")
    before, after = answer_nats(capsys, adapted, tasks), answer_nats(capsys, tuned, tasks)
    assert after < before - 0.5, (before, after)  # a bound now
    for run in (tuned, straight):
        loaded = scorediff.load(run)
        assert loaded.kind == "diffusion" and loaded.model.config.shift
        assert loaded.model.config.block_size == block_size
        assert load_tokenizer(run).chars == load_tokenizer(base).chars
        answers(capsys, run, tasks, "--order", "confidence")
