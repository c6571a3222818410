"""Property tests (hypothesis): tokenizers round-trip, the override parser coerces exactly or refuses with a
ConfigError, and the command line answers any argument list with a result or one line and exit code 2."""

import argparse
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scorediff.checkpoint import CheckpointError
from scorediff.cli import main
from scorediff.commands import seed_value
from scorediff.config import ConfigError, load_config
from scorediff.data import ByteTokenizer, CharTokenizer, HFTokenizer
from scorediff.errors import InputError
from scorediff.hub import check_revision
from scorediff.templates import parse_template

TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=200)  # valid Unicode (no lone surrogates)


@given(TEXT)
def test_byte_and_char_tokenizers_round_trip(text):
    assert ByteTokenizer().decode(ByteTokenizer().encode(text)) == text
    tokenizer = CharTokenizer.from_texts([text])
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.fixture(scope="module")
def bpe():
    corpus = ["the quick brown fox jumps over the lazy dog " * 20, "café naïve 東京 🙂 " * 10]
    return HFTokenizer.train_bpe(corpus, vocab_size=300)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(TEXT)
def test_byte_level_bpe_round_trips_any_text(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


@given(st.integers(min_value=1, max_value=10**30))
def test_integers_are_coerced_exactly(number):
    if number > 2**63 - 1:
        with pytest.raises(ConfigError, match=r"train.seed must be in"):
            load_config("tiny", [f"train.seed={number}"])
    else:
        assert load_config("tiny", [f"train.seed={number}"]).train.seed == number


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_floats_are_finite_or_refused(value):
    try:
        config = load_config("tiny", [f"optim.weight_decay={value!r}"])
    except ConfigError as error:
        assert "optim.weight_decay" in str(error)
    else:
        assert config.optim.weight_decay == value


@given(st.text(max_size=40))
def test_any_override_text_is_a_value_or_a_config_error(text):
    for key in ("train.max_steps", "train.bf16", "optim.lr", "data.tokenizer", "model.seq_len"):
        try:
            load_config("tiny", [f"{key}={text}"])
        except ConfigError:
            pass


FLAGS = ["--checkpoint", "--steps", "--length", "--num-samples", "--top-p", "--temperature", "--predictor", "--seed"]
WORDS = st.one_of(
    st.sampled_from(FLAGS), st.sampled_from(["-1", "0", "1e9", "nan", "x", "", "analytic"]), st.text(max_size=8)
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["sample", "infill", "eval", "info"]), st.lists(WORDS, max_size=6))
def test_the_command_line_never_raises(capsys, command, words):
    try:
        code = main([command, "--checkpoint", "/nonexistent/run", *words])
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1


@given(st.text(max_size=30))
def test_a_hub_revision_is_a_ref_name_or_refused(revision):
    """Any text after ``@``: accepted only if it cannot leave the repository's refs (no ``..`` part, no leading or
    doubled ``/``, no backslash), else one line."""
    try:
        check_revision("org/name", revision)
    except CheckpointError as error:
        assert "\n" not in str(error) and str(error).startswith("org/name: expected a branch, tag or commit name")
    else:
        parts = revision.split("/")
        assert all(parts) or not revision  # empty: no revision at all (the main branch)
        assert ".." not in revision and "\\" not in revision
        assert not any(part in (".", "..") for part in parts)


MASK_TEXT = st.lists(st.one_of(st.text("ab ~", max_size=6), st.from_regex(r"\[MASK(:[0-9]{0,12})?\]", fullmatch=True)))


@given(MASK_TEXT.map("".join), st.integers(1, 40))
def test_a_template_is_tokens_within_the_context_or_one_line(template, context):
    tokenizer = CharTokenizer.from_texts(["ab "])
    try:
        tokens, given_mask = parse_template(template, tokenizer, context)
    except InputError as error:
        assert "\n" not in str(error)
    else:
        assert len(tokens) == len(given_mask) <= context and not all(given_mask)


