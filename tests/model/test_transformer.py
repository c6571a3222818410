"""The DiT against the original SEDD implementation's outputs, and its contracts as a ScoreFn."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import scorediff
from scorediff import AbsorbingGraph, LogLinearSchedule, UniformGraph, elbo, sample
from scorediff.converters import read_published
from scorediff.model import LlamaTransformer, ModelConfig, SEDDTransformer

REFERENCE = Path(__file__).parents[1] / "fixtures" / "sedd_reference"
TOLERANCE = {"tiny_absorb": 1e-5, "tiny_uniform": 1e-5, "tiny_absorb_strong": 1e-4, "tiny_uniform_strong": 1e-4}


@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_original_checkpoints_reproduce_their_outputs(name):
    loaded = scorediff.load(REFERENCE / name)
    io = load_file(str(REFERENCE / name / "io.safetensors"))
    with torch.no_grad():
        log_score = loaded.score_fn(io["x_t"], io["sigma"])
    torch.testing.assert_close(log_score, io["log_score"], rtol=0, atol=TOLERANCE[name])
    readme = json.loads((REFERENCE / "README.json").read_text())
    assert loaded.model.num_parameters() == readme["model_dirs"][name.removesuffix("_strong")]["n_parameters"]
    expected_graph = AbsorbingGraph if "absorb" in name else UniformGraph
    assert isinstance(loaded.graph, expected_graph) and loaded.graph.num_tokens == 50
    assert loaded.tokenizer is None and not loaded.model.training


@pytest.mark.parametrize("name", ["tiny_absorb_strong", "tiny_uniform_strong"])
def test_intermediate_activations_match(name):
    _, model, _ = read_published(REFERENCE / name, json.loads((REFERENCE / name / "config.json").read_text()))
    io = load_file(str(REFERENCE / name / "io.safetensors"))
    expected = load_file(str(REFERENCE / name / "intermediates.safetensors"))
    seen = {}
    model.vocab_embed.register_forward_hook(lambda m, i, o: seen.__setitem__("vocab_embed_out", o))
    model.sigma_map.register_forward_hook(lambda m, i, o: seen.__setitem__("sigma_map_out_pre_silu", o))
    for index, block in enumerate(model.blocks):
        block.register_forward_hook(lambda m, i, o, index=index: seen.__setitem__(f"block{index}_out", o))
    model.output_layer.register_forward_hook(lambda m, i, o: seen.__setitem__("output_layer_out", o))
    with torch.no_grad():
        model(io["x_t"], io["sigma"])
    for key, value in seen.items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-4, msg=key)


#: The llama twin with grouped-query attention and tied embeddings.
ARCHS = {"dit": {}, "llama": {"arch": "llama", "n_heads": 4, "n_kv_heads": 2, "tie_embeddings": True}}


def small_model(arch: str = "dit", **overrides) -> tuple[SEDDTransformer, AbsorbingGraph]:
    graph = AbsorbingGraph(11)
    config = dict(vocab_size=12, hidden_size=32, cond_dim=16, n_blocks=2, n_heads=2, seq_len=16, **overrides)
    config.update(ARCHS[arch])
    torch.manual_seed(0)
    network = SEDDTransformer if arch == "dit" else LlamaTransformer
    model = network.from_config(config, graph.mask_id)  # a dict, as in a checkpoint's config.json
    assert model.config == ModelConfig(**config)
    for parameter in model.parameters():  # leave adaLN-zero's all-zero start so outputs depend on the input
        torch.nn.init.normal_(parameter, std=0.3)
    return model.eval(), graph


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_output_is_a_score_fn(arch):
    model, graph = small_model(arch)
    x_t = torch.randint(0, 12, (3, 16), generator=torch.Generator().manual_seed(0))
    log_score = model(x_t, torch.tensor([0.1, 1.0, 5.0], dtype=torch.float64))
    assert log_score.shape == (3, 16, 12) and log_score.dtype == torch.float32
    assert (log_score.gather(-1, x_t[..., None]) == 0).all()
    tokens = sample(model, graph, LogLinearSchedule(), (2, 16), 4, generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (2, 16) and (tokens < 11).all()
    bound = elbo(model, graph, LogLinearSchedule(), tokens, num_t=2)
    assert bound.shape == (2,) and torch.isfinite(bound).all() and (bound > 0).all()


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_radd_parameterisation_has_no_time_input(arch):
    model, graph = small_model(arch, time_conditioning=False)
    x_t = torch.full((2, 16), graph.mask_id)
    x_t[:, :5] = torch.arange(5)
    low, high = (model(x_t, torch.full((2,), s)) for s in (0.2, 3.0))
    esigm1 = torch.expm1(torch.tensor([0.2, 3.0]))
    # the same distribution over clean tokens at every noise level, scaled by 1 / (e^sigma_bar - 1)
    probs_low = low[:, 5:, :11].exp() * esigm1[0]
    probs_high = high[:, 5:, :11].exp() * esigm1[1]
    torch.testing.assert_close(probs_low, probs_high)
    torch.testing.assert_close(probs_low.sum(-1), torch.ones(2, 11))
    assert not any("sigma_map" in name for name, _ in model.named_parameters())


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_rotary_makes_positions_matter(arch):
    model, _ = small_model(arch)
    x_t = torch.randint(0, 11, (1, 16), generator=torch.Generator().manual_seed(1))
    rolled = x_t.roll(3, dims=1)
    sigma = torch.tensor([1.0])
    a, b = model(x_t, sigma), model(rolled, sigma).roll(-3, dims=1)
    assert (a - b).abs().max() > 1e-3  # a permutation-equivariant model would give equal outputs


def test_bad_configs_say_what_is_wrong():
    with pytest.raises(ValueError, match="hidden_size must be divisible by n_heads"):
        SEDDTransformer(ModelConfig(vocab_size=5, hidden_size=30, n_heads=4, scale_by_sigma=False))
    with pytest.raises(ValueError, match="need the absorbing graph"):
        SEDDTransformer(ModelConfig(vocab_size=5, hidden_size=32, n_heads=4))
