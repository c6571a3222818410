"""What a hostile user tried: every case ends in one line on stderr and exit code 2, never a traceback, and
nothing is written."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_run import assert_user_error
from safetensors.torch import load_file, save_file

from scorediff.data import CharTokenizer

BAD_OVERRIDES = {
    "--train.max_steps=inf": r"train.max_steps expects an integer; got 'inf'",
    "--optim.lr=nan": r"optim.lr expects a finite number; got 'nan'",
    "--optim.lr=-1": r"optim.lr must be > 0; got -1",
    "--optim.beta1=1.0": r"optim.beta1 must be in \[0, 1\); got 1.0",
    "--diffusion.eps=0": r"diffusion.eps must be in \(0, 1\); got 0",
    "--diffusion.sigma_min=0": r"diffusion.sigma_min must be > 0; got 0",
    "--model.dropout=2": r"model.dropout must be in \[0, 1\); got 2",
    "--model.dropout=1.0": r"model.dropout must be in \[0, 1\); got 1.0",
    "--train.batch_size=0": r"train.batch_size must be in \[1, 1048576\]; got 0",
    "--train.grad_accum=0": r"train.grad_accum must be in \[1, 1000000000000000\]; got 0",
    "--model.n_heads=0": r"model.n_heads must be in \[1, 32\]; got 0",
    "--model.n_blocks=-2": r"model.n_blocks must be in \[1, 1024\]; got -2",
    "--model.hidden_size=0": r"model.hidden_size must be in \[2, 65536\]; got 0",
    "--model.mlp_ratio=0": r"model.mlp_ratio must be in \[1, 64\]; got 0",
    "--train.log_every=0": r"train.log_every must be in \[1, 1000000000000000\]; got 0",
    "--train.eval_windows=0": r"train.eval_windows must be in \[1, 1000000000000000\]; got 0",
    "--train.eval_num_t=0": r"train.eval_num_t must be in \[1, 4096\]; got 0",
    "--train.ema=-5": r"train.ema must be in \[0, 1\); got -5",
    "--train.device=bogus": r"train.device must be auto, cpu, cuda or cuda:N; got 'bogus'",
    "--train.seed=-1": r"train.seed must be in \[0, ",
}


@pytest.mark.parametrize("override", sorted(BAD_OVERRIDES))
def test_nonsense_overrides(capsys, micro_yaml, tmp_path, override):
    out = tmp_path / "runs"
    assert_user_error(
        capsys, ["train", "--config", str(micro_yaml), "--out", str(out), override], BAD_OVERRIDES[override]
    )
    assert not out.exists()


def test_files_and_devices_that_cannot_be_used(capsys, micro_yaml, tmp_path, trained_run):
    (tmp_path / "binary.bin").write_bytes(bytes(range(256)) * 4)
    assert_user_error(capsys, ["train", "--config", str(tmp_path / "binary.bin")], r"cannot read config .*binary.bin")
    (tmp_path / "a-file").write_text("not a folder")
    assert_user_error(
        capsys, ["train", "--config", str(micro_yaml), "--out", str(tmp_path / "a-file")], r"it is a file, not a folder"
    )
    sample = ["sample", "--checkpoint", str(trained_run), "--steps", "2"]
    assert_user_error(capsys, [*sample, "--device", "bogus"], r"must be auto, cpu, cuda or cuda:N; got 'bogus'")
    if not torch.cuda.is_available():
        assert_user_error(capsys, [*sample, "--device", "cuda"], r"CUDA is not available on this machine")
        assert_user_error(capsys, ["train", "--config", str(micro_yaml), "--device", "cuda"], r"CUDA is not available")
    assert_user_error(capsys, [*sample, "--out", str(tmp_path / "a-file" / "x.txt")], r"folder .* does not exist")
    assert_user_error(capsys, ["eval", "--checkpoint", str(trained_run), "--json", str(tmp_path)], r"it is a folder")
    infill = ["infill", "--checkpoint", str(trained_run), "--steps", "2"]
    assert_user_error(
        capsys,
        [*infill, "--template", "[MASK:99999999999999]"],
        r"n of 14 digits asks for more tokens than the model's context of 32",
    )
    assert_user_error(capsys, [*infill, "--prefix", "caf\udce9", "--length", "3"], r"not valid UTF-8 text")
    assert not (tmp_path / "runs").exists()


def copy_of(trained_run, tmp_path, name):
    source = sorted((trained_run / "checkpoints").iterdir())[-1]
    target = tmp_path / name
    shutil.copytree(source, target)
    return target


def edit_config(checkpoint, **model):
    config = json.loads((checkpoint / "config.json").read_text())
    config["model"].update(model)
    (checkpoint / "config.json").write_text(json.dumps(config))


def test_untrusted_checkpoints_are_refused_before_any_large_allocation(capsys, trained_run, tmp_path):
    cases = {
        "blocks": ({"n_blocks": 1000000}, r"model.n_blocks must be in \[1, 1024\]"),
        "vocab": ({"vocab_size": 10**9}, r"model.vocab_size must be in \[0, 16777216\]"),
        "cond": ({"cond_dim": 10**8}, r"model.cond_dim must be in \[1, 65536\]"),
        "heads": ({"n_heads": 0}, r"model.n_heads must be in"),
        "shapes": ({"n_blocks": 900}, r"do not match the model in config.json: missing"),  # within bounds, a lie
    }
    for name, (change, pattern) in cases.items():
        checkpoint = copy_of(trained_run, tmp_path, name)
        edit_config(checkpoint, **change)
        assert_user_error(capsys, ["info", "--checkpoint", str(checkpoint)], pattern)
    as_list = copy_of(trained_run, tmp_path, "list")
    (as_list / "config.json").write_text("[1, 2]")
    assert_user_error(capsys, ["info", "--checkpoint", str(as_list)], r"must hold a JSON object; got list")
    state_list = copy_of(trained_run, tmp_path, "state")
    (state_list / "trainer_state.json").write_text("[]")
    assert_user_error(
        capsys, ["info", "--checkpoint", str(state_list)], r"must hold a JSON object with an integer step"
    )
    half = copy_of(trained_run, tmp_path, "tokenizer")
    (half / "tokenizer.json").write_text('{"type": "char"}')
    assert_user_error(capsys, ["info", "--checkpoint", str(half)], r"a char tokenizer needs a non-empty string")
    eps = copy_of(trained_run, tmp_path, "eps")
    config = json.loads((eps / "config.json").read_text())
    config["diffusion"]["eps"] = 5
    (eps / "config.json").write_text(json.dumps(config))
    assert_user_error(capsys, ["info", "--checkpoint", str(eps)], r"diffusion.eps must be in \(0, 1\); got 5")
    integers = copy_of(trained_run, tmp_path, "int8")
    for file in ("model.safetensors", "ema.safetensors"):
        weights = load_file(integers / file)
        weights["vocab_embed.weight"] = weights["vocab_embed.weight"].to(torch.int8)
        save_file(weights, integers / file)
    assert_user_error(capsys, ["info", "--checkpoint", str(integers)], r"vocab_embed.weight is I8; weights must be")


def test_a_pickle_payload_is_never_run(capsys, tmp_path):
    original = tmp_path / "original"
    original.mkdir()
    fixture = Path(__file__).parents[1] / "fixtures" / "sedd_reference" / "tiny_absorb" / "config.json"
    shutil.copy(fixture, original / "config.json")  # the original SEDD layout, which may carry a pickle
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"weights": Payload()}, original / "pytorch_model.bin")
    assert_user_error(
        capsys, ["info", "--checkpoint", str(original)], r"not a plain file of weights, so it is not read"
    )
    assert not marker.exists()


def test_a_closed_pipe_is_not_an_error(trained_run):
    command = f"{sys.executable} -m scorediff info --checkpoint {trained_run} | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and done.stdout.startswith("checkpoint")
    assert done.returncode == 0, done.stderr


def test_decoding_out_of_range_ids_is_refused():
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 4\); got -1"):  # a, b, c and the end token
        CharTokenizer("abc").decode([-1, -2, 0])
