"""Prompted examples through the command line: train on prompt/answer JSONL, answer a file of prompts in any
order, score the answers given their prompts; and the mistakes a user can make with them."""

import json
import math
import random
from types import SimpleNamespace

import pytest
import torch
import yaml
from cli_run import assert_user_error, run_cli
from micro import micro_values

from scorediff.cli import main
from scorediff.commands.prompts import answer_text, ends_answers
from scorediff.data import CharTokenizer, load_tokenizer


@pytest.fixture(scope="session")
def reversal(tmp_path_factory):
    """Prompt ``rev abc=``, answer ``cba``: 400 examples."""
    root = tmp_path_factory.mktemp("prompted")
    rng = random.Random(0)
    words = ["".join(rng.choice("abcd") for _ in range(rng.randint(2, 5))) for _ in range(400)]
    path = root / "rev.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"rev {w}=", "answer": w[::-1]}) + "\n" for w in words))
    return path


def _run(root, data, objective, name, tokenizer="char"):
    values = micro_values(data, root / "cache", objective, eval_every=3)
    values["model"]["seq_len"] = 16
    values["data"]["tokenizer"] = tokenizer
    if objective == "diffusion":
        values["model"]["time_conditioning"] = False
        values["diffusion"] = {"mask_count": True}
    del values["train"]["device"]
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    assert (
        main(["train", "--config", str(path), "--out", str(root), "--name", name, "--quiet", "--num-samples", "2"]) == 0
    )
    return root / name


@pytest.fixture(scope="session")
def prompted_runs(tmp_path_factory, reversal):
    root = tmp_path_factory.mktemp("prompted_runs")
    return {kind: _run(root, reversal, kind, kind) for kind in ("diffusion", "autoregressive")}


def _calls(err: str) -> int:
    """The network calls of every batch, from --stats lines on stderr."""
    return sum(json.loads(line)["nfe"] for line in err.splitlines() if line.startswith("{"))


def test_train_eval_and_answer_prompts(capsys, prompted_runs, reversal, tmp_path):
    for kind, run in prompted_runs.items():
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        scored = [m for m in metrics if "val_tokens" in m]
        assert scored and scored[-1]["val_tokens"] < 20 * 16  # only answer tokens are scored, prompts are given
        out = tmp_path / f"{kind}.jsonl"
        extra = ["--order", "confidence", "--tokens-per-step", "2"] if kind == "diffusion" else []
        ask = ["sample", "--checkpoint", str(run), "--prompts", str(reversal), "--out", str(out), *extra, "--stats"]
        code, _, err = run_cli(capsys, ask)
        assert code == 0, err
        if kind == "diffusion":  # two rounds of refilling 3 positions, 2 a call: 2 more calls per round and batch
            calls = _calls(err)
            remasked = tmp_path / "remasked.jsonl"
            code, _, err = run_cli(capsys, [*ask[:6], str(remasked), *extra, "--stats", "--remask-rounds", "2",
                                            "--remask-tokens", "3"])  # fmt: skip
            assert code == 0 and len(remasked.read_text().splitlines()) == len(out.read_text().splitlines())
            batches = _calls(err) - calls
            assert batches > 0 and batches % 4 == 0, (calls, batches)
        records = [json.loads(line) for line in out.read_text().splitlines()]
        source = [json.loads(line) for line in reversal.read_text().splitlines()]
        assert [r["prompt"] for r in records] == [s["prompt"] for s in source]  # one answer per prompt, in order
        assert all(len(r["answer"]) <= 16 - len(r["prompt"]) for r in records)
        code, text, err = run_cli(capsys, ["eval", "--checkpoint", str(run), "--data", str(reversal), "--num-t", "2",
                                           "--max-windows", "40", "--json", str(tmp_path / "e.json")])  # fmt: skip
        assert code == 0, err
        result = json.loads((tmp_path / "e.json").read_text())
        answers = sum(len(s["answer"]) + 1 for s in source[::10][:40])  # the spread of 40 of 400, with end tokens
        assert result["prompted"] and result["windows"] == 40 and result["tokens"] >= answers - 40
        assert "answer tokens given their prompts" in text


