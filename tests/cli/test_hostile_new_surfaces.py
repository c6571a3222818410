"""What a hostile user tried on the newest surfaces (prepare, train --init and --tokenizer, the meta device):
each case once broke the promise of one line on stderr, exit code 2, no traceback and nothing written."""

import os
import re
from pathlib import Path

import pytest
import torch
from cli_run import assert_user_error

import scorediff

FIXTURES = Path(__file__).parents[1] / "fixtures"

# Files a user may pass as a tokenizer that are none; each once escaped as a traceback (ValueError, or the tokenizers
# library's bare Exception for a JSON with a "model" it cannot parse).
NOT_TOKENIZERS = {
    "notes.txt": ("just some text\n", r"cannot read a tokenizer from .*notes.txt: Expecting value"),
    "list.json": ("[1, 2]", r"list.json is not a tokenizer file"),
    "model.json": ('{"model": 1}', r"model.json is not a tokenizer the tokenizers library reads \(data did not"),
    "char.json": ('{"type": "char", "chars": "ab", "end_of_text": "x"}', r'"end_of_text" must be true or false'),
    "integer.json": ('{"type": "integer", "vocab_size": 0}', r'an integer tokenizer needs a positive "vocab_size"'),
}


@pytest.mark.parametrize("name", sorted(NOT_TOKENIZERS))
def test_prepare_refuses_a_file_that_is_no_tokenizer(capsys, tmp_path, name):
    text, pattern = NOT_TOKENIZERS[name]
    (tmp_path / name).write_text(text)
    cache = tmp_path / "cache"
    argv = ["prepare", "--config", "tiny", "--tokenizer", str(tmp_path / name), f"--data.cache_dir={cache}"]
    assert_user_error(capsys, argv, pattern)
    assert not cache.exists()


def test_train_refuses_a_file_that_is_no_tokenizer(capsys, micro_yaml, tmp_path):
    (tmp_path / "notes.txt").write_text("just some text\n")
    out = tmp_path / "runs"
    argv = ["train", "--config", str(micro_yaml), "--out", str(out), "--tokenizer", str(tmp_path / "notes.txt")]
    assert_user_error(capsys, argv, r"cannot read a tokenizer from .*notes.txt")
    assert not out.exists()


@pytest.mark.parametrize(
    ("flag", "value", "pattern"),
    [
        ("--init", "", r"--init expects a checkpoint, run directory, .gguf file or Hub id; got ''"),
        ("--init", " ", r"--init expects a checkpoint, .* got ' '"),
        ("--name", "", r"--name expects a run directory name; got ''"),
        ("--train.init=", "", r"--train.init expects a checkpoint, run directory, .gguf file or Hub id; got ''"),
        ("--train.run_name=", " ", r"--train.run_name expects a run directory name; got ' '"),
    ],
)
def test_train_refuses_an_empty_init_or_name(capsys, micro_yaml, tmp_path, flag, value, pattern):
    """``--init ""`` once trained from random weights as if no --init had been given, ``--name ""`` named the run
    by the date as if no --name had been; so did their overrides, ``--train.init=`` and ``--train.run_name=``."""
    out = tmp_path / "runs"
    given = [flag + value] if flag.endswith("=") else [flag, value]
    assert_user_error(capsys, ["train", "--config", str(micro_yaml), "--out", str(out), *given], pattern)
    assert not out.exists()


def test_prepare_refuses_more_processes_than_cpus(capsys, tmp_path):
    """99,999,999 processes were accepted (and would be started for a saved dataset)."""
    cache, cpus = tmp_path / "cache", os.cpu_count()
    argv = ["prepare", "--config", "tiny", f"--data.cache_dir={cache}", "--num-proc", str(cpus + 1)]
    assert_user_error(capsys, argv, rf"--num-proc must be at most this machine's {cpus} CPUs; got {cpus + 1}")
    assert not cache.exists()


