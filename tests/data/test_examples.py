"""Prompted examples from JSONL: one example per row, the prompt given, answers padded, split by example."""

import json

import pytest
import torch

from scorediff.data.examples import ExampleSet, example_format, example_splits, read_examples
from scorediff.data.prepare import build_tokenizer
from scorediff.data.sources import DataError


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_text_examples_give_the_prompt_and_pad_the_answer(tmp_path):
    spec = write(tmp_path / "rev.jsonl", [{"prompt": "ab=", "answer": "ba"}, {"prompt": "abc=", "answer": "cba"}])
    assert example_format(spec) == "text"
    tokenizer = build_tokenizer("char", spec)
    assert set(tokenizer.chars) == set("abc=\n")  # learnt from prompts and answers, plus a newline
    tokens, given = read_examples(spec, tokenizer, seq_len=8)
    end = tokenizer.end_id
    assert tokens[0, 5:].tolist() == [end] * 3 and tokens[1, 7:].tolist() == [end]  # answers end with the end token
    assert tokenizer.decode(tokens[0].tolist()) == "ab=ba" and tokenizer.decode(tokens[1].tolist()) == "abc=cba"
    assert given.tolist() == [[True] * 3 + [False] * 5, [True] * 4 + [False] * 4]
    with pytest.raises(DataError, match=r"rev.jsonl:2: the prompt and answer take 7 tokens; the model's context is 6"):
        read_examples(spec, tokenizer, seq_len=6)
    same = write(tmp_path / "rev.json", [{"prompt": "ab=", "answer": "ba"}, {"prompt": "abc=", "answer": "cba"}])
    assert example_format(same) == "text"  # JSON Lines named .json, as datasets' to_json names it
    assert torch.equal(read_examples(same, tokenizer, seq_len=8)[0], tokens)


def test_token_examples_over_a_declared_vocabulary(tmp_path):
    records = [{"tokens": [3, 1, 1, 3], "given": [True, True, False, False]}] * 3
    spec = write(tmp_path / "sort.jsonl", records)
    assert example_format(spec) == "tokens"
    with pytest.raises(DataError, match="--data.num_tokens"):
        build_tokenizer("char", spec)
    tokenizer = build_tokenizer("char", spec, num_tokens=4)
    tokens, given = read_examples(spec, tokenizer, seq_len=4)
    assert tokens.tolist() == [[3, 1, 1, 3]] * 3 and given[:, :2].all() and not given[:, 2:].any()
    with pytest.raises(DataError, match=r"sort.jsonl:1: token 3 is outside the declared vocabulary 0..2"):
        read_examples(spec, build_tokenizer("char", spec, num_tokens=3), seq_len=4)
    with pytest.raises(DataError, match="must fill model.seq_len=5"):
        read_examples(spec, tokenizer, seq_len=5)


@pytest.mark.parametrize(
    "record, message",
    [
        ({"prompt": "a", "answer": 3}, "needs string fields 'prompt' and 'answer'"),
        ({"prompt": "a"}, "needs string fields 'prompt' and 'answer'"),
    ],
)
def test_a_record_without_the_declared_fields_is_named(tmp_path, record, message):
    spec = write(tmp_path / "bad.jsonl", [{"prompt": "ab", "answer": "b"}, record])
    with pytest.raises(DataError, match=f"bad.jsonl:2 {message}"):
        read_examples(spec, build_tokenizer("char", spec), seq_len=8)


def test_the_split_is_by_example_and_batches_keep_rows_whole(tmp_path):
    records = [{"prompt": f"{i:03d}=", "answer": f"{i * 7 % 1000:03d}"} for i in range(200)]
    spec = write(tmp_path / "mul.jsonl", records)
    tokenizer = build_tokenizer("char", spec)
    train, val = example_splits(spec, tokenizer, 8, val_fraction=0.1)
    assert (len(train), len(val)) == (180, 20)
    seen = {tuple(row.tolist()) for row in train.tokens}
    assert not seen & {tuple(row.tolist()) for row in val.tokens}  # no example on both sides
    again = example_splits(spec, tokenizer, 8, val_fraction=0.1)[1]
    assert torch.equal(again.tokens, val.tokens)  # the same split every time
    batch = train.random_examples(64, torch.Generator().manual_seed(0))
    assert {tuple(row.tolist()) for row in batch["x_0"]} <= seen and batch["given"][:, :4].all()
    assert isinstance(train, ExampleSet) and len(val.spread_examples(7)["x_0"]) == 7


def test_a_multi_line_answer_keeps_its_newlines_and_old_tokenizers_pad_as_before(tmp_path):
    spec = write(tmp_path / "poem.jsonl", [{"prompt": "q=", "answer": "a\nb"}, {"prompt": "q=", "answer": "b"}])
    tokenizer = build_tokenizer("char", spec)
    tokens, _ = read_examples(spec, tokenizer, seq_len=7)
    newline, end = tokenizer.encode("\n")[0], tokenizer.end_id
    assert tokens[0, 2:].tolist() == [*tokenizer.encode("a"), newline, *tokenizer.encode("b"), end, end]
    old = tmp_path / "old"
    old.mkdir()
    (old / "tokenizer.json").write_text(json.dumps({"type": "char", "chars": "\n=abq"}))  # saved before end tokens
    tokens, _ = read_examples(spec, build_tokenizer(str(old / "tokenizer.json"), spec), seq_len=7)
    assert tokens[1].tolist() == [4, 1, 3, 0, 0, 0, 0]  # "q=b" padded with newlines, as such models were trained
