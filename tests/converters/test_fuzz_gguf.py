"""Property tests (hypothesis) of the GGUF loader's promise on bad input: a GGUF file with one metadata value
replaced (any type, any value, or removed) either loads or is refused with a ``ScorediffError`` of one line;
``scorediff info`` answers a garbled GGUF file or folder with exit code 0, or 2 and one line on stderr. The explicit
examples are what hypothesis found, each a traceback or a silent misreading before its fix."""

import json
from pathlib import Path

import pytest
from cli.cli_run import run_cli
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_fuzz_published import FAMILY, GGUF_ARCHITECTURES, SETTINGS, config_fields, garbled, loads_or_one_line

import scorediff
from scorediff.checkpoint import CheckpointError
from scorediff.errors import ScorediffError


def gguf_file(
    path: Path, architecture: str, key: str | None = None, value: tuple | None = None, also: dict | None = None
) -> Path:
    """``tiny_<architecture>.gguf`` rewritten at ``path`` with a byte-level BPE tokenizer (tiny_llama's tokens and
    merges, as ``gguf_tokenizer`` reads one) and the metadata ``key`` set to ``value``, ``(type, value, sub_type)``
    with the gguf package's type names (``("ARRAY", [0], "UINT8")``), or removed when ``value`` is None; ``also``
    maps more keys to their values so."""
    gguf = pytest.importorskip("gguf")  # the eval extra
    kinds = gguf.GGUFValueType
    reader = gguf.GGUFReader(str(FAMILY / f"tiny_{architecture}.gguf"))
    spec = json.loads((FAMILY / "tiny_llama" / "tokenizer.json").read_text())
    tokens = sorted(spec["model"]["vocab"], key=spec["model"]["vocab"].get)
    specials = {token["content"] for token in spec["added_tokens"] if token["special"]}
    fields = {
        name: (field.types[0], field.contents(), field.types[-1] if field.types[0] == kinds.ARRAY else None)
        for name, field in reader.fields.items()
        if not name.startswith("GGUF.")
    }
    fields |= {
        "tokenizer.ggml.model": (kinds.STRING, "gpt2", None),
        "tokenizer.ggml.pre": (kinds.STRING, "smollm", None),
        "tokenizer.ggml.tokens": (kinds.ARRAY, tokens, kinds.STRING),
        "tokenizer.ggml.merges": (kinds.ARRAY, [" ".join(pair) for pair in spec["model"]["merges"]], kinds.STRING),
        "tokenizer.ggml.token_type": (kinds.ARRAY, [3 if t in specials else 1 for t in tokens], kinds.INT32),
        "tokenizer.ggml.eos_token_id": (kinds.UINT32, 1, None),
    }
    for name, changed in (({key: value} if key is not None else {}) | (also or {})).items():
        fields.pop(name, None)
        if changed is not None:
            kind, contents, sub_type = changed
            fields[name] = (kinds[kind], contents, None if sub_type is None else kinds[sub_type])
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.kv_data[0].clear()  # general.architecture as fields states it, or not at all
    for name, (kind, contents, sub_type) in fields.items():
        writer.add_key_value(name, contents, kind, sub_type=sub_type)
    for tensor in reader.tensors:  # copied as stored (Q8_0, F16, F32)
        writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.n_bytes, tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data)
    writer.close()
    return path


def test_the_rewritten_gguf_files_load_with_their_tokenizer(tmp_path):
    """The base of the GGUF property: each file loads, with the tokenizer gguf_file adds."""
    for architecture in GGUF_ARCHITECTURES:
        loaded = scorediff.load(gguf_file(tmp_path / f"{architecture}.gguf", architecture), device="meta")
        assert loaded.model.config.n_blocks == 2 and loaded.tokenizer.vocab_size == 100
        assert loaded.tokenizer.decode(loaded.tokenizer.encode("tobeornot")) == "tobeornot"  # no "Ġ" (space) token


GGUF_NUMBERS = [
    "block_count", "context_length", "embedding_length", "feed_forward_length", "attention.head_count",
    "attention.head_count_kv", "attention.key_length", "rope.freq_base", "attention.layer_norm_rms_epsilon",
]  # fmt: skip
GGUF_OTHERS = [
    "general.architecture", "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
    "tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id", "tokenizer.chat_template",
]  # fmt: skip
INTEGER_RANGES = {  # the gguf package's integer types, by their bits and sign
    "UINT8": (0, 2**8 - 1), "INT8": (-(2**7), 2**7 - 1), "UINT16": (0, 2**16 - 1), "INT16": (-(2**15), 2**15 - 1),
    "UINT32": (0, 2**32 - 1), "INT32": (-(2**31), 2**31 - 1), "UINT64": (0, 2**64 - 1), "INT64": (-(2**63), 2**63 - 1),
}  # fmt: skip
GGUF_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12) | st.sampled_from(
    ["", "gpt2", "smollm", "llama", "qwen2", "llama-bpe", "<|endoftext|>", "a b", "{{ messages }}", "{% if %}"]
)