def test_a_gguf_builds_on_the_meta_device_in_float16():
    """The float16 range check once read values of meta tensors (RuntimeError: Tensor.item() on meta tensors)."""
    pytest.importorskip("gguf")
    path = FIXTURES / "llama_family" / "tiny_llama.gguf"
    loaded = scorediff.load(path, device="meta", dtype="float16")
    real = scorediff.load(path, dtype="float16").model.state_dict()
    meta = loaded.model.state_dict()
    assert {name: (t.shape, t.dtype) for name, t in meta.items()} == {n: (t.shape, t.dtype) for n, t in real.items()}
    assert all(t.is_meta for t in loaded.model.parameters())
    assert {t.dtype for t in loaded.model.parameters()} == {torch.float16}


@pytest.mark.parametrize("size", ["99999999999", "1e30"])
def test_a_batch_no_memory_holds_is_refused_before_the_run_starts(capsys, micro_yaml, tmp_path, size):
    """Such a batch once died in the allocator with a C++ traceback, leaving a run folder with its config."""
    out = tmp_path / "runs"
    argv = ["train", "--config", str(micro_yaml), "--out", str(out), f"--train.batch_size={size}"]
    assert_user_error(capsys, argv, r"train.batch_size must be in \[1, 1048576\]; got \d+")
    assert not out.exists()
    plan = tmp_path / "plan.json"
    argv = ["plan", "--config", "tiny", f"--train.batch_size={size}", "--json", str(plan)]
    assert_user_error(capsys, argv, r"train.batch_size must be in \[1, 1048576\]")
    assert not plan.exists()


# Each trained the whole run and then failed drawing its samples: 10^26 as an int64 overflow traceback, 10^23
# previews as a C++ allocator traceback, 10^12 positions (and 10^8 closing samples) out of memory after the run.
AFTER_THE_RUN = {
    "--sampling.length=1" + "0" * 26: r"sampling.length must be in \[0, 16777216\]; got 1000",
    "--sampling.length=1" + "0" * 12: r"sampling.length must be in \[0, 16777216\]; got 1000",
    "--train.preview_samples=1" + "0" * 23: r"train.preview_samples must be in \[0, 65536\]; got 1000",
    "--num-samples=100000000": r"this request would need about [\d,.]+ GiB; the machine has .* \(ask for fewer --num",
    "--optim.warmup_steps=1" + "0" * 26: r"optim.warmup_steps must be in \[0, 1000000000000000\]",
}


@pytest.mark.parametrize("flag", sorted(AFTER_THE_RUN))
def test_samples_no_run_can_draw_are_refused_before_the_first_step(capsys, micro_yaml, tmp_path, flag):
    out = tmp_path / "runs"
    assert_user_error(capsys, ["train", "--config", str(micro_yaml), "--out", str(out), flag], AFTER_THE_RUN[flag])
    assert not out.exists()


@pytest.mark.parametrize("setting", ["lora_alpha=32", "lora_dropout=0.1", "lora_targets=q_proj"])
def test_a_lora_setting_without_a_rank_is_refused(capsys, micro_yaml, tmp_path, setting):
    """It was ignored: the run fine-tuned every weight, which a user asking for LoRA did not mean."""
    out = tmp_path / "runs"
    name = setting.partition("=")[0]
    expected = rf"train.{name} applies with train.lora_rank > 0 \(at 0, LoRA is off and every weight trains\); got"
    assert_user_error(capsys, ["train", "--config", str(micro_yaml), "--out", str(out), f"--train.{setting}"], expected)
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--tokenizer=", "--data.tokenizer= "])
def test_an_empty_tokenizer_is_refused(capsys, micro_yaml, tmp_path, flag):
    """An empty name looked for ``tokenizer.json`` in the working folder and said it found none."""
    out = tmp_path / "runs"
    expected = r"data.tokenizer expects char, byte, dna, gpt2, bpe or a tokenizer's path; got '\s?'"
    assert_user_error(capsys, ["train", "--config", str(micro_yaml), "--out", str(out), flag], expected)
    assert not out.exists()


