"""Decoding orders against brute force: what each order computes under exact conditionals, how many network
calls ``k`` tokens per step take, and that the random order still draws the data law."""

import math

import pytest
import torch
from reference import all_sequences, random_data, total_variation

from scorediff.sampling.orders import decode_in_order, order_scores

NUM_TOKENS, SEQ_LEN = 3, 4
MASK = NUM_TOKENS


def exact_conditionals(data_probs: torch.Tensor):
    """``x -> log p(x_0^i = y | the unmasked tokens of x)`` by enumeration, float64 (B, L, N + 1)."""
    states = all_sequences(NUM_TOKENS, SEQ_LEN)  # (M, L)
    weights = data_probs.reshape(-1)

    def log_probs(x: torch.Tensor) -> torch.Tensor:
        consistent = ((x[:, None, :] == states[None]) | (x[:, None, :] == MASK)).all(-1)  # (B, M)
        mass = consistent * weights  # (B, M)
        onehot = torch.nn.functional.one_hot(states, NUM_TOKENS + 1).double()  # (M, L, N + 1)
        probs = torch.einsum("bm,mlv->blv", mass, onehot) / mass.sum(-1)[:, None, None]
        return probs.log()

    return log_probs


def reference_path(log_probs, x: torch.Tensor, order: str) -> torch.Tensor:
    """One sequence, one position at a time: the masked position whose greedy token scores highest."""
    x = x.clone()
    while (x == MASK).any():
        log_p = log_probs(x[None])[0, :, :NUM_TOKENS]
        chosen = log_p.argmax(-1)
        scores = order_scores(log_p[None], chosen[None], order, None)[0]
        scores = torch.where(x == MASK, scores, -math.inf)
        position = int(scores.argmax())
        x[position] = chosen[position]
    return x


@pytest.mark.parametrize("order", ["confidence", "margin", "entropy"])
def test_greedy_orders_follow_the_path_of_surest_single_commitments(order):
    """With greedy tokens and one token per call, each order commits at every step the masked position it
    scores highest under the exact conditionals, checked step by step from many starting masks."""
    data = random_data(NUM_TOKENS, SEQ_LEN, seed=3, concentration=0.3)
    log_probs = exact_conditionals(data)
    starts = all_sequences(NUM_TOKENS + 1, SEQ_LEN)  # every mix of tokens and masks
    starts = starts[(starts == MASK).any(-1)]
    decoded, calls = decode_in_order(log_probs, starts, MASK, NUM_TOKENS, order=order)
    expected = torch.stack([reference_path(log_probs, row, order) for row in starts])
    assert torch.equal(decoded, expected)
    assert calls == SEQ_LEN  # the row with every position masked needs L calls
    assert torch.equal(decoded[starts != MASK], starts[starts != MASK])  # committed tokens never change


def test_confidence_order_commits_the_most_probable_token_first():
    """At the first call from all masks, the committed position is the one whose marginal's top probability
    is largest, and it gets that token."""
    data = random_data(NUM_TOKENS, SEQ_LEN, seed=5, concentration=0.3)
    marginals = torch.stack([data.sum(dim=[d for d in range(SEQ_LEN) if d != i]) for i in range(SEQ_LEN)])  # (L, N)
    best = int(marginals.max(-1).values.argmax())
    seen = []

    def log_probs(x):
        seen.append(x.clone())
        return exact_conditionals(data)(x)

    decode_in_order(log_probs, torch.full((1, SEQ_LEN), MASK), MASK, NUM_TOKENS, order="confidence")
    second = seen[1][0]
    assert (second != MASK).sum() == 1 and int(second[best]) == int(marginals[best].argmax())


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_k_tokens_per_step_take_ceil_n_over_k_calls(k):
    data = random_data(NUM_TOKENS, SEQ_LEN, seed=1)
    base = exact_conditionals(data)
    calls = {"n": 0}

    def counted(x):
        calls["n"] += 1
        return base(x)

    x = torch.full((6, SEQ_LEN), MASK)
    given = torch.zeros_like(x, dtype=torch.bool)
    given[:3, 0] = True  # three rows with one position given (held at the mask: never filled)
    out, reported = decode_in_order(counted, x, MASK, NUM_TOKENS, order="margin", tokens_per_step=k, given=given)
    assert reported == calls["n"] == math.ceil(SEQ_LEN / k)
    assert (out[given] == MASK).all() and (out[~given] < NUM_TOKENS).all()


