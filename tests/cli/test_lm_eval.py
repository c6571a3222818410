"""lm-evaluation-harness through ``scorediff lm-eval``, offline: local task YAML over local JSON files."""

import json
import math
import re

import pytest
import torch
from cli_run import assert_user_error, run_cli

pytest.importorskip("lm_eval")
import scorediff  # noqa: E402
from scorediff.errors import InputError  # noqa: E402
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
    assert "tiny_generation" in printed


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


def argmax_continuation(loaded, context: list[int], steps: int) -> list[int]:
    """Greedy decoding by hand: ``steps`` tokens, each the argmax of one forward pass over all before it."""
    tokens = [loaded.model.bos_id, *context]
    with torch.no_grad():
        for _ in range(steps):
            tokens.append(int(loaded.model(torch.tensor([tokens]))[0, -1].argmax()))
    return tokens[1 + len(context) :]


def test_is_greedy_says_whether_argmax_decoding_returns_the_continuation(trained_ar_run, tasks):
    """An AR model's ``is_greedy`` (LAMBADA's accuracy) against a loop of argmax calls: the model's own greedy
    continuation of each context is greedy, the corpus text (or the greedy one with its last token changed) is
    greedy exactly when the loop reproduces it."""
    adapter = ScorediffLM(str(trained_ar_run), batch_size=3)
    loaded, requests, expected = adapter.loaded, [], []
    for doc in tasks["choice"]:
        context = loaded.tokenizer.encode(doc["context"])
        own = argmax_continuation(loaded, context, 6)
        changed = [*own[:-1], (own[-1] + 1) % loaded.model.bos_id]  # bos_id == num_tokens
        for continuation in (own, changed, loaded.tokenizer.encode(doc["choices"][0])):
            requests.append(Request(doc["context"], loaded.tokenizer.decode(continuation)))
            expected.append(argmax_continuation(loaded, context, len(continuation)) == continuation)
    got = [greedy for _, greedy in adapter.loglikelihood(requests)]
    assert got == expected
    assert got[0::3] == [True] * len(tasks["choice"]) and not any(got[1::3])


def test_a_loglikelihood_task_scores_is_greedy_as_its_accuracy(capsys, trained_ar_run, tasks, tmp_path):
    """A LAMBADA-shaped task (``output_type: loglikelihood``, ``acc``) through ``scorediff lm-eval``: its accuracy is
    the share of documents whose target the argmax loop reproduces."""
    loaded, records, hits = scorediff.load(trained_ar_run), [], []
    for i, doc in enumerate(tasks["choice"]):
        context = loaded.tokenizer.encode(doc["context"])
        own = argmax_continuation(loaded, context, 5)
        target = own if i % 3 else loaded.tokenizer.encode(doc["choices"][0])  # a third of them the corpus text
        records.append({"context": doc["context"], "target": loaded.tokenizer.decode(target)})
        hits.append(argmax_continuation(loaded, context, len(target)) == target)
    (tmp_path / "greedy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "tiny_greedy.yaml").write_text(
        f"task: tiny_greedy\ntest_split: test\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: "
        f'{tmp_path / "greedy.jsonl"}\noutput_type: loglikelihood\ndoc_to_text: "{{{{context}}}}"\n'
        f'doc_to_target: "{{{{target}}}}"\ntarget_delimiter: ""\nmetric_list:\n  - metric: acc\n'
    )
    out = tmp_path / "results.json"
    command = ["lm-eval", "--checkpoint", str(trained_ar_run), "--tasks", "tiny_greedy", "--include-path"]
    code, _, err = run_cli(capsys, [*command, str(tmp_path), "--output", str(out)])
    assert code == 0, err
    assert 0 < sum(hits) < len(hits)
    assert json.loads(out.read_text())["results"]["tiny_greedy"]["acc,none"] == pytest.approx(sum(hits) / len(hits))


@pytest.mark.parametrize("run", ["trained_radd_run", "trained_run"])
def test_the_diffusion_log_likelihood_is_the_bound_scorediff_eval_computes(capsys, request, run, cli_corpus, tmp_path):
    """The same answers given the same prompts, whole windows, one batch, the same seed and times: lm-eval's
    log-likelihoods sum to minus ``scorediff eval``'s conditional bound (float64 sums of the same terms: 1e-9)."""
    checkpoint = str(request.getfixturevalue(run))
    lines = [line[:WINDOW] for line in cli_corpus.read_text().splitlines() if len(line) >= WINDOW][:6]
    examples = [{"prompt": line[: 8 + 3 * i], "answer": line[8 + 3 * i :]} for i, line in enumerate(lines)]
    data = tmp_path / "examples.jsonl"
    data.write_text("".join(json.dumps(example) + "\n" for example in examples))
    command = ["eval", "--checkpoint", checkpoint, "--data", str(data), "--num-t", "8", "--seed", "3"]
    code, _, err = run_cli(capsys, [*command, "--batch-size", "16", "--json", str(tmp_path / "eval.json")])
    assert code == 0, err
    bound = json.loads((tmp_path / "eval.json").read_text())
    assert bound["prompted"] and bound["tokens"] == sum(len(example["answer"]) for example in examples)
    adapter = ScorediffLM(checkpoint, mc_samples=8, batch_size=16, seed=3)
    got = adapter.loglikelihood([Request(example["prompt"], example["answer"]) for example in examples])
    assert -sum(value for value, _ in got) == pytest.approx(bound["nats_per_token"] * bound["tokens"], rel=1e-9)


