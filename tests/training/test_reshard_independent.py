"""A sharded checkpoint read back at another world size, against the whole tensors the saving processes held: 2 gloo
processes (reshard_worker.py) train a micro llama 3 steps under FSDP2, save, and gather their weights, EMA and
AdamW state with ``full_tensor`` apart from the checkpoint code. Restored at 2 processes (there) and at 1 (here,
unsharded, as a run resumed with fewer processes is), every one of those tensors comes back exactly, and the whole
export holds the gathered weights and EMA. The FSDP resume tests compare the next losses, which the EMA never
enters, so an EMA lost on resharding passed them."""

import dataclasses

import pytest
import torch
from launch import launch, torchrun
from reshard_worker import NUM_TOKENS, OVERRIDES, WORKER_NAME
from safetensors.torch import load_file

from scorediff.builders import build_model, build_objective
from scorediff.config import load_config
from scorediff.training import sharded
from scorediff.training.distributed import DistInfo
from scorediff.training.step import new_state

CHECKPOINT = ("run", "checkpoints", "step_00000003")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("reshard")
    launch([*torchrun(2), WORKER_NAME, str(out)], out)
    return out, torch.load(out / "whole.pt"), torch.load(out / "restored_2.pt")


def one_process_state(seed: int):
    config = load_config("tiny-llama", [*OVERRIDES, "train.parallel=ddp"])
    objective = build_objective(config, NUM_TOKENS)
    torch.manual_seed(seed)
    model = build_model(config, objective)
    config = dataclasses.replace(config, model=model.config)
    return new_state(config, objective, model, torch.device("cpu"), DistInfo())


def tensors_of(state) -> dict[str, torch.Tensor]:
    """The names of ``reshard_worker.whole_tensors`` for an unsharded state."""
    out = {}
    for name, parameter in state.model.named_parameters():
        out[f"model.{name}"] = parameter.detach()
        out[f"ema.{name}"] = state.ema.shadow[name]
        for key, value in state.optimizer.state.get(parameter, {}).items():
            out[f"optimizer.{name}.{key}"] = value
    return out


def assert_same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(got[name].float(), value.float()), name


def test_the_reference_is_not_trivial(saved):
    _, whole, _ = saved
    names = [k.removeprefix("model.") for k in whole if k.startswith("model.")]
    assert any(not torch.equal(whole[f"model.{n}"], whole[f"ema.{n}"]) for n in names)  # the EMA lags the weights
    assert all(float(whole[f"optimizer.{n}.exp_avg_sq"].abs().max()) > 0 for n in names)
    assert {float(whole[f"optimizer.{n}.step"]) for n in names} == {3.0}
    fresh = tensors_of(one_process_state(1))
    assert not torch.equal(fresh["model.vocab_embed.weight"], whole["model.vocab_embed.weight"])


def test_restored_at_two_processes_everything_comes_back(saved):
    _, whole, restored = saved
    assert_same(restored, whole)


def test_restored_at_one_process_everything_comes_back(saved):
    out, whole, _ = saved
    state = one_process_state(1)
    sharded.restore(state, out.joinpath(*CHECKPOINT))
    assert_same(tensors_of(state), whole)


def test_the_export_holds_the_gathered_weights_and_ema(saved):
    out, whole, _ = saved
    checkpoint = out.joinpath(*CHECKPOINT)
    for file, prefix in (("model.safetensors", "model."), ("ema.safetensors", "ema.")):
        exported = load_file(checkpoint / file)
        for name, value in whole.items():
            if name.startswith(prefix):
                assert torch.equal(exported[name.removeprefix(prefix)], value), (file, name)
