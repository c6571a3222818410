"""lm-evaluation-harness through ``scorediff lm-eval``, offline: local task YAML over local JSON files."""

import json
import math
import re

import pytest
import torch
from cli_run import assert_user_error, run_cli

pytest.importorskip("lm_eval")
from scorediff.harness import ScorediffLM, rolling_windows  # noqa: E402

WINDOW = 32  # the micro runs' context


class Request:
    def __init__(self, *args):
        self.args = args


@pytest.fixture(scope="module")
def tasks(tmp_path_factory, cli_corpus):
    """A multiple-choice task, a rolling one and a generation task, each over its own JSONL file."""
    root = tmp_path_factory.mktemp("lm_eval_tasks")
    text = cli_corpus.read_text()
    lines = [line for line in text.splitlines() if len(line) > 30][:12]
    choice = [{"context": line[:20], "choices": [line[20:28], lines[i - 1][20:28]], "label": 0} for i, line in
              enumerate(lines)]  # fmt: skip
    documents = [{"text": text[start : start + 2 * WINDOW]} for start in range(0, 6 * 2 * WINDOW, 2 * WINDOW)]
    generation = [{"prompt": line[:20], "answer": line[20:]} for line in lines[:4]]
    common = "test_split: test\ndataset_path: json\n"
    for name, records, body in [
        ("tiny_choice", choice, 'output_type: multiple_choice\ndoc_to_text: "{{context}}"\n'
         'doc_to_choice: "{{choices}}"\ndoc_to_target: "{{label}}"\nmetric_list:\n  - metric: acc\n'),
        ("tiny_rolling", documents, 'output_type: loglikelihood_rolling\ndoc_to_text: ""\ndoc_to_target: "{{text}}"\n'
         "metric_list:\n  - metric: bits_per_byte\n  - metric: word_perplexity\n"),
        ("tiny_generation", generation, 'output_type: generate_until\ndoc_to_text: "{{prompt}}"\n'
         'doc_to_target: "{{answer}}"\ngeneration_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 8\n  do_sample: false\n'
         "metric_list:\n  - metric: exact_match\n"),
    ]:  # fmt: skip
        data = root / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in records))
        files = f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        (root / f"{name}.yaml").write_text(f"task: {name}\n{common}{files}{body}")
    return {"root": root, "choice": choice, "documents": documents}


def exact_log_likelihood(loaded, context: str, continuation: str) -> float:
    """log p(continuation | BOS, context) from one forward pass of the AR network, summed by hand."""
    encode = loaded.tokenizer.encode
    tokens = torch.tensor([[loaded.model.bos_id, *encode(context), *encode(continuation)]])
    with torch.no_grad():
        log_probs = loaded.model(tokens[:, :-1]).double().log_softmax(-1)[0]
    picked = log_probs.gather(-1, tokens[0, 1:, None])[:, 0]
    return float(picked[-len(encode(continuation)) :].sum())


def test_an_ar_checkpoint_gives_exact_log_likelihoods(trained_ar_run, tasks):
    adapter = ScorediffLM(str(trained_ar_run), batch_size=5)
    pairs = [(doc["context"], choice) for doc in tasks["choice"] for choice in doc["choices"]]
    got = adapter.loglikelihood([Request(*pair) for pair in pairs])
    for (context, continuation), (value, _) in zip(pairs, got, strict=True):
        # the network runs in float32: its sums of ~10 log-probabilities of ~3 nats agree to a few ulp, 1e-6 relative
        assert value == pytest.approx(exact_log_likelihood(adapter.loaded, context, continuation), rel=1e-6)
    assert rolling_windows(list(range(70)), 32) == [([], list(range(32))), ([], list(range(32, 64))),
                                                    (list(range(38, 64)), list(range(64, 70)))]  # fmt: skip


