"""What a hostile user (or a hostile model file) tried on the LLaMA family and FSDP surfaces: published folders and
GGUF files with garbled or impossible fields, ``train --init`` and LoRA, ``plan``, ``export``, resuming, ``sample
--prompts`` and ``generate``. Each case once broke the promise of one line on stderr, exit code 2, no traceback and
nothing written or replaced, or was accepted and did other work than the one asked for."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import assert_user_error, run_cli
from micro import corpus_head
from safetensors.torch import load_file

import scorediff
from scorediff.checkpoint import CheckpointError
from scorediff.converters import hf_llama, read_gguf, read_published
from scorediff.model import ModelConfig

FAMILY = Path(__file__).parents[1] / "fixtures" / "llama_family"


def published(tmp_path: Path, name: str, **fields) -> Path:
    """A copy of the fixture folder ``tiny_<name>`` whose config.json has ``fields`` replaced."""
    folder = tmp_path / name
    shutil.copytree(FAMILY / f"tiny_{name}", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **fields}))
    return folder


GARBLED = {
    "rope_parameters a text": ("llama", {"rope_parameters": "linear"}, r"rope_parameters must be a JSON object; got "),
    "rope_scaling a list": ("dream", {"rope_scaling": ["linear"]}, r"rope_scaling must be a JSON object; got "),
    # bool("false") is True: the file's own lm_head was dropped and the embedding used as the output layer
    "tie_word_embeddings a text": ("llama", {"tie_word_embeddings": "false"}, r"tie_word_embeddings must be true or"),
    "weight_tying a number": ("llada", {"weight_tying": 0}, r"weight_tying must be true or false; got 0"),
    # an embedding of 100 rows stated as 200: IndexError when loaded, accepted on the meta device (info)
    "embedding_size past the weights": ("llada", {"embedding_size": 200}, r"has shape \(100, 32\), expected \(200,"),
    "an integer of 5,000 digits": ("llama", {}, r"config.json is not valid JSON \(Exceeds the limit \(4300 digits\)"),
    # int() cut 32.7 to 32 and read "4" as 4: a model of another size than the file states, without a word
    "a fractional width": ("llama", {"hidden_size": 32.7}, r"hidden_size must be a whole number >= 1; got 32.7"),
    "a size as text": ("llada", {"n_layers": "2"}, r"n_layers must be a whole number >= 1; got '2'"),
    "a negative count of heads": ("dream", {"num_key_value_heads": -2}, r"num_key_value_heads must be a whole number"),
}


@pytest.mark.parametrize("case", sorted(GARBLED))
@pytest.mark.parametrize("command", ["info", "sample"])  # a model built on the meta device, and with its weights
def test_a_published_config_with_a_garbled_field_is_one_line(capsys, tmp_path, case, command):
    name, fields, pattern = GARBLED[case]
    folder = published(tmp_path, name, **fields)
    if case == "an integer of 5,000 digits":  # which json.loads refuses (a ValueError, not a JSONDecodeError)
        text = (folder / "config.json").read_text().replace('"vocab_size": 100', f'"vocab_size": 1{"0" * 5000}')
        (folder / "config.json").write_text(text)
    argv = [command, "--checkpoint", str(folder)]
    assert_user_error(capsys, argv if command == "info" else [*argv, "--length", "4"], pattern)


@pytest.mark.parametrize("name", ["llada", "dream"])
def test_a_mask_token_at_id_0_is_the_models_own(tmp_path, name):
    """``mask_token_id: 0`` was read as absent (``or`` the released models' id), and refused as 126336 or 151666."""
    folder = published(tmp_path, name, mask_token_id=0)
    loaded = scorediff.load(folder)
    embedding = next(t for n, t in load_file(folder / "model.safetensors").items() if "embed_tokens" in n or "wte" in n)
    assert torch.equal(loaded.model.vocab_embed.weight[-1], embedding[0])  # the mask's row moved to the last id
    assert torch.equal(loaded.model.vocab_embed.weight[0], embedding[-1])


def write_gguf(path: Path, **fields) -> Path:
    """The tiny LLaMA as a float32 GGUF file, its ``llama.*`` numbers replaced by ``fields`` (values unchecked)."""
    gguf = pytest.importorskip("gguf")  # the eval extra
    numbers = {"block_count": 2, "context_length": 64, "embedding_length": 32, "feed_forward_length": 64,
               "attention.head_count": 4, "attention.head_count_kv": 2, "attention.key_length": 8,
               "rope.freq_base": 5e5, "attention.layer_norm_rms_epsilon": 1e-5, **fields}  # fmt: skip
    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in numbers.items():
        (writer.add_float32 if isinstance(value, float) else writer.add_int32)(f"llama.{key}", value)
    writer.add_bos_token_id(1)
    names = {"embed_tokens": "token_embd", "norm": "output_norm", "lm_head": "output",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "q_proj": "attn_q",
             "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output", "gate_proj": "ffn_gate",
             "up_proj": "ffn_up", "down_proj": "ffn_down"}  # fmt: skip
    for name, tensor in load_file(FAMILY / "tiny_llama" / "model.safetensors").items():
        parts = name.removeprefix("model.").split(".")  # layers.0.self_attn.q_proj.weight, norm.weight, ...
        gguf_name = f"blk.{parts[1]}.{names[parts[-2]]}.weight" if parts[0] == "layers" else f"{names[parts[0]]}.weight"
        writer.add_tensor(gguf_name, np.ascontiguousarray(tensor.numpy()))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


NOT_USABLE = r"odd.gguf is not a usable GGUF \(llama, qwen2, qwen3\) file \("
NOT_THE_WEIGHTS = r"the weights do not match the GGUF \(llama, qwen2, qwen3\) layout: blocks.0.self_attn."
IMPOSSIBLE = {  # each escaped as a traceback: ValueError, ZeroDivisionError or a RuntimeError of a reshape
    "no blocks": ({"block_count": 0}, NOT_USABLE + r"n_blocks must be in \[1, 1024\]; got 0\)$"),
    "no heads": ({"attention.head_count": 0}, NOT_USABLE + r"n_heads must be in \[1, 32\]; got 0\)$"),
    "a context of 2**31": ({"context_length": 2**31 - 1}, NOT_USABLE + r"seq_len must be in \[1, 1048576\]"),
    "a rotary base of 0": ({"rope.freq_base": 0.0}, NOT_USABLE + r"rope_theta must be > 0; got 0.0\)$"),
    "a negative epsilon": ({"attention.layer_norm_rms_epsilon": -1.0}, NOT_USABLE + r"norm_eps must be > 0; got -1"),
    # a valid architecture that the file's q or k rows do not have: the rotary unpermute reshaped them and failed
    "no key/value heads": ({"attention.head_count_kv": 0}, NOT_THE_WEIGHTS + r"k_proj.weight has shape \(16, 32\)"),
    "32 heads of 8": (
        {"attention.head_count": 32, "attention.head_count_kv": 32},
        NOT_THE_WEIGHTS + r"[qk]_proj.weight has shape \((32|16), 32\), expected \(256, 32\)",
    ),
}


@pytest.mark.parametrize("case", sorted(IMPOSSIBLE))
def test_a_gguf_file_stating_impossible_numbers_is_one_line(capsys, tmp_path, case):
    fields, pattern = IMPOSSIBLE[case]
    assert_user_error(capsys, ["info", "--checkpoint", str(write_gguf(tmp_path / "odd.gguf", **fields))], pattern)
    assert scorediff.load(write_gguf(tmp_path / "plain.gguf"), device="meta").model.config.n_blocks == 2


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return corpus_head(tmp_path_factory.mktemp("corpus") / "head.txt", 20_000)


def run_yaml(root: Path, corpus: Path, objective: str = "autoregressive", **train) -> Path:
    """A run of the tiny LLaMA's own shape, one step long, written as YAML (JSON is YAML)."""
    network = vars(scorediff.load(FAMILY / "tiny_llama", device="meta").model.config)
    values = {"objective": objective, "model": network,
              "data": {"source": str(corpus), "cache_dir": str(root / "cache")},
              "train": {"batch_size": 2, "max_steps": 1, "eval_every": 0, "preview_samples": 0, "compile": False,
                        "bf16": False, "eval_windows": 2, "eval_num_t": 2, **train}}  # fmt: skip
    (root / "run.yaml").write_text(json.dumps(values))
    return root / "run.yaml"


def test_lora_on_the_output_layer_trains_it(capsys, tmp_path, corpus):
    """The llama head computed with its ``linear.weight`` directly, so peft's adapter around the layer never ran: alone
    it ended in a RuntimeError traceback (nothing to differentiate), beside other targets it learnt nothing."""
    pytest.importorskip("peft")
    argv = ["train", "--config", str(run_yaml(tmp_path, corpus, max_steps=3)), "--init", str(FAMILY / "tiny_llama"),
            "--out", str(tmp_path / "runs"), "--name", "head", "--quiet", "--num-samples", "0",
            "--train.lora_rank=2", "--train.lora_targets=output_layer.linear", "--optim.warmup_steps=1"]  # fmt: skip
    code, _, err = run_cli(capsys, argv)
    assert code == 0, err
    tuned = load_file(tmp_path / "runs" / "head" / "checkpoints" / "step_00000003" / "model.safetensors")
    parent = scorediff.load(FAMILY / "tiny_llama").model.state_dict()
    assert not torch.equal(tuned["output_layer.linear.weight"], parent["output_layer.linear.weight"])
    assert torch.equal(tuned["blocks.0.self_attn.q_proj.weight"], parent["blocks.0.self_attn.q_proj.weight"])


def test_a_diffusion_model_does_not_start_an_autoregressive_run(capsys, tmp_path, corpus):
    """LLaDA (bidirectional, predicting each masked position) has the AR network's shapes when its mask row stands
    for the BOS: the run trained from it as if it were an autoregressive model."""
    out = tmp_path / "runs"
    argv = ["train", "--config", str(run_yaml(tmp_path, corpus)), "--init", str(FAMILY / "tiny_llada"), "--out",
            str(out), "--quiet", "--num-samples", "0"]  # fmt: skip
    assert_user_error(capsys, argv, r"train.init: .*tiny_llada is a diffusion model; an autoregressive run starts")
    assert not out.exists()


@pytest.mark.parametrize("target", ["config", "model"])
def test_plan_never_writes_over_what_it_reads(capsys, tmp_path, corpus, target):
    """``--json`` naming the ``--config`` file, or a file of the ``train.init`` model, replaced it with the plan."""
    config = run_yaml(tmp_path, corpus)
    model = tmp_path / "model"
    shutil.copytree(FAMILY / "tiny_llama", model)
    victim = config if target == "config" else model / "config.json"
    before = victim.read_bytes()
    argv = ["plan", "--config", str(config), f"--train.init={model}", "--json", str(victim)]
    said = (
        "--json .* is the --config file; the figures go to another" if target == "config" else "is a file of the model"
    )
    assert_user_error(capsys, argv, rf"{said}")
    assert victim.read_bytes() == before


def test_plan_refuses_an_mfu_whose_time_overflows(capsys, tmp_path):
    """``--mfu 5e-324`` printed "inf hours" and wrote ``Infinity``, which is not JSON."""
    out = tmp_path / "plan.json"
    argv = ["plan", "--config", "tiny", "--mfu", "5e-324", "--json", str(out)]
    assert_user_error(capsys, argv, r"--mfu must be at least 0.001 \(0.1% of the peak\); got 5e-324")
    assert not out.exists()
    assert run_cli(capsys, [*argv[:4], "0.001", *argv[5:]])[0] == 0
    assert json.loads(out.read_text())["mfu"] == 0.001


CONFIG_CHANGES = {
    # a config.json of one block over shards of two: the export wrote a one-block model, block 1 silently lost
    "one block fewer": ("n_blocks", 1, r"the shards of .* hold model.blocks.1.\S+, which the network of its"),
    # wider: the read failed inside DCP, and only after the whole network was built (65,536 wide: 400 GB asked for
    # first); the network is built on the meta device and compared before anything is allocated
    "far wider": ("hidden_size", 65536, r"the shards of .* do not fit the network of its config.json: its \S+ is of"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CHANGES))
def test_export_refuses_a_config_whose_network_is_not_the_shards(capsys, tmp_path, shards_only, case):
    key, value, pattern = CONFIG_CHANGES[case]
    folder = tmp_path / "step_00000001"
    shutil.copytree(shards_only, folder)
    values = json.loads((folder / "config.json").read_text())
    values["model"][key] = value
    (folder / "config.json").write_text(json.dumps(values))
    assert_user_error(capsys, ["export", str(folder)], pattern)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "sharded", "tokenizer.json",
                                                        "trainer_state.json"]  # fmt: skip


