"""Published layouts (RADD, MDLM, BD3-LM) against the outputs of their public code on tiny random models
(tests/fixtures/published, made by make.py there), and the converters' strictness."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from cli.cli_run import assert_user_error
from safetensors.torch import load_file, save_file

import scorediff

PUBLISHED = Path(__file__).parents[1] / "fixtures" / "published"
TOKENS = 11  # data tokens of the fixtures; the mask is id 11


def outputs(name: str):
    loaded = scorediff.load(PUBLISHED / name)
    io = load_file(str(PUBLISHED / name / "io.safetensors"))
    with torch.no_grad():
        return loaded, io, loaded.model.logits(io["x"], None), loaded.model.clean_log_probs(io["x"])


def test_radd_reproduces_the_public_code():
    """RADD's forward returns log p(x_0 | x_t) over the data tokens and the mask's raw logit."""
    loaded, io, logits, log_probs = outputs("tiny_radd")
    # float32 through the same operations in the same order: equal to rounding (1e-5 allows a fused op's order)
    torch.testing.assert_close(log_probs[..., :TOKENS], io["output"][..., :TOKENS], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[..., TOKENS], io["output"][..., TOKENS], rtol=0, atol=1e-5)
    assert loaded.layout == "RADD" and loaded.model.config.norm_bias and not loaded.model.config.time_conditioning


def test_mdlm_reproduces_the_public_code():
    """The backbone's raw logits with sigma = 0, and the log-probabilities of MDLM's subs parameterisation at
    masked positions (the mask's logit removed, the rest normalised)."""
    loaded, io, logits, log_probs = outputs("tiny_mdlm")
    # the folded adaLN biases (W c + b computed once) round differently from W c + b at every call: 1e-5
    torch.testing.assert_close(logits, io["output"], rtol=0, atol=1e-5)
    subs = io["output"][..., :TOKENS].log_softmax(-1)
    masked = io["x"] == TOKENS
    torch.testing.assert_close(log_probs[..., :TOKENS][masked], subs[masked], rtol=0, atol=1e-5)
    assert loaded.layout == "MDLM" and loaded.graph.mask_id == TOKENS


def test_bd3lm_reproduces_the_public_code():
    """The training pass over [x_t, x_0]: the log-probabilities of the subs parameterisation of the noised half."""
    loaded = scorediff.load(PUBLISHED / "tiny_bd3lm")
    io = load_file(str(PUBLISHED / "tiny_bd3lm" / "io.safetensors"))
    with torch.no_grad():
        log_probs = loaded.model(io["x_t"], io["x_0"])
    # the folded adaLN biases round differently from W c + b at every call: 1e-5
    torch.testing.assert_close(log_probs[..., :TOKENS], io["output"][..., :TOKENS].log_softmax(-1), rtol=0, atol=1e-5)
    assert loaded.layout == "BD3-LM" and loaded.model.config.block_size == 4 and loaded.score_fn is None


@pytest.mark.parametrize("name", ["tiny_radd", "tiny_mdlm", "tiny_bd3lm"])
def test_converted_models_are_scored_and_sampled_as_time_independent_absorbing_models(name):
    loaded = scorediff.load(PUBLISHED / name)
    assert loaded.kind == loaded.objective.name == "diffusion" and loaded.objective.mask_count
    assert loaded.graph is loaded.objective.graph and loaded.graph.mask_id == TOKENS
    x = torch.randint(0, TOKENS, (4, 16), generator=torch.Generator().manual_seed(0))
    nats = loaded.objective.nll(loaded.model, x, generator=torch.Generator().manual_seed(1), num_t=4)
    assert torch.isfinite(nats).all() and (nats > 0).all()
    drawn = scorediff.generate(loaded.objective, loaded.model, (2, 16), seed=0, steps=8).tokens
    assert drawn.shape == (2, 16) and (drawn < TOKENS).all()


def copy_of(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(PUBLISHED / name, target)
    return target


@pytest.mark.parametrize(
    "name, removed", [("tiny_radd", "blocks.1.norm2.bias"), ("tiny_mdlm", "backbone.sigma_map.mlp.2.weight")]
)
def test_a_missing_or_extra_weight_is_named(name, removed, tmp_path, capsys):
    folder = copy_of(name, tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    extra = {**state, "blocks.0.lora_A.weight": torch.zeros(2)}
    del state[removed]
    save_file(state, str(folder / "model.safetensors"))
    assert_user_error(capsys, ["info", "--checkpoint", str(folder)], rf"missing '{removed}'")
    save_file(extra, str(folder / "model.safetensors"))
    assert_user_error(capsys, ["info", "--checkpoint", str(folder)], r"unexpected 'blocks.0.lora_A.weight'")


@pytest.mark.parametrize(
    "name, weight",
    [("tiny_radd", "blocks.1.norm2.bias"), ("tiny_mdlm", "backbone.blocks.0.attn_qkv.weight"),
     ("tiny_bd3lm", "backbone.blocks.0.mlp.0.weight")],
)  # fmt: skip
def test_a_weight_of_another_shape_is_one_line(name, weight, tmp_path, capsys):
    folder = copy_of(name, tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    state[weight] = torch.zeros(3, *state[weight].shape[1:])  # a config and weights that disagree
    save_file(state, str(folder / "model.safetensors"))
    assert_user_error(capsys, ["info", "--checkpoint", str(folder)], r"do not match the .* layout: .* shape")


def test_a_weights_only_pickle_loads_the_same_model(tmp_path):
    folder = copy_of("tiny_radd", tmp_path)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    again, original = scorediff.load(folder), scorediff.load(PUBLISHED / "tiny_radd")
    for name, tensor in original.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], tensor)


def test_layouts_scorediff_does_not_convert_are_refused_in_one_line(tmp_path, capsys):
    folder = copy_of("tiny_mdlm", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "time_conditioning": True}))
    assert_user_error(capsys, ["info", "--checkpoint", str(folder)], r"this MDLM is time-conditioned")
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 8}))
    assert_user_error(capsys, ["info", "--checkpoint", str(folder)], r"'gpt2' model of another library")