def test_a_confidence_threshold_commits_every_sure_position_at_once():
    """A distribution that puts all its mass on one sequence: every position is sure, so one call fills all."""
    data = torch.full((NUM_TOKENS,) * SEQ_LEN, 1e-12, dtype=torch.float64)
    data[1, 2, 0, 1] = 1.0
    data /= data.sum()
    x = torch.full((2, SEQ_LEN), MASK)
    out, calls = decode_in_order(exact_conditionals(data), x, MASK, NUM_TOKENS, order="confidence", threshold=0.9)
    assert calls == 1 and out.tolist() == [[1, 2, 0, 1]] * 2
    with pytest.raises(ValueError, match="threshold"):
        decode_in_order(exact_conditionals(data), x, MASK, NUM_TOKENS, order="margin", threshold=0.9)


def test_the_random_order_draws_the_data_law():
    """One uniformly chosen position per call with its token drawn from the exact conditional is the
    first-hitting sampler: the samples' total variation to the data sits at the noise floor of as many exact
    draws (the floor's spread from 20 reference draws bounds it)."""
    data = random_data(NUM_TOKENS, SEQ_LEN, seed=2)
    draws = 20_000
    generator = torch.Generator().manual_seed(0)
    x = torch.full((draws, SEQ_LEN), MASK)
    out, _ = decode_in_order(
        exact_conditionals(data), x, MASK, NUM_TOKENS, order="random", greedy=False, generator=generator
    )
    floors = [
        total_variation(all_sequences(NUM_TOKENS, SEQ_LEN)[torch.multinomial(data.reshape(-1), draws, True)], data, 3)
        for _ in range(20)
    ]
    assert total_variation(out, data, NUM_TOKENS) < max(floors) * 1.1, (total_variation(out, data, 3), floors)


def test_the_random_order_draws_the_conditional_law_given_a_position():
    """With position 0 given, the other positions follow ``p(x_1:3 | x_0)``."""
    data = random_data(NUM_TOKENS, SEQ_LEN, seed=4)
    draws = 20_000
    x = torch.full((draws, SEQ_LEN), MASK)
    x[:, 0] = 2
    given = torch.zeros_like(x, dtype=torch.bool)
    given[:, 0] = True
    generator = torch.Generator().manual_seed(1)
    out, _ = decode_in_order(
        exact_conditionals(data), x, MASK, NUM_TOKENS, order="random", greedy=False, given=given, generator=generator
    )
    assert (out[:, 0] == 2).all()
    conditional = data[2] / data[2].sum()  # (N, N, N)
    floors = [
        total_variation(all_sequences(NUM_TOKENS, 3)[torch.multinomial(conditional.reshape(-1), draws, True)],
                        conditional, 3)
        for _ in range(20)
    ]  # fmt: skip
    assert total_variation(out[:, 1:], conditional, NUM_TOKENS) < max(floors) * 1.1


def test_remasking_refills_the_least_sure_commitment_seeing_every_other_token():
    """One round of one token: the position whose token was least probable when committed (on the greedy
    confidence path) is masked again and refilled with its most probable token given all the others."""
    data = random_data(NUM_TOKENS, SEQ_LEN, seed=7)
    log_probs = exact_conditionals(data)
    starts = all_sequences(NUM_TOKENS + 1, SEQ_LEN)  # every mix of tokens and masks
    starts = starts[(starts == MASK).any(-1)]
    out, calls = decode_in_order(log_probs, starts, MASK, NUM_TOKENS, order="confidence", remask_rounds=1)
    assert calls == SEQ_LEN + 1
    plain, _ = decode_in_order(log_probs, starts, MASK, NUM_TOKENS, order="confidence")
    assert (out != plain).any(-1).sum() >= 1  # this law has a start where refilling changes the answer
    for start, row in zip(starts, out, strict=True):
        path, sureness = start.clone(), torch.full((SEQ_LEN,), math.inf, dtype=torch.float64)
        while (path == MASK).any():  # the greedy confidence path, each commitment's probability kept
            log_p = log_probs(path[None])[0, :, :NUM_TOKENS]
            best = log_p.max(-1)
            position = int(torch.where(path == MASK, best.values, -math.inf).argmax())
            path[position], sureness[position] = best.indices[position], best.values[position].exp()
        weakest = int(sureness.argmin())
        path[weakest] = MASK
        path[weakest] = log_probs(path[None])[0, weakest, :NUM_TOKENS].argmax()
        assert torch.equal(row, path)
        assert torch.equal(row[start != MASK], start[start != MASK])  # given tokens are never remasked