@pytest.fixture(scope="module")
def parent_run(tmp_path_factory, corpus) -> Path:
    root = tmp_path_factory.mktemp("parent")
    argv = ["train", "--config", str(run_yaml(root, corpus)), "--init", str(FAMILY / "tiny_llama"), "--out",
            str(root / "runs"), "--name", "parent", "--quiet", "--num-samples", "0"]  # fmt: skip
    from scorediff.cli import main

    assert main(argv) == 0
    return root / "runs" / "parent"


DAMAGED_STATE = {  # trainer_state.json edited by hand: each escaped from resume as a KeyError or TypeError
    "no tokens_seen": (lambda s: s.pop("tokens_seen"), r"tokens_seen"),
    "a step in quotes": (lambda s: s.update(step="1"), r"step"),
    "no optimizer": (lambda s: s.pop("optimizer"), r"optimizer"),
    "elapsed_seconds a text": (lambda s: s.update(elapsed_seconds="x"), r"elapsed_seconds"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_STATE))
def test_resume_refuses_a_damaged_trainer_state(capsys, tmp_path, parent_run, damage):
    run = tmp_path / "run"
    shutil.copytree(parent_run, run)
    state_file = run / "checkpoints" / "step_00000001" / "trainer_state.json"
    harm, field = DAMAGED_STATE[damage]
    state = json.loads(state_file.read_text())
    harm(state)
    state_file.write_text(json.dumps(state))
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    argv = ["train", "--resume", str(run), "--quiet", "--num-samples", "0", "--train.max_steps=2"]
    assert_user_error(capsys, argv, rf"cannot resume .*trainer_state.json: .*{field}")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