GGUF_SCALARS = {name: st.integers(low, high) for name, (low, high) in INTEGER_RANGES.items()} | {
    "FLOAT32": st.floats(width=32),
    "FLOAT64": st.floats(),
    "BOOL": st.booleans(),
    "STRING": GGUF_TEXT,
}


@st.composite
def gguf_value(draw) -> tuple | None:
    """A metadata value of any type the gguf package writes, as ``(type, value, sub_type)``; None: the key removed."""
    kind = draw(st.sampled_from([None, "ARRAY", *GGUF_SCALARS]))
    if kind is None:
        return None
    if kind != "ARRAY":
        return kind, draw(GGUF_SCALARS[kind]), None
    sub_type = draw(st.sampled_from(sorted(GGUF_SCALARS)))
    return kind, draw(st.lists(GGUF_SCALARS[sub_type], min_size=1, max_size=4)), sub_type  # the writer refuses []


@st.composite
def gguf_field(draw) -> tuple[str, str, tuple | None]:
    """An architecture, one metadata key its file is read by, and a value for it."""
    architecture = draw(st.sampled_from(GGUF_ARCHITECTURES))
    key = draw(st.sampled_from([f"{architecture}.{name}" for name in GGUF_NUMBERS] + GGUF_OTHERS))
    return architecture, key, draw(gguf_value())


@settings(SETTINGS, max_examples=400)
@given(gguf_field())
# each escaped as a traceback: a BOS id that is a list or a text (int()), tokens or merges missing, of another type
# or not matching (the tokenizers library's own exception), token types fewer than the tokens (zip)
@example(("llama", "tokenizer.ggml.bos_token_id", ("ARRAY", [0], "UINT8")))
@example(("qwen2", "tokenizer.ggml.bos_token_id", ("STRING", "", None)))
@example(("llama", "tokenizer.ggml.tokens", None))
@example(("qwen3", "tokenizer.ggml.tokens", ("UINT32", 5, None)))
@example(("llama", "tokenizer.ggml.tokens", ("ARRAY", ["a"], "STRING")))
@example(("llama", "tokenizer.ggml.merges", None))
@example(("qwen2", "tokenizer.ggml.merges", ("ARRAY", [0], "UINT8")))
@example(("llama", "tokenizer.ggml.token_type", ("ARRAY", [1], "INT32")))
def test_a_garbled_gguf_field_loads_or_is_one_line(tmp_path, case):
    architecture, key, value = case
    loads_or_one_line(gguf_file(tmp_path / "model.gguf", architecture, key, value))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("llama.embedding_length", ("FLOAT32", 32.5, None)),  # int() cut it to 32
        ("llama.embedding_length", ("STRING", "32", None)),  # int() read a text as a number
        ("llama.block_count", ("BOOL", True, None)),  # int(True) is 1
        ("llama.rope.freq_base", ("STRING", "1e4", None)),  # float() read a text as a number
        ("tokenizer.ggml.bos_token_id", ("FLOAT32", 1.5, None)),  # int() cut it to 1
    ],
)
def test_a_gguf_number_of_another_type_is_refused_by_name(tmp_path, key, value):
    with pytest.raises(ScorediffError, match=rf"^[^\n]*is not a usable GGUF .*\({key} must be a [^\n]*; got "):
        scorediff.load(gguf_file(tmp_path / "odd.gguf", "llama", key, value), device="meta")


@settings(SETTINGS, max_examples=60)
@given(st.one_of(config_fields(), gguf_field()))
def test_info_answers_a_garbled_model_with_its_facts_or_one_line(capsys, tmp_path, case):
    """``scorediff info`` on a garbled folder or GGUF file: exit code 0 and its facts, or 2 and one stderr line."""
    if len(case) == 2:  # (fixture, config.json fields)
        path = garbled(tmp_path / "model", *case)
    else:  # (architecture, metadata key, value)
        path = gguf_file(tmp_path / "model.gguf", *case)
    code, out, err = run_cli(capsys, ["info", "--checkpoint", str(path)])
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 0:
        assert out.startswith("checkpoint ") and "parameters " in out, out
    else:
        assert len(err.strip().splitlines()) == 1 and not out, err


def test_a_gguf_tokenizer_with_more_tokens_than_embedding_rows_is_refused(tmp_path):
    """Five tokens past the 100 embedding rows loaded, and text holding one of them failed inside the embedding."""
    spec = json.loads((FAMILY / "tiny_llama" / "tokenizer.json").read_text())
    tokens = [*sorted(spec["model"]["vocab"], key=spec["model"]["vocab"].get), *(f"extra{i}" for i in range(5))]
    more = {
        "tokenizer.ggml.tokens": ("ARRAY", tokens, "STRING"),
        "tokenizer.ggml.token_type": ("ARRAY", [1] * 105, "INT32"),
    }
    path = gguf_file(tmp_path / "more.gguf", "llama", also=more)
    with pytest.raises(
        CheckpointError, match=r"more.gguf carries a tokenizer of 105 tokens for an embedding of 100 rows"
    ):
        scorediff.load(path, device="meta")
