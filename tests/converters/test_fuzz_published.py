"""Property tests (hypothesis) of the published-model loaders' promise on bad input: a LLaMA-family folder whose
config.json has one or two of the fields the converters read replaced by any JSON value, or a GGUF file with one
metadata value replaced (any type, any value, or removed), either loads or is refused with a ``ScorediffError`` of
one line; ``scorediff info`` answers it with exit code 0, or 2 and one line on stderr. Never another exception.
A size, flag, token id or real number of another JSON type is refused by name rather than read as another value.
The explicit examples are what hypothesis found, each a traceback or a silent misreading before its fix."""

import json
import re
import shutil
from pathlib import Path

import pytest
from cli.cli_run import run_cli
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import scorediff
from scorediff.checkpoint import CheckpointError
from scorediff.errors import ScorediffError

FAMILY = Path(__file__).parents[1] / "fixtures" / "llama_family"
GGUF_ARCHITECTURES = ("llama", "qwen2", "qwen3")

# The keys hf_llama.shape and bos_token read (Dream's through them too); a dotted key is one inside an object.
TRANSFORMERS_KEYS = [
    "model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "head_dim", "intermediate_size", "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_parameters",
    "rope_parameters.rope_theta", "rope_parameters.rope_type", "rope_scaling", "rope_scaling.type",
    "tie_word_embeddings", "hidden_act", "use_sliding_window", "mlp_bias", "attention_bias",
    "bos_token_id", "eos_token_id",
]  # fmt: skip
LLADA_KEYS = [
    "model_type", "embedding_size", "vocab_size", "d_model", "n_heads", "n_kv_heads", "multi_query_attention",
    "n_layers", "mlp_hidden_size", "mlp_ratio", "max_sequence_length", "rope_theta", "rms_norm_eps", "weight_tying",
    "include_qkv_bias", "bias_for_layer_norm", "block_type", "layer_norm_type", "activation_type", "rope", "alibi",
    "include_bias", "scale_logits", "block_group_size", "mask_token_id", "eos_token_id",
]  # fmt: skip
KEYS = {
    "llama": TRANSFORMERS_KEYS,
    "smollm2": TRANSFORMERS_KEYS,
    "qwen2": TRANSFORMERS_KEYS,
    "qwen3": TRANSFORMERS_KEYS,
    "dream": [*TRANSFORMERS_KEYS, "mask_token_id"],
    "llada": LLADA_KEYS,
}

# Python's json reads NaN, Infinity and integers of up to 4,300 digits, so a config.json may hold them. A third of
# the values drawn are these edges, which plain strategies seldom draw (an integer past float's range, "false").
EDGES = st.sampled_from([
    None, True, False, 0, 1, -1, 2, 8, 90, 99, 100, 2**31, 2**63, 10**400, -(10**400), 0.5, 32.0, 1e-300, 1e308,
    -0.0, float("nan"), float("inf"), float("-inf"), "", "1", "32", "false", "default", "linear", "silu", [], {},
])  # fmt: skip
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
OBJECT_KEYS = st.sampled_from(["rope_theta", "rope_type", "type", "factor"]) | st.text(max_size=6)
CONTAINERS = st.recursive(
    EDGES | SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(OBJECT_KEYS, children, max_size=3),
    max_leaves=4,
)
JSON = st.one_of(EDGES, SCALARS, CONTAINERS)


def loads_or_one_line(path: Path):
    """The model ``scorediff.load`` reads from ``path`` on the meta device, or None after a one-line refusal."""
    try:
        return scorediff.load(path, device="meta")
    except ScorediffError as error:
        message = str(error)
        assert message.strip() and "\n" not in message, message
        return None


def garbled(folder: Path, name: str, fields: dict) -> Path:
    """``folder``, a fresh copy of ``tiny_<name>`` whose config.json has each (dotted) key of ``fields`` set."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(FAMILY / f"tiny_{name}", folder)
    config = json.loads((folder / "config.json").read_text())
    for key, value in fields.items():
        *outer, last = key.split(".")
        target = config
        for part in outer:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[last] = value
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@st.composite
def config_fields(draw) -> tuple[str, dict]:
    """A fixture's name and one or two of the keys its converter reads, each with any JSON value."""
    name = draw(st.sampled_from(sorted(KEYS)))
    keys = draw(st.permutations(KEYS[name]))[: draw(st.integers(1, 2))]
    return name, {key: draw(JSON) for key in keys}