def test_sample_prompts_refuses_more_samples(capsys, tmp_path):
    """``--num-samples 3`` beside ``--prompts`` was silently one answer per prompt."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    argv = ["sample", "--checkpoint", str(FAMILY / "tiny_llama"), "--prompts", str(prompts), "--length", "8"]
    assert_user_error(capsys, [*argv, "--num-samples", "3"], r"--num-samples applies without --prompts")
    code, out, err = run_cli(capsys, [*argv, "--num-samples", "1"])
    assert code == 0 and len(out.splitlines()) == 1, err


def test_generate_refuses_given_tokens_outside_the_vocabulary():
    """A given token of id 999 for a model of 100 ended in torch's IndexError ("index out of range in self")."""
    loaded = scorediff.load(FAMILY / "tiny_llama")
    tokens, given = torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.bool)
    tokens[0, 0], given[0, 0] = 999, True
    with pytest.raises(scorediff.InputError, match=r"condition tokens must be in \[0, 100\) where given; got 999"):
        scorediff.generate(loaded.objective, loaded.model, (1, 8), condition=(tokens, given), seed=0)
    tokens[0, 1] = 999  # not given: any value, the model writes it
    tokens[0, 0] = 5
    drawn = scorediff.generate(loaded.objective, loaded.model, (1, 8), condition=(tokens, given), seed=0)
    assert drawn.tokens[0, 0] == 5


