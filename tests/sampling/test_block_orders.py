"""Adaptive orders inside the blocks of block diffusion (``sample_blocks`` with ``order``), against positions
worked out by hand on a law whose second block's ranking depends on the first block's tokens."""

import pytest
import torch
from reference import ExactBlockDenoiser

from scorediff import AbsorbingGraph, LogLinearSchedule, SamplingOptions
from scorediff.objectives import BlockDiffusionObjective
from scorediff.sampling.block_diffusion import sample_blocks

NUM_TOKENS = 3
MASK = NUM_TOKENS
BLOCK_SIZE = 2

# Position laws (N = 3) and what each order reads from them:
#   law  probabilities          top-1  top1 - top2  entropy (nats)
#   a    (0.40, 0.30, 0.30)     0.40   0.10         1.089
#   b    (0.50, 0.49, 0.01)     0.50   0.01         0.742
#   c    (0.70, 0.15, 0.15)     0.70   0.55         0.819
#   d    (0.60, 0.39, 0.01)     0.60   0.21         0.720
# x_0 ~ a and x_1 ~ b (block 0); block 1 is (x_2, x_3) ~ (c, d) unless x_1 = 1, when it is (d, c).
LAWS = torch.tensor(
    [[0.40, 0.30, 0.30], [0.50, 0.49, 0.01], [0.70, 0.15, 0.15], [0.60, 0.39, 0.01]], dtype=torch.float64
)


def joint() -> torch.Tensor:
    """The law above over {0, 1, 2}^4, shape (3, 3, 3, 3)."""
    a, b, c, d = LAWS
    second = torch.stack([c[:, None] * d, d[:, None] * c, c[:, None] * d])  # (x_1, x_2, x_3)
    return a[:, None, None, None] * b[:, None, None] * second


def block_commits(order: dict, tokens: torch.Tensor, given: torch.Tensor) -> tuple[list[list[set[int]]], int]:
    """The positions each network call committed, per row (calls that fill nothing in a row left out), and the
    calls ``sample_blocks`` reports."""
    denoiser = ExactBlockDenoiser(joint(), BLOCK_SIZE)
    seen = []  # (block start, the block's tokens) of every call
    exact_block = denoiser.block_log_probs

    def recorded(x_t, cache, label=None, clean=None):
        out = exact_block(x_t, cache, label, clean)
        seen.append((cache.length, x_t.clone()))
        return out

    denoiser.block_log_probs = recorded
    out, calls, _ = sample_blocks(
        denoiser, AbsorbingGraph(NUM_TOKENS), LogLinearSchedule(), tokens, given, steps=1, order=order
    )
    assert calls == len(seen)
    finished = [(start, out[:, start : start + BLOCK_SIZE]) for start in {start for start, _ in seen}]
    states = sorted(seen + finished, key=lambda entry: entry[0])  # stable: each block's calls, then its result
    per_row = [[] for _ in range(len(tokens))]
    for (start, before), (next_start, after) in zip(states, states[1:], strict=False):
        if start != next_start:
            continue
        for row, filled in enumerate((before == MASK) & (after != MASK)):
            if filled.any():
                per_row[row].append({start + int(i) for i in torch.nonzero(filled).flatten()})
    return per_row, calls


ROWS = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]])  # values under given
GIVEN = torch.tensor([[True, True, False, False], [True, True, False, False], [True] + [False] * 3, [False] * 4])


@pytest.mark.parametrize(
    "order, expected",
    [
        # block 0 (a, b), then block 1 as (c, d) after x_1 = 0, (d, c) after x_1 = 1
        ("confidence", [[{2}, {3}], [{3}, {2}], [{1}, {2}, {3}], [{1}, {0}, {2}, {3}]]),  # b 0.50 > a 0.40
        ("margin", [[{2}, {3}], [{3}, {2}], [{1}, {2}, {3}], [{0}, {1}, {2}, {3}]]),  # a 0.10 > b 0.01
        ("entropy", [[{3}, {2}], [{2}, {3}], [{1}, {3}, {2}], [{1}, {0}, {3}, {2}]]),  # d 0.720 < c 0.819
    ],
)
def test_each_order_decodes_a_block_in_the_order_worked_out_by_hand(order, expected):
    """Rows: block 0 given as (0, 0), given as (0, 1), x_0 = 2 given alone, nothing given. One position per
    call, blocks left to right; the greedy x_1 is 0 (b's top token), so the last two rows see (c, d)."""
    settings = {"order": order, "tokens_per_step": 1}
    steps, calls = block_commits(settings, ROWS, GIVEN)
    assert steps == expected
    assert calls == 4  # the fullest row's masks, one per call


@pytest.mark.parametrize(
    "threshold, tokens_per_step, expected, calls",
    [
        (0.55, 1, [[{2, 3}], [{2, 3}], [{1}, {2, 3}], [{1}, {0}, {2, 3}]], 3),  # c and d reach it, a and b not
        (0.45, 1, [[{2, 3}], [{2, 3}], [{1}, {2, 3}], [{1}, {0}, {2, 3}]], 3),  # b reaches it, a not
        (0.65, 1, [[{2}, {3}], [{3}, {2}], [{1}, {2}, {3}], [{1}, {0}, {2}, {3}]], 4),  # only c reaches it
        (1.0, 1, [[{2}, {3}], [{3}, {2}], [{1}, {2}, {3}], [{1}, {0}, {2}, {3}]], 4),  # none: one per call
        (1.0, 2, [[{2, 3}], [{2, 3}], [{1}, {2, 3}], [{0, 1}, {2, 3}]], 2),  # none: two per call
        (0.35, 1, [[{2, 3}], [{2, 3}], [{1}, {2, 3}], [{0, 1}, {2, 3}]], 2),  # all: one call a block
    ],
)
def test_a_threshold_fills_a_block_per_call_as_worked_out_by_hand(threshold, tokens_per_step, expected, calls):
    """Confidence order with a threshold inside each block: every masked position of the block whose top-1
    probability reaches it, and at least ``tokens_per_step`` of the surest."""
    settings = {"order": "confidence", "tokens_per_step": tokens_per_step, "threshold": threshold}
    steps, reported = block_commits(settings, ROWS, GIVEN)
    assert steps == expected and reported == calls


def test_the_block_objective_hands_its_threshold_to_the_decoder():
    """Through ``BlockDiffusionObjective.sample``: a threshold every position reaches fills each block in one
    call (2 calls, not 4), with each position's most probable token."""
    objective = BlockDiffusionObjective(AbsorbingGraph(NUM_TOKENS), LogLinearSchedule(), BLOCK_SIZE)
    denoiser = ExactBlockDenoiser(joint(), BLOCK_SIZE)
    for threshold, calls in ((0.35, 2), (None, 4)):
        options = SamplingOptions(order="confidence", tokens_per_step=1, bf16=False, threshold=threshold)
        drawn = objective.sample(denoiser, (1, 4), options)
        assert drawn.stats.nfe == calls and drawn.tokens.tolist() == [[0, 0, 0, 0]]
