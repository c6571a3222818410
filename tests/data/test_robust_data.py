"""Long lines stream, and several processes filling the shard cache at once never see a half-written shard."""

import multiprocessing

import numpy as np

from scorediff.data import ByteTokenizer, CharTokenizer, iter_text
from scorediff.data.prepare import prepare_shards
from scorediff.fileio import atomic_directory


def test_one_enormous_line_streams_in_pieces_and_round_trips(tmp_path):
    words = " ".join(f"w{i % 977}" for i in range(600_000))  # 4 MB, no newline
    (tmp_path / "line.txt").write_text(words)
    pieces = [p for p in iter_text(str(tmp_path / "line.txt")) if p is not None]
    assert len(pieces) > 2 and max(len(p) for p in pieces) <= 2 * (1 << 20)
    assert "".join(pieces) == words
    assert all(p.endswith(" ") for p in pieces[:-1])  # cut after a space: words stay whole
    (tmp_path / "solid.txt").write_text("x" * 3_000_000)  # no whitespace at all
    assert "".join(p for p in iter_text(str(tmp_path / "solid.txt")) if p) == "x" * 3_000_000
    tokenizer = ByteTokenizer()
    shards = prepare_shards(str(tmp_path / "line.txt"), tokenizer, tmp_path / "cache", chunk_tokens=4096)
    tokens = np.concatenate([np.fromfile(shards / f"{split}.bin", dtype=np.uint16) for split in ("train", "val")])
    assert len(tokens) == len(words.encode()) + len(tokenizer.separator)  # one document, then its separator


def test_the_first_writer_wins_and_a_reader_never_sees_the_folder_vanish(tmp_path):
    final = tmp_path / "shard"
    with atomic_directory(final, replace=False) as first:
        (first / "data").write_text("first")
        with atomic_directory(final, replace=False) as second:
            (second / "data").write_text("second")
        assert (final / "data").read_text() == "second"  # the inner one finished first
    assert (final / "data").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard"]  # no temporary folder left


def _prepare(args):
    corpus, cache = args
    tokenizer = CharTokenizer.from_texts([open(corpus).read()])
    path = prepare_shards(corpus, tokenizer, cache, chunk_tokens=2048)
    return int(np.fromfile(path / "train.bin", dtype=np.uint16).size)


def test_concurrent_preparation_of_the_same_shards(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"line {i} of a small corpus\n" for i in range(20000)))
    for trial in range(4):
        with multiprocessing.get_context("spawn").Pool(3) as pool:
            sizes = pool.map(_prepare, [(str(corpus), str(tmp_path / f"cache{trial}"))] * 3)
        assert len(set(sizes)) == 1 and sizes[0] > 0
