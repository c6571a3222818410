import gzip
import json
import lzma
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from scorediff.data import CharTokenizer, DataError, TokenWindows, iter_text, write_shards
from scorediff.data.prepare import build_tokenizer, prepare_shards


def documents(spec, **kwargs):
    """The documents of a source, each joined from its pieces."""
    out, current = [], []
    for piece in iter_text(spec, **kwargs):
        if piece is None:
            out.append("".join(current))
            current = []
        else:
            current.append(piece)
    return out


def test_embedded_corpus_is_the_default_and_complete():
    (text,) = documents("shakespeare")
    assert len(text) == 4_566_588 and text.startswith("ALL'S WELL THAT ENDS WELL")


def test_text_files_folders_and_globs(tmp_path):
    (tmp_path / "a.txt").write_text("first file\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("second file\n")
    (tmp_path / "skip.bin").write_bytes(b"\x00\x01")
    assert documents(str(tmp_path / "a.txt")) == ["first file\n"]
    assert documents(str(tmp_path)) == ["first file\n", "second file\n"]
    assert documents(str(tmp_path / "**" / "*.md")) == ["second file\n"]


def test_jsonl_and_fasta(tmp_path):
    lines = [json.dumps({"text": "alpha"}), "", json.dumps({"text": "beta", "id": 2})]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    assert documents(str(tmp_path / "d.jsonl")) == ["alpha", "beta"]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl:1 has no string field 'text'"):
        documents(str(tmp_path / "bad.jsonl"))
    with gzip.open(tmp_path / "g.fa.gz", "wt") as handle:
        handle.write(">chr1 first\nACGT\nACGG\n>chr2\nTTTT\n")
    assert documents(str(tmp_path / "g.fa.gz")) == ["ACGTACGG", "TTTT"]


def test_a_json_file_is_json_lines_as_datasets_writes_it(tmp_path):
    """``Dataset.to_json`` writes JSON Lines under a ``.json`` name: read as records, not as a text of braces; one
    JSON document instead (an array, or an object pretty-printed) is a one-line error that says what was expected."""
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": ["alpha", "beta\ngamma"], "id": [1, 2]}).to_json(tmp_path / "d.json")
    assert documents(str(tmp_path / "d.json")) == ["alpha", "beta\ngamma"]
    (tmp_path / "array.json").write_text(json.dumps([{"text": "alpha"}]))
    with pytest.raises(DataError, match=r"array.json:1 is not a JSON object \(expected JSON Lines: one object per"):
        documents(str(tmp_path / "array.json"))
    (tmp_path / "pretty.json").write_text(json.dumps([{"text": "alpha"}], indent=2))
    with pytest.raises(DataError, match=r"pretty.json:1 is not valid JSON \(expected JSON Lines"):
        documents(str(tmp_path / "pretty.json"))
    (tmp_path / "late.jsonl").write_text('{"text": "alpha"}\n[1]\n')  # a later line: the file is JSON Lines
    with pytest.raises(DataError, match=r"late.jsonl:2 is not a JSON object$"):
        documents(str(tmp_path / "late.jsonl"))


def test_damaged_compressed_files_pipes_and_an_empty_source_are_one_line_each(tmp_path, monkeypatch):
    """Each escaped as a traceback (EOFError, LZMAError), hung (a pipe), or read the working folder (empty data)."""
    whole = gzip.compress(b"hello world\n" * 10_000)
    (tmp_path / "half.txt.gz").write_bytes(whole[: len(whole) // 2])
    squeezed = lzma.compress(b"hello\n" * 10_000)
    (tmp_path / "half.txt.xz").write_bytes(squeezed[: len(squeezed) // 2])
    (tmp_path / "plain.txt.xz").write_text("not compressed")
    fasta = gzip.compress(b">chr1\nACGT\n" * 1000)
    (tmp_path / "half.fa.gz").write_bytes(fasta[: len(fasta) // 2])
    cases = {
        "half.txt.gz": r"half.txt.gz is not a complete gzip file \(Compressed file ended",
        "half.txt.xz": r"half.txt.xz is not a complete xz file \(Compressed file ended",
        "plain.txt.xz": r"plain.txt.xz is not a complete xz file \(Input format not supported",
        "half.fa.gz": r"half.fa.gz is not a complete gzip file",
    }
    for name, pattern in cases.items():
        with pytest.raises(DataError, match=pattern):
            documents(str(tmp_path / name))
    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.raises(DataError, match=r"'.*pipe.txt' is not a regular file \(a pipe or a device may never end\)"):
        documents(str(tmp_path / "pipe.txt"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("would be read")
    for empty in ("", " "):
        with pytest.raises(DataError, match="data is empty; expected a file, a folder, a glob"):
            documents(empty)


def test_a_lone_surrogate_in_json_lines_is_refused_by_its_line(tmp_path):
    """JSON may escape half a character (``\\ud800``); the BPE and GPT-2 tokenizers escaped as tracebacks on it."""
    lines = ['{"text": "fine \\ud83d\\ude00"}', '{"text": "\\\\ud800 is six characters"}', '{"text": "x\\ud800"}']
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"d.jsonl:3 holds a lone surrogate \('\\ud800'\), which is not text"):
        documents(str(tmp_path / "d.jsonl"))
    (tmp_path / "d.jsonl").write_text("\n".join(lines[:2]) + "\n")  # a pair is one character, an escaped \\ none
    assert documents(str(tmp_path / "d.jsonl")) == ["fine \U0001f600", "\\ud800 is six characters"]


def test_a_glob_through_a_link_to_a_folder_above_reads_each_file_once(tmp_path):
    (tmp_path / "loop" / "a").mkdir(parents=True)
    (tmp_path / "loop" / "a" / "f.txt").write_text("abc\n")
    (tmp_path / "loop" / "a" / "up").symlink_to("..")  # loop/a/up/a/up/... down to the system's limit
    assert documents(str(tmp_path / "loop" / "**" / "*.txt")) == ["abc\n"]


READ_FOLDER = """
import sys
from scorediff.data import DataError, iter_text
try:
    list(iter_text(sys.argv[1]))
except DataError as error:
    print(error)
"""


@pytest.mark.parametrize("spec", ["data", "data/**/*.txt", "data/*/b.txt", "data/locked/*.txt"])
def test_a_folder_that_cannot_be_read_is_an_error_not_left_out(tmp_path, spec):
    """Read in a process without the right to read past a folder's mode: root has it, so root drops it (setpriv).
    A glob skipped such a folder as the shell does, and the files the pattern meant there with it."""
    (tmp_path / "data" / "locked").mkdir(parents=True)
    (tmp_path / "data" / "a.txt").write_text("read\n")
    (tmp_path / "data" / "locked" / "b.txt").write_text("left out\n")
    (tmp_path / "data" / "locked").chmod(0)
    dropped = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    if dropped and not shutil.which("setpriv"):
        pytest.skip("root without setpriv reads a folder whatever its mode")
    try:
        argv = [*dropped, sys.executable, "-c", READ_FOLDER, str(tmp_path / spec)]
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
    finally:
        (tmp_path / "data" / "locked").chmod(0o755)
    assert "locked cannot be read (Permission denied); its files would be left out" in done.stdout


def test_a_file_that_changes_while_one_process_reads_it_leaves_no_shards(tmp_path):
    """Shards of a file appended to while read were filed under its old size and time (several processes refused)."""
    path = tmp_path / "growing.txt"
    path.write_text("abc\n" * 1000)

    class Appending(CharTokenizer):  # appends once, after the first piece (each append would be read in turn)
        appended = False

        def encode(self, text):
            if not self.appended:
                with open(path, "a") as handle:
                    handle.write("abc\n")
                self.appended = True
            return super().encode(text)

    with pytest.raises(DataError, match="growing.txt changed while it was being prepared; run again"):
        write_shards(str(path), Appending("abc\n"), tmp_path / "shards", chunk_tokens=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["growing.txt"]


def test_bad_sources_say_what_is_wrong(tmp_path):
    with pytest.raises(DataError, match="is neither a file, a folder, a glob nor an embedded corpus"):
        documents(str(tmp_path / "missing.txt"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="holds no text files"):
        documents(str(tmp_path / "empty_dir"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt is not UTF-8 text: byte 0xe9"):
        documents(str(tmp_path / "latin1.txt"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="holds no text"):
        build_tokenizer("char", str(tmp_path / "empty.txt"))
    with pytest.raises(DataError, match="unknown tokenizer 'wordpiece'"):
        build_tokenizer("wordpiece", "shakespeare")


def test_shards_split_deterministically_and_keep_every_token(tmp_path):
    text = "".join(chr(ord("a") + (i * 7) % 26) for i in range(50_000))
    (tmp_path / "corpus.txt").write_text(text)
    tokenizer = CharTokenizer.from_texts([text])
    first = write_shards(str(tmp_path / "corpus.txt"), tokenizer, tmp_path / "s1", val_fraction=0.2, chunk_tokens=1000)
    second = write_shards(str(tmp_path / "corpus.txt"), tokenizer, tmp_path / "s2", val_fraction=0.2, chunk_tokens=1000)
    meta = json.loads((first / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["train_tokens"] + meta["val_tokens"] == 50_001  # + the end token
    assert 0.1 < meta["val_tokens"] / 50_002 < 0.3
    for split in ("train", "val"):
        assert (first / f"{split}.bin").read_bytes() == (second / f"{split}.bin").read_bytes()
    train = np.fromfile(first / "train.bin", dtype=np.uint16)
    val = np.fromfile(first / "val.bin", dtype=np.uint16)
    everything = np.concatenate([train, val])
    assert sorted(everything.tolist()) == sorted(tokenizer.encode(text) + tokenizer.separator)
    assert not list(tmp_path.glob(".tmp-*"))  # temporary folders are renamed or removed


def test_tiny_corpus_still_gets_both_splits(tmp_path):
    (tmp_path / "t.txt").write_text("a short text with few tokens")
    tokenizer = CharTokenizer.from_texts(["a short text with few tokens"])
    meta = json.loads((write_shards(str(tmp_path / "t.txt"), tokenizer, tmp_path / "s") / "meta.json").read_text())
    assert meta["train_tokens"] > 0 and meta["val_tokens"] > 0


def test_windows(tmp_path):
    text = "abcdefghij" * 500
    (tmp_path / "c.txt").write_text(text)
    tokenizer = CharTokenizer.from_texts([text])
    shards = prepare_shards(str(tmp_path / "c.txt"), tokenizer, tmp_path / "cache", val_fraction=0.1)
    assert prepare_shards(str(tmp_path / "c.txt"), tokenizer, tmp_path / "cache", val_fraction=0.1) == shards
    windows = TokenWindows(shards, "train", 16)
    batch = windows.random_batch(8, torch.Generator().manual_seed(0))
    assert batch.shape == (8, 16) and batch.dtype == torch.int64
    for row in batch:  # every window is a contiguous stretch of the stream
        decoded = tokenizer.decode(row.tolist())
        assert decoded in text + text
    again = windows.random_batch(8, torch.Generator().manual_seed(0))
    assert torch.equal(batch, again)
    every = windows.all_windows()
    assert every.shape == (len(windows), 16)
    assert torch.equal(every.reshape(-1), torch.from_numpy(np.asarray(windows.tokens[: every.numel()], np.int64)))
    spread = windows.spread_windows(4)
    assert torch.equal(spread, every[[i * len(windows) // 4 for i in range(4)]])
    assert torch.equal(windows.spread_windows(10_000), every)
    with pytest.raises(DataError, match="need at least seq_len=100000"):
        TokenWindows(shards, "val", 100_000)


def test_local_hugging_face_dataset(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    data = datasets.Dataset.from_dict({"content": ["first record", "second record"], "id": [1, 2]})
    datasets.DatasetDict({"train": data}).save_to_disk(str(tmp_path / "ds"))
    assert documents(str(tmp_path / "ds"), text_field="content") == ["first record", "second record"]
    with pytest.raises(DataError, match=r"has no column 'text'; columns: \['content', 'id'\]"):
        documents(str(tmp_path / "ds"))