def test_rolling_bits_per_byte_equal_eval_of_the_same_text(capsys, trained_ar_run, tasks, tmp_path):
    """Documents of whole windows: lm-eval's bits per byte (ASCII: per char) equal ``scorediff eval``'s exact
    bits per char on the same text to 1e-6."""
    out = tmp_path / "results.json"
    args = ["lm-eval", "--checkpoint", str(trained_ar_run), "--tasks", "tiny_rolling,tiny_choice,tiny_generation"]
    code, printed, err = run_cli(capsys, [*args, "--include-path", str(tasks["root"]), "--output", str(out)])
    assert code == 0, err
    results = json.loads(out.read_text())["results"]
    text = tmp_path / "documents.txt"
    text.write_text("".join(doc["text"] for doc in tasks["documents"]))
    code, _, err = run_cli(capsys, ["eval", "--checkpoint", str(trained_ar_run), "--data", str(text), "--max-windows",
                                    "0", "--json", str(tmp_path / "eval.json")])  # fmt: skip
    assert code == 0, err
    exact = json.loads((tmp_path / "eval.json").read_text())
    assert exact["windows"] == 12
    assert results["tiny_rolling"]["bits_per_byte,none"] == pytest.approx(exact["bits_per_char"], abs=1e-6)
    adapter = ScorediffLM(str(trained_ar_run))
    # the harness asks for each choice after its target delimiter, a space
    scores = adapter.loglikelihood([Request(d["context"], " " + c) for d in tasks["choice"] for c in d["choices"]])
    right = [scores[2 * i][0] > scores[2 * i + 1][0] for i in range(len(tasks["choice"]))]
    assert results["tiny_choice"]["acc,none"] == pytest.approx(sum(right) / len(right))
    assert 0 <= results["tiny_generation"]["exact_match,none"] <= 1 and "tiny_generation" in printed


def test_a_diffusion_checkpoint_gives_a_seeded_conditional_bound(trained_radd_run, tasks):
    adapter = ScorediffLM(str(trained_radd_run), mc_samples=8)
    requests = [Request(doc["context"], doc["choices"][0]) for doc in tasks["choice"][:4]]
    first, again = adapter.loglikelihood(requests), adapter.loglikelihood(requests)
    assert first == again and all(value < 0 and math.isfinite(value) for value, _ in first)
    # the bound of a continuation given its context is not the bound of the pair: the context is never scored
    joint = adapter.loglikelihood([Request("", doc["context"] + doc["choices"][0]) for doc in tasks["choice"][:4]])
    assert all(j < c for (j, _), (c, _) in zip(joint, first, strict=True))
    (text,) = adapter.generate_until([Request(tasks["choice"][0]["context"], {"until": ["\n"], "max_gen_toks": 6})])
    assert len(text) <= 6 and "\n" not in text


def test_lm_eval_refuses_bad_input_in_one_line(capsys, trained_ar_run, tasks, tmp_path):
    base = ["lm-eval", "--checkpoint", str(trained_ar_run), "--include-path", str(tasks["root"])]
    assert_user_error(capsys, [*base, "--tasks", "no_such_task"], r"lm-eval knows no task 'no_such_task'")
    assert_user_error(capsys, [*base, "--tasks", "tiny_choice", "--mc-samples", "0"], r"--mc-samples must be > 0")
    assert not list(tmp_path.iterdir())
    # a request the model cannot serve: a continuation longer than its context of 32 tokens
    records = tmp_path / "long.jsonl"
    records.write_text(json.dumps({"context": "To be", "choices": ["x" * 40, "y"], "label": 0}) + "\n")
    long_task = (tasks["root"] / "tiny_choice.yaml").read_text().replace("tiny_choice", "tiny_long")
    (tmp_path / "tiny_long.yaml").write_text(re.sub(r"test: .*", f"test: {records}", long_task))
    out = tmp_path / "out.json"
    command = ["lm-eval", "--checkpoint", str(trained_ar_run), "--include-path", str(tmp_path), "--tasks", "tiny_long"]
    code, _, err = run_cli(capsys, [*command, "--output", str(out)])  # the harness's progress bars come first
    assert code == 2 and "Traceback" not in err and not out.exists()
    assert re.fullmatch(r"scorediff: error: a continuation of \d+ tokens does not fit .*", err.strip().splitlines()[-1])
