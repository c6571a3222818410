"""Left-to-right sampling: temperature and nucleus filtering, cached and uncached generation."""

import pytest
import torch

from scorediff.model import CausalTransformer, ModelConfig
from scorediff.sampling.autoregressive import sample_autoregressive
from scorediff.sampling.filters import temper


def test_temper_against_brute_force():
    probs = torch.tensor([0.05, 0.4, 0.1, 0.3, 0.15], dtype=torch.float64)
    log_probs = probs.log()
    torch.testing.assert_close(temper(log_probs), probs)
    # top_p = 0.7: the two most likely (0.4 + 0.3 = 0.7) reach it; top_p = 0.71 needs the third (0.15)
    torch.testing.assert_close(temper(log_probs, top_p=0.7), torch.tensor([0, 4 / 7, 0, 3 / 7, 0.0]).double())
    expected = torch.tensor([0, 0.4, 0, 0.3, 0.15], dtype=torch.float64) / 0.85
    torch.testing.assert_close(temper(log_probs, top_p=0.71), expected)
    # temperature T: p^(1/T) renormalised; T -> 0 tends to the argmax
    tempered = probs**2 / (probs**2).sum()
    torch.testing.assert_close(temper(log_probs, temperature=0.5), tempered)
    assert temper(log_probs, temperature=1e-3).argmax() == 1 and temper(log_probs, temperature=1e-3).max() > 0.999
    assert temper(torch.tensor([0.0, -torch.inf]), top_p=0.5).tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": 0.0},
        {"temperature": -1.0},
        {"temperature": float("inf")},
        {"temperature": float("nan")},
        {"top_p": 0.0},
        {"top_p": 1.5},
    ],
)
def test_temper_refuses_nonsense(bad):
    with pytest.raises(ValueError, match="temperature must be finite and > 0|top_p must be in"):
        temper(torch.zeros(3), **bad)


def tiny_model() -> CausalTransformer:
    torch.manual_seed(0)
    model = CausalTransformer(ModelConfig(vocab_size=6, hidden_size=32, n_blocks=2, n_heads=2, seq_len=24))
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    return model.eval()


@pytest.mark.parametrize("options", [{}, {"temperature": 0.7, "top_p": 0.9}])
def test_cache_and_no_cache_draw_identical_tokens(options):
    model = tiny_model()
    prompt = torch.tensor([[1, 2, 3], [4, 0, 1]])

    def draw(use_cache):
        generator = torch.Generator().manual_seed(7)
        return sample_autoregressive(model, (2, 24), prompt=prompt, use_cache=use_cache, generator=generator, **options)

    cached, uncached = draw(True), draw(False)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[:, :3], prompt) and cached.shape == (2, 24)
    assert (cached < 5).all()  # BOS (5) is never drawn
    assert len(set(map(tuple, cached[:, 3:].tolist()))) == 2  # the draw is not degenerate


def test_samples_follow_the_model_distribution():
    """The first token's frequencies over many draws match the model's own first conditional."""
    model = tiny_model()
    with torch.no_grad():
        first = model(torch.full((1, 1), model.bos_id))[0, -1].exp().double()
    tokens = sample_autoregressive(model, (20000, 1), generator=torch.Generator().manual_seed(3))
    frequencies = torch.bincount(tokens[:, 0], minlength=6).double() / 20000
    # binomial standard error of each frequency is at most 0.0035 at n = 20000; 5 of them
    assert (frequencies - first).abs().max() < 0.015


@pytest.mark.parametrize("use_cache", [True, False])
def test_fixed_tokens_are_written_in_and_conditioned_on_from_their_position(use_cache):
    """Greedy decoding with tokens fixed past the prompt equals the path built by hand: at each free position the
    argmax of a fresh forward over everything before it, fixed tokens included; fixed positions keep their token."""
    model = tiny_model()
    tokens = torch.tensor([[1, 2, 0, 0, 3, 0, 0, 4, 0], [0, 0, 0, 2, 2, 0, 1, 0, 0]])
    mask = torch.tensor([[1, 1, 0, 0, 1, 0, 0, 1, 0], [0, 0, 0, 1, 1, 0, 1, 0, 0]], dtype=torch.bool)
    drawn = sample_autoregressive(
        model, (2, 9), prompt=tokens[:, :0], fixed=(tokens, mask), top_p=1e-9, use_cache=use_cache
    )
    expected = torch.full((2, 1), model.bos_id)
    with torch.no_grad():
        for at in range(9):
            best = model(expected)[:, -1].argmax(-1)
            expected = torch.cat([expected, torch.where(mask[:, at], tokens[:, at], best)[:, None]], dim=1)
    assert torch.equal(drawn, expected[:, 1:])
    assert torch.equal(drawn[mask], tokens[mask])
    with pytest.raises(ValueError, match="fixed tokens and mask must be"):
        sample_autoregressive(model, (2, 8), fixed=(tokens, mask))
