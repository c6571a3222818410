"""End tokens under an adaptive order: the trap of committing the surest cells (an answer's padding) first, and the
rule that an end token waits for every masked position before it (``end_token``), on an exact toy law."""

import pytest
import torch
from test_orders import exact_conditionals

from scorediff import AbsorbingGraph, LogLinearSchedule, SamplingOptions
from scorediff.errors import InputError
from scorediff.objectives import DiffusionObjective
from scorediff.sampling.options import OptionError
from scorediff.sampling.orders import decode_in_order

A, B, C, END = 0, 1, 2, 3  # three letters and the end token that ends and pads an answer
NUM_TOKENS, MASK = 4, 4
PROMPT = B  # position 0 is the prompt, positions 1-3 the answer

#: the answers to the prompt and their probabilities: "ca" is the likeliest, the empty answer is not
ANSWERS = {(C, A, END): 5 / 12, (END, END, END): 4 / 12, (A, END, END): 3 / 12}


def trap_law() -> torch.Tensor:
    """The law of (prompt, answer) rows, float64 of shape (4,) * 4.

    Worked by hand from the table: with the answer all masked, the surest cells are ends (position 3: 1; position 2:
    7/12) and position 1's likeliest token is C at 5/12. Committing the end at 3 leaves the law unchanged, the end at
    2 leaves "aEE" and "EEE" (position 1: E at 4/7), and the end at 1 gives the empty answer. Ends waiting for the
    positions before them commit C at position 1 first, after which "caE" is certain.
    """
    law = torch.zeros((NUM_TOKENS,) * 4, dtype=torch.float64)
    for answer, probability in ANSWERS.items():
        law[(PROMPT, *answer)] = probability
    return law


def prompt_row(batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt with its answer masked, int64 (batch, 4), and the given mask, bool (batch, 4)."""
    x = torch.tensor([[PROMPT, MASK, MASK, MASK]]).repeat(batch, 1)
    return x, x != MASK


def test_the_surest_cells_are_ends_so_the_old_rule_answers_with_nothing():
    log_probs = exact_conditionals(trap_law())
    probs = log_probs(prompt_row()[0])[0, 1:, :NUM_TOKENS].exp()  # (3, 4): the answer's positions
    assert torch.allclose(probs.max(-1).values, torch.tensor([5 / 12, 7 / 12, 1.0], dtype=torch.float64))
    assert probs.argmax(-1).tolist() == [C, END, END]
    x, given = prompt_row()
    filled, calls = decode_in_order(log_probs, x, MASK, NUM_TOKENS, given=given)
    assert filled.tolist() == [[PROMPT, END, END, END]] and calls == 3


@pytest.mark.parametrize("order", ["confidence", "margin", "entropy"])
def test_ends_that_wait_for_the_answer_before_them_give_the_likeliest_answer(order):
    x, given = prompt_row()
    filled, calls = decode_in_order(exact_conditionals(trap_law()), x, MASK, NUM_TOKENS, order=order, end_token=END,
                                    given=given)  # fmt: skip
    assert filled.tolist() == [[PROMPT, C, A, END]] and calls == 3


def test_a_call_commits_the_first_masked_position_and_never_an_early_end():
    """Two tokens a call: while position 1 takes C, the ends at 2 and 3 wait (each call commits one position);
    once an answer's last letter is in, the padding is one run of ends committed two a call."""
    law = exact_conditionals(trap_law())
    seen = []

    def recorded(state):
        seen.append(state.clone())
        return law(state)

    x, given = prompt_row()
    filled, calls = decode_in_order(recorded, x, MASK, NUM_TOKENS, tokens_per_step=2, end_token=END, given=given)
    assert filled.tolist() == [[PROMPT, C, A, END]] and calls == 3
    assert [state[0, 1:].tolist() for state in seen] == [[MASK] * 3, [C, MASK, MASK], [C, A, MASK]]
    written = torch.tensor([[PROMPT, A, MASK, MASK]])  # "a" written: the rest is certainly padding
    filled, calls = decode_in_order(law, written, MASK, NUM_TOKENS, tokens_per_step=2, end_token=END, given=given)
    assert filled.tolist() == [[PROMPT, A, END, END]] and calls == 1


class FixedDenoiser(torch.nn.Module):
    """A time-independent absorbing network whose ``p(x_0 | x_t)`` is the trap's exact law (``config.seq_len``,
    ``time_independent`` and ``clean_log_probs`` as a trained network has them)."""

    time_independent = True

    def __init__(self):
        super().__init__()
        self.config = type("Config", (), {"seq_len": 4})()
        self.law = exact_conditionals(trap_law())

    def clean_log_probs(self, x_t: torch.Tensor, **_) -> torch.Tensor:
        return self.law(x_t).float()


@pytest.mark.parametrize(("end_token", "answer"), [(None, [END, END, END]), (END, [C, A, END])])
def test_the_objective_reads_end_token_from_the_options(end_token, answer):
    objective = DiffusionObjective(AbsorbingGraph(NUM_TOKENS), LogLinearSchedule(), time_conditioning=False)
    x, given = prompt_row(batch=3)
    options = SamplingOptions(order="confidence", tokens_per_step=1, end_token=end_token, bf16=False)
    drawn = objective.sample(FixedDenoiser(), (3, 4), options, condition=(x, given))
    assert drawn.tokens[:, 1:].tolist() == [answer] * 3


def test_an_end_token_outside_the_data_tokens_is_refused():
    x, given = prompt_row()
    with pytest.raises(InputError, match=r"^end_token must be a data token, in \[0, 4\); got 4$"):
        decode_in_order(exact_conditionals(trap_law()), x, MASK, NUM_TOKENS, end_token=MASK, given=given)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"order": "confidence", "end_token": -1}, "must be a whole number >= 0; got -1"),
        ({"order": "confidence", "end_token": 1.0}, "must be a whole number >= 0; got 1.0"),
        ({"order": "confidence", "end_token": True}, "must be a whole number >= 0; got True"),
        ({"end_token": 3}, r"applies to decoding in an order \(the random order ranks nothing\)"),
    ],
)
def test_end_token_is_a_token_id_for_an_order(fields, reason):
    with pytest.raises(OptionError, match=f"^end_token {reason}$"):
        SamplingOptions(**fields)
    assert SamplingOptions(tokens_per_step=2, end_token=3).order_keywords()["end_token"] == 3
