"""Library entry points given what is not theirs: each raised a raw AttributeError, TypeError or
NotImplementedError, or took a wrong value as another (``ema="yes"``, a path as ``resume``)."""

import pytest
import torch

import scorediff
from scorediff.config import ConfigError, RunConfig, load_config
from scorediff.errors import InputError
from scorediff.training import train


@pytest.mark.parametrize("config", [{}, None, "tiny.yaml"])
def test_train_wants_a_run_config(config):
    with pytest.raises(InputError, match=r"^config must be a RunConfig \(scorediff.load_config\); got "):
        train(config)


@pytest.mark.parametrize(("keyword", "value", "message"), [
    ("resume", "/some/run", r"^resume must be True or False \(the run is the one config names\); got '/some/run'"),
    ("until_step", 0, r"^until_step must be a whole number >= 1 or None; got 0"),
    ("until_step", 2.5, r"^until_step must be a whole number >= 1 or None; got 2.5"),
])  # fmt: skip
def test_train_refuses_arguments_of_another_kind(keyword, value, message):
    with pytest.raises(InputError, match=message):
        train(load_config("tiny"), **{keyword: value})


def test_a_run_config_holds_its_sections():
    with pytest.raises(ConfigError, match=r"^model must be a ModelConfig; got 5"):
        RunConfig(model=5)
    for name in (None, "", 3):
        with pytest.raises(ConfigError, match=r"^config must be a preset name \[.*\] or a .yaml file; got "):
            load_config(name)


def test_load_and_save_pretrained_refuse_what_they_cannot_use(tmp_path, trained_run):
    with pytest.raises(InputError, match=r"^ema must be True or False; got 'yes'"):
        scorediff.load(trained_run, ema="yes")
    loaded = scorediff.load(trained_run)
    for directory in (None, "", 5):
        with pytest.raises(InputError, match=r"^directory must be a folder path; got "):
            loaded.save_pretrained(directory)
    meta = scorediff.load(trained_run, device="meta")
    assert any(p.is_meta for p in meta.model.parameters())
    with pytest.raises(InputError, match=r"was loaded on the meta device, without weights to save"):
        meta.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert torch.isfinite(next(loaded.model.parameters())).all()
