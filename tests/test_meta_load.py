"""``scorediff.load(path, device="meta")``: every layout builds the network it loads, without weights, and reads none;
``scorediff info`` uses it, so the facts of a model larger than memory cost no memory."""

import json
from pathlib import Path

import pytest
import torch
from test_placement import write_run

import scorediff
from scorediff.checkpoint import CheckpointError
from scorediff.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
PUBLISHED = ["llama_family/tiny_llama", "llama_family/tiny_qwen3", "llama_family/tiny_llada", "llama_family/tiny_dream",
             "llama_family/tiny_llama.gguf", "published/tiny_mdlm", "published/tiny_radd", "published/tiny_bd3lm",
             "sedd_reference/tiny_absorb", "sedd_reference/tiny_uniform"]  # fmt: skip
RUNS = ["dit diffusion", "llama diffusion", "llama autoregressive"]


@pytest.fixture(params=PUBLISHED + RUNS)
def source(request, tmp_path) -> Path:
    if request.param in RUNS:
        return write_run(tmp_path / "run", *request.param.split())
    if request.param.endswith(".gguf"):
        pytest.importorskip("gguf")
    return FIXTURES / request.param


def described(model: torch.nn.Module) -> dict:
    return {name: (tuple(t.shape), t.dtype) for name, t in model.state_dict().items()}


@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_a_meta_load_is_the_loaded_network_without_storage(source, dtype):
    """Every name, shape and dtype of a real load, every tensor on the meta device, the same parameter count (tied
    weights stay tied), the same objective and tokenizer."""
    full, meta = scorediff.load(source, dtype=dtype), scorediff.load(source, device="meta", dtype=dtype)
    assert described(meta.model) == described(full.model)
    assert all(t.is_meta for t in [*meta.model.parameters(), *meta.model.buffers()])
    assert meta.model.num_parameters() == full.model.num_parameters()
    assert (meta.kind, meta.layout, type(meta.objective)) == (full.kind, full.layout, type(full.objective))
    assert repr(meta.tokenizer) == repr(full.tokenizer)


def _poison(weights: Path) -> None:
    """Overwrite every stored value of a safetensors file with NaN, its header untouched."""
    header_size = int.from_bytes(weights.read_bytes()[:8], "little")
    data = bytearray(weights.read_bytes())
    nan = torch.full((1,), float("nan")).numpy().tobytes()
    for start in range(8 + header_size, len(data) - 3, 4):
        data[start : start + 4] = nan
    weights.write_bytes(bytes(data))


def test_a_meta_load_reads_no_weight_but_checks_the_header(tmp_path):
    """A file of NaN values loads on the meta device (nothing was read) and is refused by a real load; a tensor of
    the wrong shape or a truncated file is refused on the meta device too (the header is read)."""
    run = write_run(tmp_path / "run", "llama", "diffusion")
    _poison(run / "model.safetensors")
    assert scorediff.load(run, device="meta").model.num_parameters() > 0
    with pytest.raises(CheckpointError, match="holds NaN or infinite values"):
        scorediff.load(run)
    other = write_run(tmp_path / "wider", "llama", "diffusion", hidden=64)
    (run / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"do not match the model in config.json: .* has shape"):
        scorediff.load(run, device="meta")
    (run / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        scorediff.load(run, device="meta")


def test_info_reads_no_weight(tmp_path, capsys):
    """``scorediff info`` of a checkpoint whose values are NaN prints the facts of the intact one."""
    run = write_run(tmp_path / "run", "llama", "autoregressive")
    parameters = scorediff.load(run).model.num_parameters()
    assert main(["info", "--checkpoint", str(run), "--json"]) == 0
    intact = json.loads(capsys.readouterr().out)
    _poison(run / "model.safetensors")
    assert main(["info", "--checkpoint", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == intact and intact["parameters"] == parameters


def test_a_meta_load_of_a_gguf_dequantises_nothing(monkeypatch):
    """A GGUF file on the meta device is built from the tensors' listed shapes: no weight is dequantised (one of an
    8B model would be 32 GB in float32), so ``info`` and ``plan --train.init`` of a large GGUF cost no memory. A
    quantisation type ``gguf`` cannot read is refused all the same."""
    gguf = pytest.importorskip("gguf")

    def refuse(data, kind):
        raise AssertionError("dequantised on the meta device")

    monkeypatch.setattr(gguf.quants, "dequantize", refuse)
    path = FIXTURES / "llama_family" / "tiny_llama.gguf"
    meta = scorediff.load(path, device="meta")
    assert meta.model.num_parameters() > 0 and all(t.is_meta for t in meta.model.parameters())
    monkeypatch.setattr(gguf.quants, "_type_traits", {})  # as if only F32 and F16 were readable: Q8_0 is not
    with pytest.raises(CheckpointError, match=r"output.weight is Q8_0, which the gguf package cannot dequantise"):
        scorediff.load(path, device="meta")
