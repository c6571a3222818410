"""``end_token`` in block diffusion decoding: the trap law of test_end_tokens.py (an answer padded with end tokens,
whose surest cells are the ends), one block holding the whole answer, decoded by ``BlockDiffusionObjective.sample``
from the exact block conditionals. The end-token tests there go through the masked-diffusion objective only, so
block decoding that dropped ``end_token`` passed them."""

import pytest
from reference import ExactBlockDenoiser
from test_end_tokens import END, MASK, NUM_TOKENS, A, C, prompt_row, trap_law

from scorediff import AbsorbingGraph, LogLinearSchedule, SamplingOptions
from scorediff.objectives import BlockDiffusionObjective


@pytest.mark.parametrize(("end_token", "answer"), [(None, [END, END, END]), (END, [C, A, END])])
@pytest.mark.parametrize("order", ["confidence", "margin", "entropy"])
def test_ends_wait_for_the_answer_before_them_inside_a_block(order, end_token, answer):
    objective = BlockDiffusionObjective(AbsorbingGraph(NUM_TOKENS), LogLinearSchedule(), block_size=4)
    x, given = prompt_row(batch=2)
    options = SamplingOptions(order=order, tokens_per_step=1, end_token=end_token, bf16=False)
    drawn = objective.sample(ExactBlockDenoiser(trap_law(), 4), (2, 4), options, condition=(x, given))
    # without it every order commits the certain end at position 3 first and the empty answer follows
    assert drawn.tokens[:, 1:].tolist() == [answer] * 2
    assert drawn.stats.nfe == 3 and (drawn.tokens != MASK).all()