@pytest.mark.parametrize("fields", [{"hidden_size": 0}, {"arch": "gpt"}, {"arch": "llama", "rope_theta": 0.0}])
def test_a_model_config_out_of_range_is_the_packages_error(fields):
    """The public ``ModelConfig`` raised a plain ValueError from its range checks, not ``scorediff.InputError``."""
    with pytest.raises(scorediff.InputError):
        ModelConfig(**fields)


def test_the_converters_take_a_path_as_text_and_a_dtype_by_name():
    """``read_published`` of a folder given as text escaped as a TypeError (``str / str``), ``read_gguf`` with
    ``dtype="float16"`` as torch's TypeError from ``Tensor.to``, a config.json that is a list as an AttributeError."""
    folder = FAMILY / "tiny_llama"
    config = json.loads((folder / "config.json").read_text())
    name, network, _ = read_published(str(folder), config, dtype="bfloat16")
    assert name == hf_llama.NAME and {p.dtype for p in network.parameters()} == {torch.bfloat16}
    with pytest.raises(CheckpointError, match=r"config.json must hold a JSON object; got list"):
        read_published(folder, [config])
    with pytest.raises(scorediff.InputError, match=r"dtype must be one of float32, .*; got 'half'"):
        read_published(folder, config, dtype="half")
    pytest.importorskip("gguf")
    network, _, _ = read_gguf(str(FAMILY / "tiny_llama.gguf"), dtype="float16")
    assert {p.dtype for p in network.parameters()} == {torch.float16}
