"""The denoiser a time-conditioned absorbing model decodes with under ``--order``: ``p_theta(x_0^i | x_t)`` read
from its score (``DiffusionObjective.denoiser``), against Bayes' rule over every clean sequence in float64."""

import math

import torch
from reference import all_sequences, random_data

from scorediff import AbsorbingGraph, ExactScore, LogLinearSchedule, SamplingOptions
from scorediff.objectives import DiffusionObjective
from scorediff.sampling.orders import decode_in_order

NUM_TOKENS, SEQ_LEN = 3, 3
MASK = NUM_TOKENS


def posterior(data: torch.Tensor, x_t: torch.Tensor, sigma_bar: float) -> torch.Tensor:
    """``p(x_0^i = y | x_t)`` by Bayes' rule, float64 (L, N): every clean sequence weighed by its probability
    times the absorbing kernel ``p(x_t | x_0) = prod_i (e^{-sigma_bar} if x_t^i = x_0^i, 1 - e^{-sigma_bar} if
    x_t^i is the mask, else 0)``."""
    states = all_sequences(NUM_TOKENS, SEQ_LEN)  # (M, L)
    stay = math.exp(-sigma_bar)
    kernel = torch.where(x_t == MASK, 1 - stay, torch.where(states == x_t, stay, 0.0)).prod(-1)  # (M,)
    weight = data.reshape(-1) * kernel
    onehot = torch.nn.functional.one_hot(states, NUM_TOKENS).double()  # (M, L, N)
    return torch.einsum("m,mln->ln", weight, onehot) / weight.sum()


class RecordedScore:
    """The exact score, remembering the noise level each row was asked at; ``config.seq_len`` as a model has."""

    def __init__(self, data: torch.Tensor):
        self.exact = ExactScore(AbsorbingGraph(NUM_TOKENS), data)
        self.config = type("Config", (), {"seq_len": SEQ_LEN})()
        self.asked = []

    def __call__(self, x_t: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
        self.asked.append(sigma_bar.clone())
        return self.exact(x_t, sigma_bar)


def test_the_denoiser_read_from_an_exact_score_is_the_exact_posterior():
    """Every mix of tokens and masks: at each masked position the denoiser's law equals Bayes' rule at the
    noise level it asked the score at, ``-log(1 - masked fraction)`` (all masks: ``sigma_bar(1) = -log 1e-3``).
    The tolerance is float64 rounding through ``matrix_exp`` and the logs (errors near 1e-14 seen)."""
    data = random_data(NUM_TOKENS, SEQ_LEN, seed=11, concentration=0.5)
    objective = DiffusionObjective(AbsorbingGraph(NUM_TOKENS), LogLinearSchedule())
    score = RecordedScore(data)
    states = all_sequences(NUM_TOKENS + 1, SEQ_LEN)
    states = states[(states == MASK).any(-1)]  # (37, L)
    log_p = objective.denoiser(score)(states)
    assert log_p.shape == (len(states), SEQ_LEN, NUM_TOKENS)
    fraction = (states == MASK).double().mean(-1)
    expected_sigma = torch.where(fraction < 1, -torch.log1p(-fraction), -math.log(1e-3))
    torch.testing.assert_close(score.asked[0], expected_sigma, rtol=1e-12, atol=0)
    for x_t, row, sigma_bar in zip(states, log_p.exp(), expected_sigma, strict=True):
        masked = x_t == MASK
        reference = posterior(data, x_t, float(sigma_bar))
        torch.testing.assert_close(row[masked], reference[masked], rtol=0, atol=1e-10)


def test_the_posterior_of_the_absorbing_chain_does_not_depend_on_the_noise_level():
    """Why reading the score at the masked fraction's level is safe: the score at any ``sigma_bar`` gives the
    same law once shifted by ``log(e^sigma_bar - 1)`` (RADD, Ou et al. 2024, Theorem 1), here unnormalised:
    ``s_y (e^sigma_bar - 1)`` at a mask sums to 1 and equals Bayes' rule."""
    data = random_data(NUM_TOKENS, SEQ_LEN, seed=12, concentration=0.5)
    exact = ExactScore(AbsorbingGraph(NUM_TOKENS), data)
    x_t = torch.tensor([[MASK, 1, MASK]])
    for sigma_bar in (0.05, 0.7, 4.0):
        probs = exact(x_t, torch.tensor([sigma_bar], dtype=torch.float64))[0, :, :NUM_TOKENS].exp() * math.expm1(
            sigma_bar
        )
        reference = posterior(data, x_t[0], sigma_bar)
        torch.testing.assert_close(probs[[0, 2]], reference[[0, 2]], rtol=1e-10, atol=0)


def test_an_exact_score_decodes_in_order_as_the_exact_posterior_does():
    """Through ``DiffusionObjective.sample`` with the confidence order (one and two tokens per call): the same
    tokens as ``decode_in_order`` on Bayes' rule, from every mix of given tokens and masks."""
    data = random_data(NUM_TOKENS, SEQ_LEN, seed=13, concentration=0.3)
    objective = DiffusionObjective(AbsorbingGraph(NUM_TOKENS), LogLinearSchedule())
    tokens = all_sequences(NUM_TOKENS + 1, SEQ_LEN)
    given = tokens != MASK

    def bayes(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([posterior(data, row, 1.0) for row in x]).log()  # any level: the same law

    for tokens_per_step in (1, 2):
        options = SamplingOptions(order="confidence", tokens_per_step=tokens_per_step, bf16=False)
        out = objective.sample(RecordedScore(data), tuple(tokens.shape), options, condition=(tokens, given)).tokens
        expected, _ = decode_in_order(bayes, tokens, MASK, NUM_TOKENS, tokens_per_step=tokens_per_step)
        assert torch.equal(out, expected)
