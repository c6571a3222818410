"""Decoding orders against brute force: what each order computes under exact conditionals, how many network
calls ``k`` tokens per step take, and that the random order still draws the data law."""

import itertools
import math

import pytest
import torch
from reference import all_sequences, random_data, total_variation

from scorediff.sampling.orders import decode_in_order

NUM_TOKENS, SEQ_LEN = 3, 4
MASK = NUM_TOKENS


def exact_conditionals(data_probs: torch.Tensor):
    """``x -> log p(x_0^i = y | the unmasked tokens of x)`` by enumeration, float64 (B, L, N + 1), for a law
    ``data_probs`` of shape ``(N,) * L`` (the mask is ``N``)."""
    num_tokens = data_probs.shape[0]
    states = all_sequences(num_tokens, data_probs.dim())  # (M, L)
    weights = data_probs.reshape(-1)

    def log_probs(x: torch.Tensor) -> torch.Tensor:
        consistent = ((x[:, None, :] == states[None]) | (x[:, None, :] == num_tokens)).all(-1)  # (B, M)
        mass = consistent * weights  # (B, M)
        onehot = torch.nn.functional.one_hot(states, num_tokens + 1).double()  # (M, L, N + 1)
        probs = torch.einsum("bm,mlv->blv", mass, onehot) / mass.sum(-1)[:, None, None]
        return probs.log()

    return log_probs


def sureness(probs: torch.Tensor, order: str) -> torch.Tensor:
    """Each position's rank key under ``order``, from its law ``probs`` (L, N), written out apart from the
    library: the top probability, the gap between the two top ones, or minus the entropy (``0 log 0 = 0``)."""
    top = probs.sort(-1, descending=True).values
    if order == "confidence":
        return top[:, 0]
    if order == "margin":
        return top[:, 0] - top[:, 1]
    return torch.where(probs > 0, probs * probs.log(), 0.0).sum(-1)


def reference_path(log_probs, x: torch.Tensor, order: str) -> torch.Tensor:
    """One sequence, one position at a time: the masked position whose law ranks first gets its likeliest token."""
    x = x.clone()
    while (x == MASK).any():
        probs = log_probs(x[None])[0, :, :NUM_TOKENS].exp()
        scores = torch.where(x == MASK, sureness(probs, order), -math.inf)
        position = int(scores.argmax())
        x[position] = probs[position].argmax()
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


# Four independent positions whose laws rank differently under each order (worked out by hand):
#   position  law                  top-1  top1 - top2  entropy (nats)
#   0         (0.40, 0.30, 0.30)   0.40   0.10         1.089
#   1         (0.50, 0.49, 0.01)   0.50   0.01         0.742
#   2         (0.70, 0.15, 0.15)   0.70   0.55         0.819
#   3         (0.60, 0.39, 0.01)   0.60   0.21         0.720
# Independent positions keep their law whatever else is committed, so each order's path is its ranking.
RANKED_LAWS = torch.tensor(
    [[0.40, 0.30, 0.30], [0.50, 0.49, 0.01], [0.70, 0.15, 0.15], [0.60, 0.39, 0.01]], dtype=torch.float64
)
HAND_PATHS = {
    "confidence": [2, 3, 1, 0],  # highest top-1 probability first
    "margin": [2, 3, 0, 1],  # widest gap between the two likeliest tokens first
    "entropy": [3, 1, 2, 0],  # lowest entropy first
}


def product_law(laws: torch.Tensor) -> torch.Tensor:
    """The joint of independent positions with the given laws (L, N), shape ``(N,) * L``."""
    joint = laws[0]
    for law in laws[1:]:
        joint = joint[..., None] * law
    return joint


def commits(log_probs, x: torch.Tensor, **options) -> tuple[list[list[set[int]]], torch.Tensor]:
    """The positions each network call of ``decode_in_order`` committed, per row (calls after a row was full
    are left out), and the decoded tokens."""
    seen = []

    def recorded(state: torch.Tensor) -> torch.Tensor:
        seen.append(state.clone())
        return log_probs(state)

    out, calls = decode_in_order(recorded, x, MASK, NUM_TOKENS, **options)
    assert calls == len(seen)
    states = [*seen, out]
    per_row = []
    for row in range(x.shape[0]):
        filled = [(before[row] == MASK) & (after[row] != MASK) for before, after in itertools.pairwise(states)]
        steps = [set(torch.nonzero(step).flatten().tolist()) for step in filled]
        per_row.append([step for step in steps if step])
    return per_row, out