def test_prompted_mistakes_are_one_line_and_write_nothing(capsys, prompted_runs, reversal, tmp_path):
    diffusion, ar = str(prompted_runs["diffusion"]), str(prompted_runs["autoregressive"])
    out = tmp_path / "answers.jsonl"
    ask = ["sample", "--prompts", str(reversal), "--out", str(out), "--checkpoint"]
    assert_user_error(capsys, [*ask, ar, "--order", "confidence"], r"--order applies to diffusion models")
    assert_user_error(capsys, [*ask, diffusion, "--order", "margin", "--tokens-per-step", "0"],
                      r"--tokens-per-step must be a whole number >= 1; got 0")  # fmt: skip
    assert_user_error(capsys, [*ask, diffusion, "--order", "margin", "--threshold", "0.5"], r"--threshold applies")
    assert_user_error(capsys, [*ask, diffusion, "--remask-rounds", "2"], r"--remask-rounds applies with --order")
    assert_user_error(capsys, [*ask, diffusion, "--order", "margin", "--remask-tokens", "2"],
                      r"--remask-tokens applies with --remask-rounds")  # fmt: skip
    assert_user_error(capsys, [*ask, diffusion, "--order", "margin", "--remask-rounds", "-1"],
                      r"--remask-rounds must be a whole number >= 0; got -1")  # fmt: skip
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "rev ab="}\n{"question": "x"}\n')
    assert_user_error(capsys, ["sample", "--checkpoint", diffusion, "--prompts", str(bad)],
                      r"bad.jsonl:2 needs string fields 'prompt' and 'answer'")  # fmt: skip
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"prompt": "rev " + "a" * 30 + "="}) + "\n")
    assert_user_error(capsys, ["sample", "--checkpoint", diffusion, "--prompts", str(long)],
                      r"long.jsonl:1: the prompt and answer take 35 tokens; the model's context is 16")  # fmt: skip
    assert not out.exists()


