"""Property tests (hypothesis): tokenizers round-trip, the override parser coerces exactly or refuses with a
ConfigError, and the command line answers any argument list with a result or one line and exit code 2."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scorediff.cli import main
from scorediff.config import ConfigError, load_config
from scorediff.data import ByteTokenizer, CharTokenizer, HFTokenizer

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
