"""``scorediff.load(..., dtype=...)``: every layout loads in bfloat16 as the float32 model rounded, its rotary tables
recomputed in float32; samples and likelihoods of a bf16 model; the memory a bf16 load needs; bad dtypes."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import scorediff
from scorediff.builders import build_model, build_objective
from scorediff.checkpoint import CheckpointError, config_json
from scorediff.config import config_from_dict
from scorediff.errors import InputError
from scorediff.placement import empty_network
from scorediff.sampling.options import SamplingOptions

FAMILY = Path(__file__).parent / "fixtures" / "llama_family"
NUM_TOKENS = 40
#: bf16 keeps 8 significant bits: one rounding moves a value by at most 2^-8 of itself. A tiny 2-block network rounds
#: about 16 times in sequence from the embedding to the logits (per block: two norms, q/k/v, attention, o, gate/up,
#: their product, down), so to first order its logits move by at most 16 * 2^-8 of their scale.
BF16_LOGITS = 16 * 2**-8


def write_run(folder: Path, arch: str, objective: str, hidden: int = 32, blocks: int = 2, seed: int = 0) -> Path:
    """A scorediff checkpoint folder (``config.json``, ``model.safetensors``) of random weights, no tokenizer."""
    values = {"objective": objective, "model": {"arch": arch, "hidden_size": hidden, "cond_dim": 16,
                                                "n_blocks": blocks, "n_heads": 4, "seq_len": 32}}  # fmt: skip
    config = config_from_dict(values)
    objective_ = build_objective(config, NUM_TOKENS)
    network = empty_network(build_model, config, objective_)
    generator = torch.Generator().manual_seed(seed)
    state = {name: 0.3 * torch.randn(t.shape, generator=generator) for name, t in network.state_dict().items()}
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(config_json(objective_.header(), config.to_dict()))
    save_file(state, str(folder / "model.safetensors"))
    return folder


@pytest.fixture(params=["dit diffusion run", "llama autoregressive run", "tiny_llama", "tiny_llama.gguf",
                        "tiny_llada", "tiny_dream"])  # fmt: skip
def source(request, tmp_path) -> Path:
    if request.param.endswith(" run"):
        arch, objective, _ = request.param.split()
        return write_run(tmp_path / "run", arch, objective)
    if request.param.endswith(".gguf"):
        pytest.importorskip("gguf")
    return FAMILY / request.param


def outputs(loaded, generator: torch.Generator) -> torch.Tensor:
    """The network's float32 outputs on random tokens: next-token log-probabilities (AR), raw outputs (diffusion)."""
    vocab = loaded.objective.num_tokens
    x = torch.randint(0, vocab, (2, 16), generator=generator)
    with torch.no_grad():
        if loaded.kind == "autoregressive":
            return loaded.model(x)
        x[:, ::3] = loaded.graph.mask_id
        return loaded.model.logits(x, torch.full((2,), 0.7))


def test_a_bf16_load_is_the_float32_model_rounded(source):
    """Every weight is the float32 load's weight rounded to bf16 (nothing else), the rotary tables are the float32
    tables recomputed (not rounded, not left empty), the outputs are float32 and exactly those of the float32
    model cast to bf16, and within ``BF16_LOGITS`` of the float32 model's."""
    full, half = scorediff.load(source), scorediff.load(source, dtype=torch.bfloat16)
    weights, rounded = full.model.state_dict(), half.model.state_dict()
    assert weights.keys() == rounded.keys()
    for name, weight in weights.items():
        assert rounded[name].dtype == torch.bfloat16 and torch.equal(rounded[name], weight.to(torch.bfloat16)), name
    assert half.model.rotary.cos.dtype == torch.float32
    assert torch.equal(half.model.rotary.cos, full.model.rotary.cos)
    assert torch.equal(half.model.rotary.sin, full.model.rotary.sin)
    cast = copy.deepcopy(full.model).to(torch.bfloat16)
    cast.rotary.reset_buffers()
    reference = copy.copy(full)
    reference.model = cast
    exact, low, rounded_out = (outputs(x, torch.Generator().manual_seed(1)) for x in (full, half, reference))
    assert low.dtype == torch.float32 and torch.equal(low, rounded_out)
    finite = torch.isfinite(exact)
    assert torch.equal(finite, torch.isfinite(low))
    scale = exact[finite].abs().max()
    assert (low - exact)[finite].abs().max() <= BF16_LOGITS * scale
    assert (low - exact)[finite].abs().max() > 0  # the weights were rounded: a float32 load would give 0


def test_float16_and_float64_by_name(tmp_path):
    """Names and torch dtypes are the same request; float64 reproduces float32 to float32's precision."""
    run = write_run(tmp_path / "run", "llama", "diffusion")
    full, wide = scorediff.load(run), scorediff.load(run, dtype="float64")
    assert {p.dtype for p in scorediff.load(run, dtype="float16").model.parameters()} == {torch.float16}
    assert {p.dtype for p in wide.model.parameters()} == {torch.float64}
    exact, precise = (outputs(x, torch.Generator().manual_seed(2)) for x in (full, wide))
    torch.testing.assert_close(precise.float(), exact, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["bogus", "int8", torch.int64, 16])
def test_an_unknown_dtype_is_one_line(tmp_path, dtype):
    with pytest.raises(InputError, match=r"^dtype must be one of float32, bfloat16, float16, float64") as error:
        scorediff.load(FAMILY / "tiny_llama", dtype=dtype)
    assert "\n" not in str(error.value)


