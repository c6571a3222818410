"""Cached steps are exact, the first-hitting sampler has no discretisation error, tempering keeps what it should,
and generation past the context fills every window in order."""

import pytest
import torch
from reference import random_data, total_variation

from scorediff import AbsorbingGraph, ExactScore, LogLinearSchedule, SamplingOptions, sample
from scorediff.model import ModelConfig
from scorediff.objectives import DiffusionObjective
from scorediff.sampling import TimeIndependentScore, generate_in_blocks, temper_moves

NUM_SAMPLES = 80_000


def time_independent_model(seq_len: int, num_tokens: int = 5):
    graph = AbsorbingGraph(num_tokens)
    objective = DiffusionObjective(graph, LogLinearSchedule(), time_conditioning=False)
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=32, cond_dim=16, n_blocks=2, n_heads=2, seq_len=seq_len, time_conditioning=False)
    model = objective.build_model(config)
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return objective, model.double().eval()  # float64: a row's output does not depend on which rows share its call


@pytest.mark.parametrize("predictor", ["analytic", "euler"])
def test_cached_steps_draw_the_same_tokens_with_fewer_calls(predictor):
    objective, model = time_independent_model(seq_len=16)

    def run(cache, batch_size=4, steps=256):
        score = TimeIndependentScore(model.clean_log_probs, cache=cache)
        generator = torch.Generator().manual_seed(3)
        x = sample(score, objective.graph, objective.schedule, (batch_size, 16), steps, predictor, generator=generator)
        return x, score

    (cached, fast), (plain, slow) = run(True), run(False)
    assert torch.equal(cached, plain)
    assert slow.nfe == 257 and slow.rows_evaluated == 4 * 257  # every step and the final denoising step
    # a sequence changes only when a mask is filled: at most 16 + 1 evaluations of each of the 4 sequences
    assert fast.rows_evaluated <= 4 * 17 and fast.nfe <= 4 * 16 + 1
    one, single = run(True, batch_size=1, steps=1024)
    assert single.nfe <= 17  # one sequence, 1,024 steps: at most 17 network calls


def test_sequences_with_no_mask_left_are_not_recomputed():
    objective, model = time_independent_model(seq_len=16)

    def run(cache):
        score = TimeIndependentScore(model.clean_log_probs, cache=cache, mask_id=objective.graph.mask_id)
        generator = torch.Generator().manual_seed(4)
        x = sample(score, objective.graph, objective.schedule, (64, 16), 1, "analytic", generator=generator)
        return x, score

    (cached, fast), (plain, slow) = run(True), run(False)
    assert torch.equal(cached, plain) and not (cached == objective.graph.mask_id).any()
    # one step from t = 1 to 1e-5 fills all but about 1e-5 of the positions: the denoising call has rows to skip
    assert slow.rows_evaluated == 2 * 64 and fast.rows_evaluated < 64 + 4


def test_first_hitting_reproduces_the_data_law():
    graph, schedule = AbsorbingGraph(3), LogLinearSchedule()
    data = random_data(3, 3, seed=0)
    exact = ExactScore(graph, data)
    generator = torch.Generator().manual_seed(0)
    x, stats = sample(
        exact, graph, schedule, (NUM_SAMPLES, 3), 1, "first_hitting", generator=generator, return_stats=True
    )
    assert stats.nfe == 3 and stats.steps == 3  # one call per position, whatever `steps` says
    reference = torch.multinomial(data.reshape(-1), NUM_SAMPLES, True, generator=generator)
    digits = torch.stack([reference // 9, reference // 3 % 3, reference % 3], -1)
    floor = total_variation(digits, data, 3)  # exact draws from the data itself
    assert total_variation(x, data, 3) <= floor + 0.005  # 80,000 draws: the floor is about 0.007
    # the same test sees the discretisation error of a coarse grid
    coarse = sample(exact, graph, schedule, (NUM_SAMPLES, 3), 1, "analytic", generator=generator)
    assert total_variation(coarse, data, 3) > floor + 0.03


def test_first_hitting_conditions_exactly():
    graph, schedule = AbsorbingGraph(3), LogLinearSchedule()
    data = random_data(3, 4, seed=3)
    given = torch.tensor([False, True, False, True])
    tokens = torch.tensor([0, 2, 0, 1]).expand(NUM_SAMPLES, 4)
    generator = torch.Generator().manual_seed(1)
    x = sample(
        ExactScore(graph, data),
        graph,
        schedule,
        (NUM_SAMPLES, 4),
        1,
        "first_hitting",
        condition=(tokens, given.expand(NUM_SAMPLES, 4)),
        generator=generator,
    )
    assert (x[:, given] == tokens[:, given]).all()
    conditional = data[:, 2, :, 1] / data[:, 2, :, 1].sum()
    assert total_variation(x[:, ~given], conditional, 3) <= 0.015


def test_temper_moves_keeps_the_chance_of_staying():
    probs = torch.tensor([[[0.5, 0.1, 0.3, 0.1], [0.0, 0.2, 0.0, 0.8]]], dtype=torch.float64)
    x = torch.tensor([[0, 3]])
    assert torch.equal(temper_moves(probs, x), probs)
    sharp = temper_moves(probs, x, temperature=0.5)
    torch.testing.assert_close(sharp.gather(-1, x[..., None]), probs.gather(-1, x[..., None]))
    torch.testing.assert_close(sharp.sum(-1), probs.sum(-1))
    torch.testing.assert_close(sharp[0, 0, 1:], 0.5 * torch.tensor([1, 9, 1], dtype=torch.float64) / 11)
    nucleus = temper_moves(probs, x, top_p=0.5)  # of the moves 0.1 / 0.3 / 0.1 only 0.3 is in the top half
    torch.testing.assert_close(nucleus[0, 0], torch.tensor([0.5, 0, 0.5, 0], dtype=torch.float64))
    torch.testing.assert_close(nucleus[0, 1], probs[0, 1])  # a single possible move stays as it was


def test_blocks_fill_windows_in_order_with_the_past_given():
    seen = []

    def fill(tokens, given):
        seen.append((tokens.shape[1], given[0].tolist()))
        return torch.where(given, tokens, len(seen))  # each window writes its own number

    out = generate_in_blocks(fill, torch.zeros(2, 11, dtype=torch.int64), torch.zeros(2, 11, dtype=torch.bool), 6, 2)
    assert out[0].tolist() == [1, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4]
    assert [length for length, _ in seen] == [6, 6, 6, 6]
    assert seen[0][1] == [False] * 6 and all(g == [True] * 4 + [False] * 2 for _, g in seen[1:3])
    assert seen[3][1] == [True] * 5 + [False]  # the last window ends at the length


def test_diffusion_past_the_context_keeps_a_prompt_and_fills_everything():
    objective, model = time_independent_model(seq_len=8)
    tokens = torch.zeros(3, 30, dtype=torch.int64)
    tokens[:, :5] = torch.tensor([1, 2, 3, 4, 0])
    given = torch.zeros(3, 30, dtype=torch.bool)
    given[:, :5] = True
    drawn = objective.sample(
        model, (3, 30), SamplingOptions(steps=8, block=4), condition=(tokens, given),
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    x, stats = drawn.tokens, drawn.stats
    assert x.shape == (3, 30) and torch.equal(x[:, :5], tokens[:, :5])
    assert (x < 5).all()  # no mask left
    assert stats.tokens == 90 and stats.steps == 7 * 8  # 8 positions, then 6 windows of 4 (the last of 2)
