"""Property tests (hypothesis) of the published-model loaders' promise on bad input: a LLaMA-family folder whose
config.json has one or two of the fields the converters read replaced by any JSON value either loads or is refused
with a ``ScorediffError`` of one line, never another exception (GGUF files and ``scorediff info``:
test_fuzz_gguf.py).
A size, flag, token id or real number of another JSON type is refused by name rather than read as another value.
The explicit examples are what hypothesis found, each a traceback or a silent misreading before its fix."""

import json
import re
import shutil
from pathlib import Path

import pytest
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
    """The model ``scorediff.load`` reads from ``path`` on the meta device, or None after a one-line refusal that
    names the file or folder (with many models on disk, a key alone does not say which is garbled)."""
    try:
        return scorediff.load(path, device="meta")
    except ScorediffError as error:
        message = str(error)
        assert message.strip() and "\n" not in message and str(path) in message, message
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


@pytest.mark.parametrize("field", [{"rope": 1}, {"alibi": 0}, {"block_type": ["llama"]}])
def test_a_llada_setting_is_its_json_value_not_an_equal_one(tmp_path, field):
    """``rope: 1`` passed as ``rope: true`` (1 == True in Python), a number where the file format has a flag."""
    key, value = next(iter(field.items()))
    with pytest.raises(CheckpointError, match=re.escape(f"this LLaDA model sets {key}={value!r}; scorediff converts")):
        scorediff.load(garbled(tmp_path / "llada", "llada", field), device="meta")