def test_a_weight_beyond_float16s_range_is_refused_in_float16(tmp_path):
    run = write_run(tmp_path / "run", "llama", "autoregressive")
    state = scorediff.load(run).model.state_dict()
    state["blocks.0.mlp.up_proj.weight"][0, 0] = 1e5
    save_file({name: t.contiguous() for name, t in state.items()}, str(run / "model.safetensors"))
    assert torch.isfinite(scorediff.load(run, dtype="bfloat16").model.blocks[0].mlp.up_proj.weight).all()
    with pytest.raises(CheckpointError, match=r"blocks.0.mlp.up_proj.weight exceeds float16's range"):
        scorediff.load(run, dtype="float16")


@pytest.mark.parametrize("name", ["llama autoregressive", "llama diffusion", "dit diffusion"])
def test_a_bf16_model_samples_and_scores_in_float32(tmp_path, name):
    """``Objective.sample`` gives tokens of the vocabulary and ``nll`` finite float64 nats from float32 logits,
    within bf16's precision of the float32 model's (the same draws: seeded)."""
    arch, objective = name.split()
    run = write_run(tmp_path / "run", arch, objective)
    full, half = scorediff.load(run), scorediff.load(run, dtype="bfloat16")
    x_0 = torch.randint(0, NUM_TOKENS, (3, 32), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        nats = [m.objective.nll(m.model, x_0, torch.Generator().manual_seed(4), num_t=4) for m in (full, half)]
        options = SamplingOptions(steps=4) if objective == "diffusion" else None
        tokens = half.objective.sample(half.model, (2, 32), options, generator=torch.Generator().manual_seed(5)).tokens
    assert nats[1].dtype == torch.float64 and torch.isfinite(nats[1]).all()
    torch.testing.assert_close(nats[1], nats[0], rtol=BF16_LOGITS, atol=0)
    assert tokens.shape == (2, 32) and 0 <= int(tokens.min()) and int(tokens.max()) < NUM_TOKENS


MEASURE = """
import sys, torch, scorediff
def kib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))
open("/proc/self/clear_refs", "w").write("5")  # the peak so far (imports) set back to the current RSS
before = kib("VmRSS:")
loaded = scorediff.load(sys.argv[1], dtype=torch.bfloat16)
print((kib("VmHWM:") - before) * 1024, sum(p.numel() * p.element_size() for p in loaded.model.parameters()))
"""


def test_a_bf16_load_needs_about_the_bf16_size(tmp_path):
    """A 76M-parameter float32 file (291 MiB) loads in bf16 (146 MiB) with a peak RSS increase of at most the bf16
    size, plus the largest tensor in float32 (the safetensors map of the tensor being converted: the pages read
    through a map count in RSS while it is open, and each tensor's map is closed once converted), plus 48 MiB for
    the allocator (measured here: 170 MiB of a 204 MiB bound; a float32 load through the same path 307 MiB, and
    the path before it, a float32 network beside the whole file's state dict, 592 MiB).

    The peak is the process's VmHWM (Linux), set back to the current RSS once imports are done: ``ru_maxrss``
    would not do, since a child started by fork and exec inherits its parent's peak (here pytest's, which wrote
    the file).

    glibc's mmap threshold is fixed at 1 MiB in the child. By default glibc raises it (up to 32 MiB) after the first
    large block is freed, so later float32 reads of this model's 4-11 MiB tensors come from the heap between the
    bf16 weights that stay, and their freed space is not returned: 16 of 48 runs here peaked 11-55 MiB higher, at
    random (235 MiB once in CI), with the same loader. A real model's tensors are above 32 MiB, where glibc always
    maps and unmaps them; the fixed threshold measures what the loader holds (170-171 MiB in 16 of 16 runs)."""
    run = write_run(tmp_path / "run", "llama", "diffusion", hidden=1024, blocks=6)
    file_size = (run / "model.safetensors").stat().st_size
    header = _header(run / "model.safetensors")
    largest = max(end - start for start, end in (entry["data_offsets"] for entry in header.values()))
    result = subprocess.run([sys.executable, "-c", MEASURE, str(run)], capture_output=True, text=True, check=True,
                            env={"OMP_NUM_THREADS": "1", "PATH": "", "MALLOC_MMAP_THRESHOLD_": str(2**20)})  # fmt: skip
    increase, bf16_bytes = map(int, result.stdout.split())
    assert bf16_bytes == pytest.approx(file_size / 2, rel=0.01)
    assert increase <= bf16_bytes + largest + 48 * 2**20, (increase / 2**20, file_size / 2**20)


def _header(path: Path) -> dict:
    """The tensor entries of a safetensors file's header, read as its format states (8 bytes of length, JSON)."""
    with open(path, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    return {name: entry for name, entry in header.items() if name != "__metadata__"}


@pytest.mark.parametrize("name", ["published/tiny_mdlm", "published/tiny_radd", "sedd_reference/tiny_absorb"])
def test_the_published_dit_layouts_load_in_bf16(name):
    """MDLM (whose stored rotary table is read in bf16 and checked against the standard one rounded alike), RADD and
    SEDD load in bf16: every weight bf16, outputs within ``BF16_LOGITS`` of the float32 model's."""
    path = Path(__file__).parent / "fixtures" / name
    full, half = scorediff.load(path), scorediff.load(path, dtype="bfloat16")
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    exact, low = (outputs(x, torch.Generator().manual_seed(6)) for x in (full, half))
    finite = torch.isfinite(exact)
    assert torch.equal(finite, torch.isfinite(low))
    assert 0 < (low - exact)[finite].abs().max() <= BF16_LOGITS * exact[finite].abs().max()