def test_the_hand_built_laws_are_what_the_brute_force_conditionals_see():
    """The reference the tests below rest on: from all masks, and with any position committed, the enumerated
    conditionals of ``product_law`` are the laws in the table."""
    log_probs = exact_conditionals(product_law(RANKED_LAWS))
    x = torch.tensor([[MASK] * 4, [1, MASK, MASK, 0]])
    probs = log_probs(x)[..., :NUM_TOKENS].exp()
    torch.testing.assert_close(probs[0], RANKED_LAWS, rtol=0, atol=1e-12)  # float64 sums of 81 terms
    torch.testing.assert_close(probs[1, 1:3], RANKED_LAWS[1:3], rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", ["confidence", "margin", "entropy"])
def test_each_order_commits_the_positions_worked_out_by_hand(order):
    """One position per call, in the order the table above gives, each with its most probable token; a row
    with two positions already known commits the remaining two in the same relative order."""
    log_probs = exact_conditionals(product_law(RANKED_LAWS))
    x = torch.tensor([[MASK] * 4, [MASK, 1, MASK, 0]])
    steps, out = commits(log_probs, x, order=order)
    assert steps[0] == [{p} for p in HAND_PATHS[order]]
    assert steps[1] == [{p} for p in HAND_PATHS[order] if p in (0, 2)]
    assert out.tolist() == [[0, 0, 0, 0], [0, 1, 0, 0]]


def test_the_confidence_order_asks_the_denoiser_again_after_each_commitment():
    """A dependent law on three positions: x_0 ~ (0.8, 0.1, 0.1); x_1 copies x_0 with probability 0.96 (else
    0.02 on each other token), so its marginal is (0.772, 0.114, 0.114); x_2 ~ (0.78, 0.11, 0.11) on its own.
    From all masks the top-1 probabilities rank 0 (0.80), 2 (0.78), 1 (0.772); once x_0 = 0 is committed,
    x_1's conditional top-1 is 0.96, so the path is 0, 1, 2 (a ranking fixed at the start would give 0, 2, 1).
    With a threshold of 0.79 the same three calls fill one position each: only x_0 reaches it at first, then
    only x_1, and x_2 never does (it is filled as the call's one token)."""
    copy = torch.full((NUM_TOKENS, NUM_TOKENS), 0.02, dtype=torch.float64).fill_diagonal_(0.96)
    first = torch.tensor([0.8, 0.1, 0.1], dtype=torch.float64)
    third = torch.tensor([0.78, 0.11, 0.11], dtype=torch.float64)
    joint = first[:, None, None] * copy[:, :, None] * third  # (N, N, N)
    log_probs = exact_conditionals(joint)
    marginal = log_probs(torch.full((1, 3), MASK))[0, :, :NUM_TOKENS].exp()
    torch.testing.assert_close(marginal[1], torch.tensor([0.772, 0.114, 0.114], dtype=torch.float64))
    for threshold in (None, 0.79):
        steps, out = commits(log_probs, torch.full((1, 3), MASK), order="confidence", threshold=threshold)
        assert steps[0] == [{0}, {1}, {2}] and out.tolist() == [[0, 0, 0]]


@pytest.mark.parametrize(
    "threshold, tokens_per_step, expected",
    [
        (0.55, 1, [{2, 3}, {1}, {0}]),  # 0.70 and 0.60 reach it; then the best one of the rest per call
        (0.45, 1, [{1, 2, 3}, {0}]),  # every top-1 but 0.40 reaches it
        (0.35, 1, [{0, 1, 2, 3}]),  # every position is sure enough: one call
        (0.95, 1, [{2}, {3}, {1}, {0}]),  # none reaches it: the plain confidence order, one per call
        (1.0, 2, [{2, 3}, {0, 1}]),  # none reaches it: the two surest per call
        (0.65, 3, [{1, 2, 3}, {0}]),  # only 0.70 reaches it, and three per call are filled anyway
    ],
)
def test_a_threshold_fills_every_position_at_least_that_sure_and_at_least_k(threshold, tokens_per_step, expected):
    """The positions each call fills under a confidence threshold, worked out from the table's top-1
    probabilities (fixed, the positions being independent)."""
    log_probs = exact_conditionals(product_law(RANKED_LAWS))
    x = torch.full((1, 4), MASK)
    steps, out = commits(log_probs, x, order="confidence", threshold=threshold, tokens_per_step=tokens_per_step)
    assert steps[0] == expected and out.tolist() == [[0, 0, 0, 0]]


def test_a_threshold_acts_row_by_row():
    """Rows with different masks fill different positions in the same call: a row with 1 and 2 given fills 3
    (0.60 >= 0.55) then 0; the full row fills 2 and 3, then 1, then 0."""
    log_probs = exact_conditionals(product_law(RANKED_LAWS))
    x = torch.tensor([[MASK] * 4, [MASK, 2, 1, MASK]])
    steps, _ = commits(log_probs, x, order="confidence", threshold=0.55)
    assert steps == [[{2, 3}, {1}, {0}], [{3}, {0}]]