@given(st.one_of(st.integers(-(2**80), 2**80).map(str), st.text(max_size=12)))
def test_a_seed_flag_is_64_bits_or_refused(text):
    try:
        value = seed_value(text)
    except argparse.ArgumentTypeError as error:
        assert str(error).startswith("expected a whole number in [0, 2**63 - 1]")
    else:
        assert 0 <= value <= 2**63 - 1 and value == int(text)


CHAT_TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} [end]{% endfor %}"
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["role", "content", "x"]), inner),
    max_leaves=12,
)
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "tool"]),
                                 "content": st.text("abc .", max_size=20)})  # fmt: skip


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=60)
@given(st.one_of(JSON_VALUES, st.lists(MESSAGE, max_size=5)))
def test_a_messages_record_is_rows_or_one_line(tmp_path, messages):
    """Whatever a ``messages`` field holds, reading the file gives rows whose answer is not given, or one
    ``DataError`` line (the file's name and line)."""
    import json
    from pathlib import Path

    from scorediff.data.chat import ChatTemplate
    from scorediff.data.examples import read_examples
    from scorediff.data.sources import DataError
    from scorediff.data.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(Path(__file__).parent / "fixtures" / "llama_family" / "tiny_llama")
    tokenizer.chat = ChatTemplate(CHAT_TEMPLATE)
    spec = tmp_path / "chat.jsonl"
    spec.write_text(json.dumps({"messages": messages}) + "\n")
    try:
        tokens, given = read_examples(str(spec), tokenizer, 64)
    except DataError as error:
        assert "\n" not in str(error) and str(error).startswith(f"{spec}:1")
    else:
        assert tokens.shape == given.shape == (1, 64) and given[0, 0] and not given[0, -1]


ANY_TEXT = st.text(max_size=30)  # quotes, backslashes, control characters, lone surrogates: each escapes its own way
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(ANY_TEXT, inner, max_size=4)
        | st.frozensets(st.integers() | ANY_TEXT, max_size=4)
    ),
    max_leaves=30,
)


@given(VALUES)
def test_a_chat_templates_written_size_is_never_below_the_written_text(value):
    """The sandbox refuses what would write past its bound by a count taken without writing: that count must be at
    least what ``str`` (the output, ``~``, ``string``) and JSON (``tojson``) would write, whatever the value holds."""
    from jinja2.utils import Namespace

    from scorediff.data.template_sizes import _written_size

    for held in (value, [value, value], Namespace(x=value)):
        assert _written_size(held) >= len(str(held))
    try:
        written = json.dumps([value], ensure_ascii=False)  # in a list: a text alone is written as it is, unquoted
    except (TypeError, ValueError):  # bytes, sets, non-text keys: tojson refuses them as json does
        return
    assert _written_size([value]) >= len(written)


RECORD = st.text(st.sampled_from(["a", "é", "\n", '"', "\ud800", "\U0001f600"]), max_size=8).map(
    lambda text: json.dumps({"text": text})  # a lone "\ud800" is written escaped, as JSON writes it
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=80)
@given(st.lists(st.one_of(RECORD, JSON_VALUES.map(json.dumps), st.text(max_size=20)), min_size=1, max_size=4))
def test_a_json_file_is_its_records_texts_or_one_line(tmp_path, lines):
    """A ``.json`` data file is JSON Lines: whatever its lines hold (records, other JSON, any text, a lone surrogate
    escaped), reading it gives each record's text, or one ``DataError`` line that names the file."""
    from scorediff.data import iter_text
    from scorediff.data.sources import DataError

    spec = tmp_path / "data.json"
    spec.write_text("\n".join(line.replace("\n", " ") for line in lines) + "\n", encoding="utf-8", errors="replace")
    try:
        pieces = list(iter_text(str(spec)))
    except DataError as error:
        assert "\n" not in str(error) and str(spec) in str(error)
    else:
        records = [json.loads(line) for line in spec.read_text().splitlines() if line.strip()]
        assert [p for p in pieces if p is not None] == [r["text"] for r in records]