def test_a_vocab_size_other_than_the_tokenizers_is_refused(capsys, micro_yaml, tmp_path):
    """``model.vocab_size`` is derived from the tokenizer and graph; a stated other one was replaced without a word."""
    out = tmp_path / "runs"
    argv = ["train", "--config", str(micro_yaml), "--out", str(out), "--model.vocab_size=500"]
    expected = r"model.vocab_size is the tokenizer's and graph's count, \d+ for this run; got 500 \(leave it at 0\)"
    assert_user_error(capsys, argv, expected)
    assert not out.exists()
    assert_user_error(capsys, ["plan", "--config", "tiny", "--model.vocab_size=500"], expected)


def test_a_step_count_past_any_run_is_refused_before_plan_overflows(capsys, tmp_path):
    """``plan`` with 1 followed by 320 zeros steps escaped as an OverflowError in its float arithmetic."""
    plan = tmp_path / "plan.json"
    argv = ["plan", "--config", "tiny", "--train.max_steps=1" + "0" * 320, "--json", str(plan)]
    assert_user_error(capsys, argv, r"train.max_steps must be in \[1, 1000000000000000\]; got 1000")
    assert not plan.exists()


def test_a_lora_rank_above_the_layers_width_is_refused(capsys, micro_yaml, tmp_path):
    """A rank of 4096 on layers 32 wide once trained adapters larger than the weights they adapt, silently."""
    pytest.importorskip("peft")
    out = tmp_path / "runs"
    argv = ["train", "--config", str(micro_yaml), "--out", str(out), "--train.lora_rank=4096"]
    pattern = r"train.lora_rank must be at most (\d+), the narrower side of blocks\.\d+\.\w+'s weight; got 4096"
    width = int(re.search(pattern, assert_user_error(capsys, argv, pattern)).group(1))
    assert 1 <= width <= 64
    assert not out.exists()


@pytest.mark.parametrize("path", [None, 5, ""])
def test_load_refuses_what_is_no_path(path):
    """None and 5 once escaped as a TypeError from pathlib; "" loaded the working directory (or said it held none)."""
    with pytest.raises(scorediff.InputError, match=r"path must be a checkpoint folder, .* or Hub id; got (None|5|'')$"):
        scorediff.load(path, device="meta")


def test_an_empty_checkpoint_names_no_folder(capsys, tmp_path, monkeypatch, trained_run):
    monkeypatch.chdir(trained_run)  # a run directory: "" once loaded the working directory's model
    for command in ("sample", "info"):
        assert_user_error(capsys, [command, "--checkpoint", ""], r"path must be a checkpoint folder, .*; got ''$")


def test_generate_refuses_a_network_loaded_on_the_meta_device():
    """It once failed inside torch ("Tensor on device cpu is not on the expected device meta!")."""
    loaded = scorediff.load(FIXTURES / "published" / "tiny_mdlm", device="meta")
    with pytest.raises(scorediff.InputError, match=r"^the model has no weights \(loaded with device='meta'\): load it"):
        scorediff.generate(loaded.objective, loaded.model, (1, 8), steps=2, seed=0)
    real = scorediff.load(FIXTURES / "published" / "tiny_mdlm")
    assert scorediff.generate(real.objective, real.model, (1, 8), steps=2, seed=0).tokens.shape == (1, 8)


@pytest.mark.parametrize("extra", [["--order", "confidence"], ["--tokens-per-step", "2"], ["--order", "margin"]])
def test_a_predictor_beside_an_order_is_refused(capsys, extra):
    """An order commits tokens itself: ``--predictor`` beside it was silently ignored, ``first_hitting`` too."""
    llada = FIXTURES / "llama_family" / "tiny_llada"
    argv = ["sample", "--checkpoint", str(llada), "--length", "8", "--predictor", "first_hitting"]
    assert_user_error(capsys, [*argv, *extra], r"--predictor is the random order's step rule")
