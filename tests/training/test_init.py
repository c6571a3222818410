"""``train.init`` (``scorediff train --init MODEL``): a new run starts from a loaded model's weights."""

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

import scorediff
from scorediff.checkpoint import Header
from scorediff.config import ConfigError, config_from_dict
from scorediff.data.simple_tokenizers import CharTokenizer
from scorediff.loading import _tokenizer_fits
from scorediff.training import train
from scorediff.training.distributed import DistInfo
from scorediff.training.setup import prepare_data
from scorediff.training.step import draw_batch

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))

from cli_run import assert_user_error  # noqa: E402


def with_train(config, **train):
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **train))


def first_loss(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return next(r["loss_nats_per_token"] for r in records if r.get("step") == 1 and "loss_nats_per_token" in r)


def loss_of(loaded, config, initial=None) -> float:
    """The loaded model's training loss, nats per token, on the batch a new run of ``config`` draws first (reading
    its data with the tokenizer of ``initial``, the model it starts from, when given)."""
    data = prepare_data(config, DistInfo(), None, initial)
    state = SimpleNamespace(config=config, step=0, info=DistInfo(), objective=loaded.objective)
    batch = draw_batch(state, data.train, torch.device("cpu"))
    with torch.no_grad():
        return float(loaded.objective.loss(loaded.model, batch).sum() / batch["x_0"].numel())


def test_an_initialised_run_starts_from_the_loaded_model(micro_config):
    config, _ = micro_config("autoregressive", max_steps=4, save_every=0, bf16=False)
    parent = train(config, progress=False)
    child = train(with_train(config, run_name="child", init=str(parent.checkpoint), max_steps=2), progress=False)
    expected = loss_of(scorediff.load(parent.checkpoint), config)
    assert first_loss(child.run_dir) == pytest.approx(expected, rel=1e-5)
    # the parent's own first step, from random weights on the same batch, was far from it: the test can fail
    assert first_loss(parent.run_dir) - expected > 0.1


def test_a_model_that_does_not_fit_is_refused_in_one_line_before_anything_is_written(micro_config, tmp_path):
    config, _ = micro_config("autoregressive", max_steps=1, save_every=0)
    parent = train(config, progress=False)
    wider = dataclasses.replace(config, model=dataclasses.replace(config.model, hidden_size=48))
    wider = with_train(wider, run_name="child", init=str(parent.checkpoint))
    does_not_fit = (
        r"^train.init: the weights in .*step_00000001 do not match this run's network \(its model.\* options\): "
        r".* has shape \(.*32.*\), expected \(.*48.*\)"
    )
    with pytest.raises(ConfigError, match=does_not_fit):
        train(wider, progress=False)
    diffusion, _ = micro_config("diffusion", max_steps=1)  # a DiT: only a llama AR model adapts (test_a2d.py)
    diffusion = with_train(diffusion, run_name="child", init=str(parent.checkpoint))
    with pytest.raises(ConfigError, match=r"^train.init: an autoregressive model adapts only as"):
        train(diffusion, progress=False)
    with pytest.raises(ConfigError, match=r"^train.init: checkpoint .*nowhere does not exist"):
        train(with_train(diffusion, init=str(tmp_path / "nowhere")), progress=False)
    assert not (tmp_path / "runs" / "child").exists()


def test_the_command_line_refuses_a_file_that_is_no_model(micro_config, tmp_path, capsys):
    _, path = micro_config("autoregressive", max_steps=1)
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    argv = ["train", "--config", str(path), "--name", "child", "--out", str(tmp_path / "runs")]
    assert_user_error(capsys, [*argv, "--init", str(text)], r"train.init: .*notes.txt must be a directory")
    assert_user_error(capsys, [*argv, "--init", str(tmp_path), "--resume"], r"--init starts a new run")
    assert not (tmp_path / "runs" / "child").exists()


def test_a_tokenizer_beside_init_is_refused(micro_config, tmp_path, capsys):
    """``--tokenizer`` beside ``--init`` was once ignored without a word: the run read its data with the model's
    own tokenizer whatever was named."""
    config, path = micro_config("autoregressive", max_steps=1, save_every=0)
    parent = train(config, progress=False)
    out = tmp_path / "child-runs"
    argv = ["train", "--config", str(path), "--out", str(out), "--init", str(parent.checkpoint), "--tokenizer", "byte"]
    own = r"error: --tokenizer: a run from --init .* reads its data with that model's own tokenizer \(\d+ tokens\)"
    assert_user_error(capsys, argv, own + r", the ids its weights know; leave --tokenizer out$")
    override = [*argv[:-2], "--data.tokenizer=byte"]  # the same through the configuration key, once also ignored
    assert_user_error(capsys, override, r"error: --data.tokenizer: a run from --init .* leave --data.tokenizer out$")
    assert not out.exists()


def test_a_model_without_a_tokenizer_needs_the_one_it_was_trained_with(micro_config, tmp_path, capsys):
    """A model folder without its tokenizer once trained on a char tokenizer learnt from the data: 15 ids of the
    data's own for weights that know 100 others."""
    folder = tmp_path / "no_tokenizer"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "llama_family" / "tiny_llama", folder)
    (folder / "tokenizer.json").unlink()
    _, path = micro_config("autoregressive", max_steps=1, save_every=0)
    out = tmp_path / "runs"
    argv = ["train", "--config", str(path), "--out", str(out), "--init", str(folder), "--quiet", "--num-samples", "0"]
    for learnt in ("char", "bpe"):
        learnt_ids = rf"train.init=.*no_tokenizer comes without a tokenizer, and a {learnt} tokenizer learnt from the"
        assert_user_error(capsys, [*argv, "--tokenizer", learnt], learnt_ids + r" data would give ids its weights")
    assert not out.exists()


