"""A user's mistakes in library calls are the package's own one-line errors (``InputError``), never a raw
``TypeError``/``RuntimeError``/``IndexError`` from deep inside torch, and nothing runs unbounded: the entry points
``generate``, ``Objective.nll`` and ``load``, for every objective, and a property test over their numbers."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scorediff import AbsorbingGraph, LogLinearSchedule
from scorediff.errors import InputError
from scorediff.generation import MAX_SEED, generate
from scorediff.loading import load
from scorediff.model import ModelConfig
from scorediff.objectives import AutoregressiveObjective, BlockDiffusionObjective, DiffusionObjective

NUM_TOKENS, SEQ_LEN = 5, 8
OBJECTIVES = {
    "diffusion": lambda: (DiffusionObjective(AbsorbingGraph(NUM_TOKENS), LogLinearSchedule()), True),
    "block": lambda: (BlockDiffusionObjective(AbsorbingGraph(NUM_TOKENS), LogLinearSchedule(), block_size=4), False),
    "autoregressive": lambda: (AutoregressiveObjective(NUM_TOKENS), False),
}


def build(name):
    objective, time_conditioning = OBJECTIVES[name]()
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=16, cond_dim=8, n_blocks=1, n_heads=2, seq_len=SEQ_LEN,
                         time_conditioning=time_conditioning, block_size=4 if name == "block" else 0)  # fmt: skip
    return objective, objective.build_model(config).eval()


@pytest.fixture(scope="module", params=sorted(OBJECTIVES))
def built(request):
    return build(request.param)


def condition(tokens=None, given=None, length=SEQ_LEN):
    tokens = torch.zeros(1, length, dtype=torch.long) if tokens is None else tokens
    return tokens, torch.zeros(1, length, dtype=torch.bool) if given is None else given


BAD_CALLS = {
    "device bogus": ({"device": "bogus"}, r"device must be auto, cpu, cuda or cuda:N; got 'bogus'"),
    "device meta": ({"device": "meta"}, r"device must be auto, cpu, cuda or cuda:N; got 'meta'"),
    "device empty": ({"device": ""}, r"device must be auto, cpu, cuda or cuda:N; got ''"),
    "negative batch": ({"shape": (-1, 8)}, r"shape must be \(batch_size, length\) with both >= 1; got \(-1, 8\)"),
    "float shape": ({"shape": (1.5, 8)}, r"shape must be \(batch_size, length\) of whole numbers"),
    "three dims": ({"shape": (1, 2, 3)}, r"shape must be \(batch_size, length\) of whole numbers"),
    "float tokens": ({"condition": (torch.zeros(1, 8), torch.zeros(1, 8, dtype=torch.bool))},
                     r"condition tokens must be an integer tensor; got dtype torch.float32"),
    "float given": ({"condition": (torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8))},
                    r"condition given must be a bool tensor; got dtype torch.float32"),
    "condition of another length": ({"condition": condition(length=12)},
                                    r"condition tokens must have the shape asked for, \(1, 8\); got \(1, 12\)"),
    "not a pair": ({"condition": torch.zeros(1, 8, dtype=torch.long)}, r"condition must be a pair"),
    "seed past 64 bits": ({"seed": 10**23}, r"seed must be a whole number in \[0, 2\*\*63 - 1\]; got 10{23}"),
    "seed of 5000 digits": ({"seed": 10**5000}, r"got a 16610-bit number"),
    "negative seed": ({"seed": -1}, r"seed must be a whole number in \[0, 2\*\*63 - 1\]; got -1"),
    "float seed": ({"seed": 1.5}, r"seed must be a whole number .*; got 1.5"),
    "infinite temperature": ({"temperature": math.inf}, r"temperature must be finite and > 0; got inf"),
    "nan temperature": ({"temperature": math.nan}, r"temperature must be finite and > 0; got nan"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_generate_calls_are_input_errors(built, case):
    objective, model = built
    options, message = BAD_CALLS[case]
    options = {"shape": (1, SEQ_LEN), **options}
    with pytest.raises(InputError, match=message):
        generate(objective, model, options.pop("shape"), **options)


def test_steps_and_remasking_are_bounded():
    objective, model = build("diffusion")
    with pytest.raises(InputError, match=r"steps must be a whole number >= 1; got None"):
        generate(objective, model, (1, SEQ_LEN), steps=None)
    with pytest.raises(InputError, match=r"remask_rounds must be at most the window's 8 positions; got 1000000000"):
        generate(objective, model, (1, SEQ_LEN), order="confidence", remask_rounds=10**9)
    drawn = generate(objective, model, (1, SEQ_LEN), order="confidence", remask_rounds=SEQ_LEN, seed=0)
    assert drawn.stats.nfe == 2 * SEQ_LEN  # the largest allowed: a fill, then one call per round


def test_more_tokens_per_call_than_positions_fills_the_window_at_once():
    objective, model = build("diffusion")
    for tokens_per_step in (SEQ_LEN, 10**30):  # a number past int64 once overflowed inside torch (found by fuzzing)
        drawn = generate(objective, model, (2, SEQ_LEN), order="confidence", tokens_per_step=tokens_per_step, seed=0)
        assert drawn.stats.nfe == 1 and drawn.tokens.shape == (2, SEQ_LEN)


def test_nll_refuses_what_the_model_cannot_score(built):
    objective, model = built
    generator = torch.Generator().manual_seed(0)
    cases = {
        "x_0 is 9 tokens long; the model's context is 8": torch.zeros(1, SEQ_LEN + 1, dtype=torch.long),
        r"x_0 must be in \[0, 5\); got values in \[0, 7\]": torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7]]),
        r"x_0 must have shape \(batch_size, length\)": torch.zeros(SEQ_LEN, dtype=torch.long),
        "x_0 must be an integer tensor; got torch.float32": torch.zeros(1, SEQ_LEN),
    }
    for message, x_0 in cases.items():
        with pytest.raises(InputError, match=message):
            objective.nll(model, x_0, generator, 2)
    assert objective.nll(model, torch.zeros(2, SEQ_LEN, dtype=torch.long), generator, 2).shape == (2,)


def test_load_refuses_a_device_that_is_not_there(tmp_path):
    with pytest.raises(InputError, match=r"device must be auto, cpu, cuda or cuda:N; got 'bogus'"):
        load(tmp_path, device="bogus")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match=r"device cuda: CUDA is not available on this machine"):
            load(tmp_path, device="cuda")


NUMBERS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(seed=NUMBERS, temperature=NUMBERS, top_p=NUMBERS, steps=NUMBERS, rows=NUMBERS, length=NUMBERS)
def test_any_numbers_give_samples_or_an_input_error(seed, temperature, top_p, steps, rows, length):
    """Whatever numbers come, ``generate`` returns tokens of the asked shape or raises ``InputError``; values that
    would run long (many rows, steps or tokens) are kept out by refusing them, not by a timeout."""
    objective, model = MODEL
    big = [v for v in (steps, rows, length) if isinstance(v, int | float) and not isinstance(v, bool) and v > 16]
    if big:  # a valid but slow request: only its refusal is cheap to test
        steps, rows, length = [None if v in big else v for v in (steps, rows, length)]
    try:
        drawn = generate(objective, model, (rows, length), seed=seed, temperature=temperature, top_p=top_p,
                         steps=steps)  # fmt: skip
    except InputError as error:
        assert "\n" not in str(error)
        return
    assert drawn.tokens.shape == (rows, length) and drawn.tokens.dtype == torch.int64
    assert 0 <= seed <= MAX_SEED and 0 < temperature < math.inf and 0 < top_p <= 1 and steps >= 1


MODEL = build("diffusion")