def test_exact_match_counts_the_answers_greedy_decoding_writes(capsys, trained_ar_run, tasks, tmp_path):
    """A generation task (greedy, 8 tokens, cut at a newline) whose answer is the argmax loop's own text for two
    documents in three and a changed text for the third: exact_match is 2/3 of them, exactly."""
    loaded, records = scorediff.load(trained_ar_run), []
    for i, doc in enumerate(tasks["choice"][:9]):
        text = loaded.tokenizer.decode(argmax_continuation(loaded, loaded.tokenizer.encode(doc["context"]), 8))
        answer = text.split("\n")[0]
        records.append({"prompt": doc["context"], "answer": answer if i % 3 else answer + "#"})
    (tmp_path / "greedy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "tiny_greedy_generation.yaml").write_text(
        f"task: tiny_greedy_generation\ntest_split: test\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f'    test: {tmp_path / "greedy.jsonl"}\noutput_type: generate_until\ndoc_to_text: "{{{{prompt}}}}"\n'
        f'doc_to_target: "{{{{answer}}}}"\ngeneration_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 8\n'
        f"  do_sample: false\nmetric_list:\n  - metric: exact_match\n"
    )
    out = tmp_path / "results.json"
    command = ["lm-eval", "--checkpoint", str(trained_ar_run), "--tasks", "tiny_greedy_generation", "--include-path"]
    code, _, err = run_cli(capsys, [*command, str(tmp_path), "--output", str(out)])
    assert code == 0, err
    results = json.loads(out.read_text())["results"]["tiny_greedy_generation"]
    assert results["exact_match,none"] == pytest.approx(6 / 9)


def write_task(root, name: str, records: list[dict], body: str) -> None:
    """A task YAML ``name`` over a JSONL file of ``records``; ``body`` is the rest of the YAML."""
    (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    head = f"task: {name}\ntest_split: test\ndataset_path: json\n"
    (root / f"{name}.yaml").write_text(f"{head}dataset_kwargs:\n  data_files:\n    test: {root / name}.jsonl\n{body}")


CHOICE = 'output_type: multiple_choice\ndoc_to_text: "{{context}}"\ndoc_to_choice: "{{choices}}"\n'


@pytest.mark.parametrize(
    "name, records, body, message",
    [
        ("outside_vocabulary", [{"context": "To be \u2603", "choices": ["or", "not"], "label": 0}],
         f'{CHOICE}doc_to_target: "{{{{label}}}}"\nmetric_list:\n  - metric: acc\n',
         r"lm-eval gave text this model's tokenizer cannot encode: character '\u2603' is not in"),
        # in a later document: lm-eval's own check of the first document's choices fails on an empty one
        ("empty_choice", [{"context": "To be", "choices": ["x", "or"], "label": 0},
                          {"context": "To be", "choices": ["", "or"], "label": 0}],
         f'{CHOICE}doc_to_target: "{{{{label}}}}"\ntarget_delimiter: ""\nmetric_list:\n  - metric: acc\n',
         r"lm-eval asked for the likelihood of an empty continuation"),
        ("negative_tokens", [{"prompt": "To be", "answer": "or"}],
         'output_type: generate_until\ndoc_to_text: "{{prompt}}"\ndoc_to_target: "{{answer}}"\n'
         "generation_kwargs:\n  until: [\"\\n\"]\n  max_gen_toks: -3\nmetric_list:\n  - metric: exact_match\n",
         r"max_gen_toks must be a positive whole number; got -3"),
    ],
)  # fmt: skip
def test_requests_the_model_cannot_serve_are_one_line_errors(capsys, trained_ar_run, tmp_path, name, records, body,
                                                            message):  # fmt: skip
    write_task(tmp_path, name, records, body)
    command = ["lm-eval", "--checkpoint", str(trained_ar_run), "--include-path", str(tmp_path), "--tasks", name]
    code, _, err = run_cli(capsys, command)  # the harness's progress bars come first
    assert code == 2 and "Traceback" not in err
    assert re.fullmatch(f"scorediff: error: {message}.*", err.strip().splitlines()[-1])


def test_bad_options_are_refused_before_lm_eval_runs(capsys, trained_ar_run, tasks):
    base = ["lm-eval", "--checkpoint", str(trained_ar_run), "--include-path", str(tasks["root"])]
    # 1e30 escaped from islice as a traceback; 2.5 was cut to 2
    for limit, shown in (("nan", "nan"), ("inf", "inf"), ("1e30", r"1e\+30"), ("2.5", "2.5")):
        expected = (
            rf"--limit must be a whole number of documents \(at most [\d,]+\), or a fraction below 1; got {shown}$"
        )
        assert_user_error(capsys, [*base, "--tasks", "tiny_choice", "--limit", limit], expected)
    assert_user_error(capsys, [*base, "--tasks", "tiny_choice", "--limit=-inf"], r"--limit must be > 0; got -inf")
    # 12 documents: the harness's random.sample escaped as a ValueError traceback (datasets' progress bars may come
    # first on stderr, as they do before any evaluation)
    code, _, err = run_cli(capsys, [*base, "--tasks", "tiny_choice", "--limit", "2", "--num-fewshot", "100"])
    assert code == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last == "scorediff: error: --num-fewshot 100: a task has fewer documents than that to draw its examples from"
    for spelling in (",", " , ,"):
        assert_user_error(capsys, [*base, "--tasks", spelling], r"--tasks must name at least one task")
    for key, value in (("max_gen_toks", -1), ("mc_samples", 0), ("batch_size", "2.5")):
        with pytest.raises(InputError, match=rf"^{key} must be a positive whole number; got {value!r}$"):
            ScorediffLM(str(trained_ar_run), **{key: value})