# tmp_path is shared by a test's examples: each writes its folder or file afresh
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(SETTINGS, max_examples=1000)
@given(config_fields())
# an integer past float's range (OverflowError from float(), in a size, epsilon or rotary base) and an infinite
# mlp_ratio (OverflowError from int()) escaped as tracebacks
@example(("dream", {"vocab_size": 10**400}))
@example(("llama", {"rms_norm_eps": -(10**400)}))
@example(("qwen2", {"rope_parameters.rope_theta": 10**400}))
@example(("llada", {"mlp_hidden_size": None, "mlp_ratio": float("inf")}))
def test_a_garbled_config_loads_or_is_one_line(tmp_path, case):
    name, fields = case
    loads_or_one_line(garbled(tmp_path / "model", name, fields))


# The keys each converter reads whatever else the file says (LLaDA's mlp_ratio, say, is read only without an
# mlp_hidden_size), by the JSON type they hold: a value of another type is refused by name, never coerced
# (bool("false") is True, int(1.5) is 1, float("1e-5") reads a text).
TYPED = {
    "llama": {
        "size": ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                 "head_dim", "intermediate_size", "max_position_embeddings"],
        "flag": ["tie_word_embeddings", "use_sliding_window", "mlp_bias", "attention_bias"],
        "id": ["bos_token_id"],
        "number": ["rms_norm_eps", "rope_parameters.rope_theta"],
    },
    "dream": {
        "size": ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                 "head_dim", "intermediate_size", "max_position_embeddings"],
        "flag": ["tie_word_embeddings", "use_sliding_window", "mlp_bias"],
        "id": ["mask_token_id"],
        "number": ["rms_norm_eps", "rope_theta"],
    },
    "llada": {
        "size": ["d_model", "n_heads", "n_kv_heads", "n_layers", "embedding_size", "mlp_hidden_size",
                 "max_sequence_length"],
        "flag": ["weight_tying", "include_qkv_bias", "multi_query_attention", "bias_for_layer_norm"],
        "id": ["mask_token_id"],
        "number": ["rms_norm_eps", "rope_theta"],
    },
}  # fmt: skip
NOT_A_NUMBER = st.one_of(
    st.booleans(),
    st.text(max_size=8),
    st.sampled_from(["1", "32", "1e-5", "nan"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
FRACTIONS = st.floats().filter(lambda value: not value.is_integer())  # NaN and the infinities too
WRONG = {
    "size": NOT_A_NUMBER | FRACTIONS | st.integers(max_value=-1),  # 0 stands for the default
    "id": NOT_A_NUMBER | FRACTIONS | st.integers(max_value=-1),
    "number": NOT_A_NUMBER | st.sampled_from([float("nan"), float("inf"), float("-inf"), 10**400]),
    "flag": NOT_A_NUMBER.filter(lambda value: not isinstance(value, bool)) | st.integers() | st.floats(),
}


@st.composite
def wrong_field(draw) -> tuple[str, str, object]:
    """A fixture's name, a key its converter reads and a value of a type that key cannot hold."""
    name = draw(st.sampled_from(sorted(TYPED)))
    kind = draw(st.sampled_from(sorted(TYPED[name])))
    return name, draw(st.sampled_from(TYPED[name][kind])), draw(WRONG[kind])


@settings(SETTINGS, max_examples=300)
@given(wrong_field())
# each was read as another value than the file states: a fraction, false or a text as a token id, a falsy non-number
# as an absent size (the default), "false" as true (one key/value head); or refused without naming its key
@example(("llada", "mask_token_id", 1.5))
@example(("dream", "mask_token_id", False))
@example(("llama", "bos_token_id", "1"))
@example(("llama", "bos_token_id", []))
@example(("llama", "head_dim", False))
@example(("llada", "embedding_size", ""))
@example(("llada", "multi_query_attention", "false"))
@example(("llama", "use_sliding_window", "false"))
@example(("dream", "mask_token_id", ""))
def test_a_value_of_the_wrong_type_is_refused_by_name(tmp_path, case):
    name, key, value = case
    with pytest.raises(ScorediffError) as refusal:
        scorediff.load(garbled(tmp_path / "model", name, {key: value}), device="meta")
    message = str(refusal.value)
    assert key.split(".")[-1] in message and "\n" not in message, message


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


@pytest.mark.parametrize("field", [{"rope": 1}, {"alibi": 0}, {"block_type": ["llama"]}])
def test_a_llada_setting_is_its_json_value_not_an_equal_one(tmp_path, field):
    """``rope: 1`` passed as ``rope: true`` (1 == True in Python), a number where the file format has a flag."""
    key, value = next(iter(field.items()))
    with pytest.raises(CheckpointError, match=re.escape(f"this LLaDA model sets {key}={value!r}; scorediff converts")):
        scorediff.load(garbled(tmp_path / "llada", "llada", field), device="meta")
