"""Where torch.compile cannot build the model (no C++ compiler), training falls back to eager with one warning."""

import dataclasses
import json
from types import SimpleNamespace

import pytest
import torch
import torch._dynamo
import torch._inductor.config

from scorediff.training import train
from scorediff.training.step import step_or_fall_back


def losses(result) -> list[float]:
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss_nats_per_token"] for r in records if "loss_nats_per_token" in r]


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    """Inductor pointed at a C++ compiler that does not exist, with an empty cache, so nothing compiled before on
    this machine can stand in for the build."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor-cache"))
    missing = (None, str(tmp_path / "no-such-c++"))
    torch._dynamo.reset()
    with torch._inductor.config.patch({"cpp.cxx": missing, "fx_graph_cache": False}):
        yield
    torch._dynamo.reset()


def test_a_compiled_run_without_a_compiler_trains_eagerly(micro_config, no_compiler, capsys):
    config, _ = micro_config(max_steps=4, save_every=0, eval_every=0)
    with_compile = dataclasses.replace(config.train, compile=True, run_name="compiled")
    compiled = train(dataclasses.replace(config, train=with_compile), progress=False)
    printed = capsys.readouterr().out.splitlines()
    warnings = [line for line in printed if "torch.compile" in line]
    assert len(warnings) == 1 and "training without it" in warnings[0]
    assert "C++ compiler" in warnings[0]  # the reason the backend gave, on the same line
    without = dataclasses.replace(config.train, run_name="eager")
    eager = train(dataclasses.replace(config, train=without), progress=False)
    assert compiled.step == eager.step == 4
    assert len(losses(compiled)) == 4 and losses(compiled) == losses(eager)  # the first step too, retried whole


class Broken(torch.nn.Module):
    """A model with a bug of its own: its weight does not fit its input."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3, 5))

    def forward(self, x):
        return x @ self.weight


def fake_state(network, model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return SimpleNamespace(network=network, model=model, optimizer=optimizer)


def test_a_bug_in_the_model_is_not_taken_for_a_compiler_failure(no_compiler):
    # Dynamo traces the model before any backend builds it: the shape error surfaces there, and is raised as is
    model = Broken()
    state = fake_state(torch.compile(model), model)
    warned = []
    with pytest.raises(RuntimeError, match="same reduction dim"):
        step_or_fall_back(state, lambda: state.network(torch.ones(2, 4)), warned.append)
    assert warned == [] and state.network is not model


def test_the_fallback_happens_once(no_compiler):
    # already eager, a compiler failure cannot come from the model: it propagates rather than retrying for ever
    model = torch.nn.Linear(4, 1)
    state = fake_state(model, model)
    calls = []

    def step():
        calls.append(1)
        return torch.compile(torch.nn.GELU())(torch.ones(2, 4))  # a kernel inductor must build in C++

    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed):
        step_or_fall_back(state, step, calls.append)
    assert calls == [1]