def test_a_converted_masked_model_fine_tunes_loads_and_resumes(tmp_path):
    """A converted LLaDA's tokenizer names its mask (100 ids; the network's 99 data tokens and the mask), so a run
    from it once built an objective over 100 data tokens and refused the model's weights. The run keeps the model's
    data tokens (``setup.data_tokens``): its first loss is the LLaDA objective's on the same batch, the run loads
    with that tokenizer, and it resumes."""
    source = Path(__file__).parents[1] / "fixtures" / "llama_family" / "tiny_llada"
    loaded = scorediff.load(source)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"prompt": f"a{i} b", "answer": f"c{i}"}) + "\n" for i in range(40)))
    values = {"objective": "diffusion", "model": dataclasses.asdict(loaded.model.config),
              "diffusion": {"graph": "absorbing", "schedule": "loglinear", "mask_count": True},
              "data": {"source": str(tasks), "cache_dir": str(tmp_path / "cache")},
              "train": {"max_steps": 3, "batch_size": 4, "save_every": 2, "eval_every": 0, "eval_windows": 2,
                        "device": "cpu", "bf16": False, "compile": False, "preview_samples": 0, "log_every": 1,
                        "out_dir": str(tmp_path / "runs"), "run_name": "run", "init": str(source)}}  # fmt: skip
    config = config_from_dict(values)
    run = train(dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=3)), until_step=2,
                progress=False)  # fmt: skip
    assert first_loss(run.run_dir) == pytest.approx(loss_of(loaded, config, loaded), rel=1e-5)
    tuned = scorediff.load(run.checkpoint)
    assert (tuned.objective.num_tokens, tuned.tokenizer.vocab_size) == (99, 100)
    resumed = train(config, resume=True, progress=False)
    assert resumed.step == 3


def test_a_run_from_a_model_with_padded_rows_loads_with_its_smaller_tokenizer():
    """A published model may have embedding rows past its tokenizer's ids (Qwen2.5: 151,936 rows, 151,665 tokens); a
    run from it keeps the rows, so its Hugging Face tokenizer is smaller than its data tokens and still its own. A
    char tokenizer must match exactly (another run's tokenizer is refused: tests/cli/test_bad_input.py)."""
    hf = scorediff.load(Path(__file__).parents[1] / "fixtures" / "llama_family" / "tiny_llama").tokenizer
    padded = Header("autoregressive", None, hf.vocab_size + 28, None, hf.vocab_size + 29)
    assert _tokenizer_fits(hf, padded)
    assert not _tokenizer_fits(hf, Header("autoregressive", None, hf.vocab_size - 1, None, hf.vocab_size))
    char, size = CharTokenizer("abc"), CharTokenizer("abc").vocab_size
    assert not _tokenizer_fits(char, Header("diffusion", "absorbing", size + 1, size + 1, size + 2))
    assert _tokenizer_fits(char, Header("diffusion", "absorbing", size - 1, size - 1, size))  # it names the mask


def test_a_model_with_rows_past_its_tokenizer_fine_tunes_and_loads(tmp_path):
    """The tiny LLaMA padded to 120 embedding and output rows for its 100 tokens, as Qwen2.5 pads 151,665 tokens to
    151,936 rows: a run from it once counted the tokenizer's 100 tokens and refused the weights. It keeps the 120,
    starts from the model's loss, and loads with the 100-token tokenizer."""
    source = tmp_path / "padded"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "llama_family" / "tiny_llama", source)
    weights = load_file(source / "model.safetensors")
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        weights[name] = torch.cat([weights[name], torch.randn(20, weights[name].shape[1]) * 0.02])
    save_file(weights, source / "model.safetensors")
    config_json = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config_json, "vocab_size": 120}))
    loaded = scorediff.load(source)
    assert (loaded.objective.num_tokens, loaded.tokenizer.vocab_size) == (120, 100)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"prompt": f"a{i} b", "answer": f"c{i}"}) + "\n" for i in range(40)))
    values = {"objective": "autoregressive", "model": dataclasses.asdict(loaded.model.config),
              "data": {"source": str(tasks), "cache_dir": str(tmp_path / "cache")},
              "train": {"max_steps": 2, "batch_size": 4, "save_every": 0, "eval_every": 0, "eval_windows": 2,
                        "device": "cpu", "bf16": False, "compile": False, "preview_samples": 0, "log_every": 1,
                        "out_dir": str(tmp_path / "runs"), "run_name": "run", "init": str(source)}}  # fmt: skip
    config = config_from_dict(values)
    run = train(config, progress=False)
    assert first_loss(run.run_dir) == pytest.approx(loss_of(loaded, config, loaded), rel=1e-5)
    tuned = scorediff.load(run.checkpoint)
    assert (tuned.objective.num_tokens, tuned.tokenizer.vocab_size) == (120, 100)
