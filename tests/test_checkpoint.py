"""``check_weights``: the one check of weights against a model, for tensors and for a safetensors header alike."""

import pytest
import torch
from safetensors.torch import save_file

from scorediff.checkpoint import CheckpointError, check_weights, safetensors_header

EXPECTED = {"embed.weight": (5, 3), "norm.weight": (3,)}


def both_forms(state, tmp_path):
    """``state`` as tensors and as the header of the file that holds them."""
    save_file(state, str(tmp_path / "w.safetensors"))
    return [state, safetensors_header(tmp_path / "w.safetensors")]


def refusal(stored, source=None, **options) -> str:
    with pytest.raises(CheckpointError) as error:
        check_weights(stored, EXPECTED, "the model in config.json", source, **options)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_matching_weights_pass_in_either_form(tmp_path):
    state = {"embed.weight": torch.zeros(5, 3), "norm.weight": torch.ones(3, dtype=torch.bfloat16)}
    for stored in both_forms(state, tmp_path):
        check_weights(stored, EXPECTED, "the model")
    check_weights({**state, "buffer": torch.zeros(2)}, EXPECTED, "the model", optional={"buffer"})
    check_weights(state, dict.fromkeys(EXPECTED), "the model")  # None: any shape


def test_names_shapes_and_dtypes_are_refused_in_one_format_for_both_forms(tmp_path):
    good = {"embed.weight": torch.zeros(5, 3), "norm.weight": torch.ones(3)}
    cases = {
        "missing": ({"embed.weight": good["embed.weight"]}, "do not match the model in config.json: missing "
                    "'norm.weight' (1 name(s) differ)"),
        "unexpected": ({**good, "lora.weight": torch.zeros(1), "x": torch.zeros(1)}, "do not match the model in "
                       "config.json: unexpected 'lora.weight' (2 name(s) differ)"),
        "shape": ({**good, "embed.weight": torch.zeros(6, 3)}, "do not match the model in config.json: embed.weight "
                  "has shape (6, 3), expected (5, 3) (made for another vocabulary or size?)"),
    }  # fmt: skip
    source = tmp_path / "w.safetensors"
    for state, message in cases.values():
        for stored in both_forms(state, tmp_path):  # each case overwrites the file, whose header is read at once
            assert refusal(stored, source) == f"the weights in {source} {message}"
    integers = {**good, "norm.weight": torch.ones(3, dtype=torch.int8)}
    tensors, header = both_forms(integers, tmp_path)
    assert refusal(tensors) == "the weights cannot be used: norm.weight is torch.int8; weights must be floating point"
    assert refusal(header) == "the weights cannot be used: norm.weight is I8; weights must be floating point"


def test_non_finite_tensors_and_garbled_header_entries_are_refused():
    nan = {"embed.weight": torch.zeros(5, 3), "norm.weight": torch.tensor([1.0, float("inf"), 0.0])}
    assert refusal(nan).endswith("norm.weight holds NaN or infinite values; it cannot be sampled or scored")
    garbled = {"embed.weight": {"dtype": "F32", "shape": "5x3"}, "norm.weight": {"dtype": "F32", "shape": [3]}}
    assert refusal(garbled) == "the weights cannot be used: the header's entry of embed.weight is garbled"