def test_training_data_mistakes(capsys, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    data = tmp_path / "ex.jsonl"
    values = micro_values(data, tmp_path / "cache")
    values["model"]["seq_len"] = 8
    del values["train"]["device"]
    config = tmp_path / "micro.yaml"
    config.write_text(yaml.safe_dump(values))
    train = ["train", "--config", str(config), "--out", str(runs), "--quiet"]
    data.write_text(json.dumps({"prompt": "abc=", "answer": "cbacba"}) + "\n")
    assert_user_error(capsys, train, r"ex.jsonl:1: the prompt and answer take 10 tokens; the model's context is 8")
    data.write_text(json.dumps({"tokens": [1, 2, 9, 1, 1, 1, 1, 1], "given": [True] * 4 + [False] * 4}) + "\n")
    assert_user_error(capsys, train, r"declare their vocabulary with --data.num_tokens=N")
    assert_user_error(
        capsys, [*train, "--data.num_tokens=5"], r"ex.jsonl:1: token 9 is outside the declared vocabulary"
    )
    data.write_text(json.dumps({"tokens": [1, 2], "given": [True]}) + "\n")
    assert_user_error(capsys, [*train, "--data.num_tokens=5"], r"needs lists 'tokens' and 'given' of one length")
    assert list(runs.iterdir()) == []


def test_a_block_larger_than_the_context_is_a_one_line_error(capsys, prompted_runs):
    """It used to leak the library's ValueError as a traceback; every library input error is a ScorediffError."""
    for run in prompted_runs.values():
        argv = ["sample", "--checkpoint", str(run), "--length", "40", "--block", "1000"]
        assert_user_error(capsys, argv, r"block must be in \[1, 16\]; got 1000")


SAMPLE_FLAGS = [
    "--steps",
    "--length",
    "--num-samples",
    "--top-p",
    "--temperature",
    "--block",
    "--order",
    "--tokens-per-step",
    "--threshold",
    "--predictor",
    "--sample-tokens",
    "--greedy-tail",
    "--no-cache",
]
SAMPLE_VALUES = ["-1", "0", "1", "2", "3", "40", "0.5", "nan", "x", "confidence", "margin", "random", "first_hitting"]


def test_sampling_options_past_argument_parsing_never_raise(capsys, prompted_runs):
    """Random option lists against real checkpoints: each run either samples (exit 0) or is refused in one line
    (exit 2), never a traceback."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    words = st.lists(st.one_of(st.sampled_from(SAMPLE_FLAGS), st.sampled_from(SAMPLE_VALUES)), max_size=8)
    outcomes = set()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(sorted(prompted_runs)), words)
    def check(kind, argv):
        code, out, err = run_cli(capsys, ["sample", "--checkpoint", str(prompted_runs[kind]), *argv])
        assert "Traceback" not in err
        assert (code == 0 and out) or (code == 2 and len(err.strip().splitlines()) == 1), (argv, code, err)
        outcomes.add(code)

    check()
    assert outcomes == {0, 2}  # the cases reached sampling, not only the parser


def _ask(capsys, run, prompts, out, *options):
    """``sample --prompts`` -> (the output records, the --stats line)."""
    argv = ["sample", "--checkpoint", str(run), "--prompts", str(prompts), "--out", str(out), "--stats", *options]
    code, _, err = run_cli(capsys, argv)
    assert code == 0, err
    stats = next(json.loads(line) for line in err.splitlines() if line.startswith("{"))
    return [json.loads(line) for line in out.read_text().splitlines()], stats


def _loaded(tokenizer, source):
    return SimpleNamespace(tokenizer=tokenizer, config=SimpleNamespace(data=SimpleNamespace(source=str(source))))


def test_answers_end_at_the_end_token_only(reversal):
    tokenizer = CharTokenizer.from_texts(["q=a\nb"])
    given = torch.tensor([True, True] + [False] * 5)
    row = torch.tensor(tokenizer.encode("q=a\nb") + [tokenizer.end_id] * 2)
    assert ends_answers(_loaded(tokenizer, "shakespeare")) and answer_text(tokenizer, row, given) == "a\nb"
    old = CharTokenizer(tokenizer.chars, end_of_text=False)  # saved before the end token: newlines padded answers
    row = torch.tensor(old.encode("q=a\nb\n\n"))
    assert ends_answers(_loaded(old, reversal)) and answer_text(old, row, given) == "a"  # a prompted model, as before
    assert not ends_answers(_loaded(old, "shakespeare"))  # a corpus model learnt no end: nothing is cut
    assert answer_text(old, row, given, cut=False) == "a\nb\n\n"


def test_a_corpus_model_answers_past_its_first_newline(capsys, trained_run, tmp_path):
    assert load_tokenizer(trained_run / "checkpoints" / "step_00000006").end_id is not None
    prompts = tmp_path / "hamlet.jsonl"
    prompts.write_text((json.dumps({"prompt": "To be, or not to be"}) + "\n") * 24)
    records, _ = _ask(capsys, trained_run, prompts, tmp_path / "a.jsonl")
    answers = [r["answer"] for r in records]
    assert all(len(a) <= 32 - 19 for a in answers)
    assert any("\n" in a.rstrip("\n") for a in answers), answers  # text after a newline: not cut there


def test_an_old_prompted_char_model_still_ends_answers_at_a_newline(capsys, reversal, tmp_path):
    """A checkpoint whose tokenizer.json predates the end token was trained with newline padding."""
    old = tmp_path / "old-tokenizer.json"
    old.write_text(json.dumps({"type": "char", "chars": "".join(sorted(set("rev =abcd\n")))}))
    run = _run(tmp_path, reversal, "diffusion", "old", tokenizer=str(old))
    assert load_tokenizer(run / "checkpoints" / "step_00000006").vocab_size == 10  # no end token
    records, _ = _ask(capsys, run, reversal, tmp_path / "a.jsonl", "--order", "confidence", "--tokens-per-step", "4")
    assert all(len(r["answer"]) <= 16 - len(r["prompt"]) and "\n" not in r["answer"] for r in records)


def _token_prompts(path, reversal, tokenizer, count):
    """``count`` token records with different given positions: the prompt, and in every other row also the last
    position (the end token)."""
    lines = []
    for index, line in enumerate(reversal.read_text().splitlines()[:count]):
        prompt = tokenizer.encode(json.loads(line)["prompt"])
        given = [True] * len(prompt) + [False] * (16 - len(prompt))
        tokens = prompt + [0] * (16 - len(prompt))
        if index % 2:
            given[-1], tokens[-1] = True, tokenizer.end_id
        lines.append(json.dumps({"tokens": tokens, "given": given}))
    path.write_text("\n".join(lines) + "\n")
    return [json.loads(line) for line in lines]


def test_prompts_share_batches_whatever_positions_they_give(capsys, prompted_runs, reversal, tmp_path):
    run = prompted_runs["diffusion"]
    tokenizer = load_tokenizer(run / "checkpoints" / "step_00000006")
    asked = _token_prompts(tmp_path / "p.jsonl", reversal, tokenizer, 10)
    assert len({(tuple(r["given"])) for r in asked}) > 3  # more patterns than batches
    greedy = ["--order", "confidence", "--tokens-per-step", "1"]
    batched, stats = _ask(capsys, run, tmp_path / "p.jsonl", tmp_path / "b.jsonl", *greedy, "--batch-size", "4")
    assert stats["batches"] == math.ceil(10 / 4)
    alone, stats = _ask(capsys, run, tmp_path / "p.jsonl", tmp_path / "o.jsonl", *greedy, "--batch-size", "1")
    assert stats["batches"] == 10
    assert [r["tokens"] for r in batched] == [r["tokens"] for r in alone]  # greedy decoding: batching changes nothing
    drawn, stats = _ask(capsys, run, tmp_path / "p.jsonl", tmp_path / "d.jsonl", "--batch-size", "4")
    assert stats["batches"] == 3  # the sampler: each batch draws its own noise, so only the constraints are checked
    ar = prompted_runs["autoregressive"]  # writes each row's given tokens in as their positions come
    continued, stats = _ask(capsys, ar, tmp_path / "p.jsonl", tmp_path / "c.jsonl", "--batch-size", "4")
    assert stats["batches"] == 3
    for out in (batched, drawn, continued):
        for record, answered in zip(asked, out, strict=True):
            kept = [t for t, g in zip(answered["tokens"], record["given"], strict=True) if g]
            assert kept == [t for t, g in zip(record["tokens"], record["given"], strict=True) if g]
            assert all(0 <= t < tokenizer.vocab_size for t in answered["tokens"])  # every mask filled


def test_stats_count_calls_per_batch_and_per_sequence(capsys, prompted_runs, reversal, tmp_path):
    """The cached sampler calls the network for a sequence only when it changed: at most L + 1 = 17 calls per
    sequence, while the batch, whose sequences change at different steps, makes more."""
    run = prompted_runs["diffusion"]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(reversal.read_text().splitlines(keepends=True)[:8]))
    _, stats = _ask(capsys, run, prompts, tmp_path / "a.jsonl", "--steps", "64", "--batch-size", "8")
    assert stats["batches"] == 1 and stats["nfe_per_sequence"] <= 17 < stats["nfe"], stats
    code, _, err = run_cli(capsys, ["sample", "--checkpoint", str(run), "--num-samples", "8", "--steps", "64",
                                    "--stats"])  # fmt: skip
    stats = json.loads(err.strip().splitlines()[-1])
    assert code == 0 and stats["nfe_per_sequence"] <= 17 < stats["nfe"], stats
    _, stats = _ask(capsys, run, prompts, tmp_path / "a.jsonl", "--steps", "64", "--no-cache")
    assert stats["nfe_per_sequence"] == stats["nfe"] == 65  # uncached: every sequence in every call
