"""``SamplingOptions``: every range checked once, naming its field; ``greedy`` takes the likeliest token for every
objective; ``generate`` builds the options from keywords."""

import math

import pytest
import torch

import scorediff
from scorediff import SamplingOptions
from scorediff.errors import InputError
from scorediff.model import ModelConfig
from scorediff.objectives import AutoregressiveObjective
from scorediff.sampling.options import OptionError

BAD = [
    ({"steps": 0}, "steps", "must be a whole number >= 1; got 0"),
    ({"steps": 2.5}, "steps", "must be a whole number >= 1; got 2.5"),
    ({"steps": True}, "steps", "must be a whole number >= 1; got True"),
    ({"predictor": "leapfrog"}, "predictor", "must be one of analytic, euler, first_hitting; got 'leapfrog'"),
    ({"temperature": 0.0}, "temperature", "must be finite and > 0; got 0.0"),
    ({"temperature": math.inf}, "temperature", "must be finite and > 0; got inf"),
    ({"temperature": math.nan}, "temperature", "must be finite and > 0; got nan"),
    ({"top_p": 0.0}, "top_p", r"must be in \(0, 1\]; got 0.0"),
    ({"top_p": 1.5}, "top_p", r"must be in \(0, 1\]; got 1.5"),
    ({"greedy": "yes"}, "greedy", "must be True or False; got 'yes'"),
    ({"order": "sideways"}, "order", "must be one of random, confidence, margin, entropy; got 'sideways'"),
    ({"tokens_per_step": 0}, "tokens_per_step", "must be a whole number >= 1; got 0"),
    ({"threshold": 0.5}, "threshold", "applies to the confidence order; got order 'random'"),
    ({"order": "confidence", "threshold": 1.5}, "threshold", r"must be in \(0, 1\]; got 1.5"),
    ({"remask_rounds": -1}, "remask_rounds", "must be a whole number >= 0; got -1"),
    ({"remask_tokens": 2}, "remask_tokens", "applies with remask_rounds"),
    ({"block": 0}, "block", "must be a whole number >= 1; got 0"),
    ({"label": -1}, "label", "must be a whole number >= 0; got -1"),
    ({"guidance": 2.0}, "guidance", r"needs a label \(the class to guide towards\)"),
    ({"label": 0, "guidance": math.inf}, "guidance", "must be a finite number; got inf"),
]


@pytest.mark.parametrize(("fields", "field", "reason"), BAD)
def test_each_range_is_checked_once_and_names_its_field(fields, field, reason):
    with pytest.raises(OptionError, match=f"^{field} {reason}$") as caught:
        SamplingOptions(**fields)
    assert caught.value.field == field and isinstance(caught.value, InputError)


def test_the_defaults_are_valid_and_of_replaces_fields_by_name():
    options = SamplingOptions.of(steps=8, order="confidence")
    assert options == SamplingOptions(steps=8, order="confidence") and options.adaptive
    assert SamplingOptions.of(options, steps=4).steps == 4 and options.steps == 8  # frozen: a new value
    assert not SamplingOptions().adaptive and SamplingOptions().changed() == []
    assert SamplingOptions(remask_rounds=1).adaptive and SamplingOptions(tokens_per_step=2).adaptive
    assert SamplingOptions(order="confidence").order_keywords()["greedy"]  # an order commits its argmax by default
    assert not SamplingOptions(order="confidence", greedy=False).order_keywords()["greedy"]
    with pytest.raises(InputError, match="unknown sampling option 'stepz'; valid: steps, predictor"):
        SamplingOptions.of(stepz=3)
    with pytest.raises(InputError, match="options must be a SamplingOptions; got dict"):
        SamplingOptions.of({"steps": 3})


def autoregressive_model():
    objective = AutoregressiveObjective(4)
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=32, cond_dim=16, n_blocks=1, n_heads=2, seq_len=6)
    model = objective.build_model(config).double().eval()
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    return objective, model


def test_greedy_decodes_the_likeliest_next_token_of_an_autoregressive_model():
    """Against a reference that runs the network on the whole prefix at each position and takes the argmax."""
    objective, model = autoregressive_model()
    drawn = scorediff.generate(objective, model, (3, 6), greedy=True, bf16=False, seed=0).tokens
    expected = torch.full((3, 1), model.bos_id)
    with torch.no_grad():
        for _ in range(6):
            expected = torch.cat([expected, model(expected)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(drawn, expected[:, 1:])
    # greedy draws nothing: any seed, any temperature gives the same tokens
    again = scorediff.generate(objective, model, (3, 6), greedy=True, temperature=3.0, bf16=False, seed=7).tokens
    assert torch.equal(again, drawn)
    drawn = scorediff.generate(objective, model, (64, 6), temperature=3.0, bf16=False, seed=0).tokens
    assert len({tuple(row) for row in drawn.tolist()}) > 1  # without greedy the rows are drawn
