"""Text files, folders and JSONL tokenised by several processes: the shards and meta file of one, byte for byte."""

import gzip
import json
import os

import numpy as np
import pytest

from scorediff.data import ByteTokenizer, CharTokenizer, DataError, HFTokenizer, iter_text, sources, write_shards
from scorediff.data.parallel import write_spans, write_text_shards
from scorediff.data.spans import file_spans, span_texts, text_pieces

CHUNK = 256
PIECE = 4000  # bytes of a worker's piece: the large files below are split into several
SHARD_FILES = ["meta.json", "train.bin", "val.bin"]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """Two large text files (one without newlines), small ones, an empty one, gzip, Markdown and JSONL whose line
    ends mix \\n, \\r\\n and a lone \\r, and whose records include empty text; pieces of 500 characters."""
    monkeypatch.setattr(sources, "PIECE_CHARS", 500)
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a_lines.txt").write_text("".join(f"line {i} of a, é ü {'x' * (i % 13)}\n" for i in range(600)))
    (root / "b_words.md").write_text(" ".join(f"w{i % 97}ö" for i in range(3000)))
    for i in range(5):
        (root / f"c_small_{i}.txt").write_text(f"small document {i}\nwith two lines")
    (root / "d_empty.txt").write_text("")
    (root / "e_packed.txt.gz").write_bytes(gzip.compress(("gzip text " * 700).encode()))
    endings = ["\n", "\r\n", "\r"]
    records = [json.dumps({"text": "" if i % 11 == 0 else f"record {i}: ß {'y' * (i % 7)}"}) for i in range(500)]
    (root / "f_records.jsonl").write_bytes("".join(r + endings[i % 3] for i, r in enumerate(records)).encode())
    return root


def shard_bytes(folder):
    return {name: (folder / name).read_bytes() for name in SHARD_FILES}


def test_a_folder_splits_large_files_into_spans_that_read_as_the_whole(folder):
    texts = [piece for piece in iter_text(str(folder)) if piece is not None]
    tasks = list(text_pieces(sorted(folder.iterdir()), folder.parent / "parts", PIECE))
    spans = [span for _, group in tasks for span in group]
    assert len(tasks) > 5 and [s.path.rsplit("/", 1)[1] for s in spans].count("a_lines.txt") >= 4
    assert sum(s.path.endswith("f_records.jsonl") for s in spans) >= 4  # JSONL shared between workers too
    assert sum(s.path.endswith(".gz") for s in spans) == 1  # a compressed file cannot be read from its middle
    for path in sorted(folder.iterdir()):
        parts = list(file_spans(path, PIECE))
        assert parts[0].start == 0 and all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False))
        assert parts[-1].end in (None, path.stat().st_size)
    # the spans' pieces, read apart, are the pieces of one process: texts cut at the same places, None the same
    assert [piece for s in spans for piece in span_texts(s) if piece is not None] == texts
    assert [piece for s in spans for piece in span_texts(s)] == list(iter_text(str(folder)))


def test_two_processes_write_the_shards_and_meta_of_one(folder, tmp_path):
    """A BPE's tokens depend on where text is cut: equal shards mean the workers cut exactly where one process does."""
    tokenizer = HFTokenizer.train_bpe((p for p in iter_text(str(folder)) if p), vocab_size=400)
    whole = (folder / "b_words.md").read_text()  # one line: cut after a space, which BPE joins to the next word
    cut = [t for piece in iter_text(str(folder / "b_words.md")) if piece for t in tokenizer.encode(piece)]
    assert cut != tokenizer.encode(whole)  # so a worker that cut elsewhere would write other tokens
    reference = write_shards(str(folder), tokenizer, tmp_path / "reference", chunk_tokens=CHUNK)
    for num_proc in (1, 2):
        out = tmp_path / f"proc{num_proc}"
        write_text_shards(str(folder), tokenizer, out, num_proc, chunk_tokens=CHUNK, bytes_per_piece=PIECE)
        assert sorted(p.name for p in out.iterdir()) == SHARD_FILES
        assert shard_bytes(out) == shard_bytes(reference)
    meta = json.loads((reference / "meta.json").read_text())
    assert meta["val_tokens"] > CHUNK and meta["train_tokens"] > 10 * meta["val_tokens"]
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_jsonl_file_alone_and_its_end_tokens(tmp_path, suffix):
    path = tmp_path / f"docs{suffix}"  # .json: the name datasets' to_json gives its JSON Lines
    values = [f"doc {i} " * (i % 5) for i in range(400)]  # every fifth is empty: no tokens, no end token
    path.write_text("".join(json.dumps({"body": v, "id": i}) + "\n" for i, v in enumerate(values)))
    tokenizer = ByteTokenizer()
    reference = write_shards(str(path), tokenizer, tmp_path / "reference", chunk_tokens=64, text_field="body")
    two = write_text_shards(str(path), tokenizer, tmp_path / "two", 2, chunk_tokens=64, text_field="body",
                            bytes_per_piece=1000)  # fmt: skip
    assert shard_bytes(two) == shard_bytes(reference)
    meta = json.loads((two / "meta.json").read_text())
    expected = sum(len(v.encode()) + 1 for v in values if v)
    assert meta["train_tokens"] + meta["val_tokens"] == expected
    tokens = np.fromfile(two / "train.bin", dtype=np.uint16)
    assert list(tokens[:13]) == [*b"doc 1 ", 256, *b"doc 2 doc 2 "][:13]


def test_bad_lines_name_their_line_in_the_file_and_write_nothing(tmp_path):
    """A worker reads its range without the lines before it, yet names a bad line as one process does."""
    lines = [json.dumps({"text": f"row {i}"}) for i in range(300)]
    cases = {
        "broken": (lines[:250] + ["{not json"] + lines[250:], r"broken.jsonl:251 is not valid JSON"),
        "field": (lines[:200] + ['{"body": "x"}'] + lines[200:], r"field.jsonl:201 has no string field 'text'"),
        "letter": (lines[:260] + ['{"text": "row 9z"}'] + lines[260:], r"letter.jsonl: .*'z'"),
    }
    cache = tmp_path / "cache"
    for name, (content, pattern) in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\r\n".join(content) + "\r\n")
        assert len(list(file_spans(path, 1000))) > 3
        messages = []
        for num_proc in (1, 2) if name == "broken" else (1,):
            with pytest.raises(DataError, match=pattern) as error:
                write_text_shards(str(path), CharTokenizer("row 0123456789\n"), cache / name, num_proc,
                                  bytes_per_piece=1000)  # fmt: skip
            messages.append(str(error.value))
        with pytest.raises(DataError) as single:
            write_shards(str(path), CharTokenizer("row 0123456789\n"), cache / name)
        assert set(messages) == {str(single.value)} and "\n" not in messages[0]
        assert not cache.exists()
    # found by the parent while it cuts a text file into pieces, in the middle of handing out tasks
    latin = tmp_path / "latin.txt"
    latin.write_bytes("".join(f"row {i}\n" for i in range(300)).encode() + b"row \xe9\n" + b"row 1\n" * 300)
    with pytest.raises(DataError, match=r"latin.txt is not UTF-8 text: byte 0xe9") as error:
        write_text_shards(str(latin), CharTokenizer("row 0123456789\n"), cache / "latin", 2, bytes_per_piece=500)
    with pytest.raises(DataError) as single:
        write_shards(str(latin), CharTokenizer("row 0123456789\n"), cache / "latin")
    assert str(error.value) == str(single.value) and not cache.exists()


def test_a_source_that_is_not_there_or_not_text_files_is_refused_before_writing(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"data '.*missing' is neither a file"):
        write_text_shards(str(tmp_path / "missing"), ByteTokenizer(), cache / "a", 2)
    with pytest.raises(DataError, match=r"num_proc must be >= 1; got 0"):
        write_text_shards(str(tmp_path), ByteTokenizer(), cache / "b", 0)
    (tmp_path / "blank.txt").write_text("")
    with pytest.raises(DataError, match=r"holds no text"):
        write_text_shards(str(tmp_path / "blank.txt"), ByteTokenizer(), cache / "c", 1)
    assert not cache.exists()


def read_tasks(tasks, spec):
    """The workers' side, in this process: every task's spans read and tokenised into its part file."""
    for task in tasks:
        write_spans(ByteTokenizer(), task, spec, "text", np.uint16)


def test_a_file_that_changes_after_it_was_cut_is_refused_in_one_line(tmp_path, monkeypatch):
    """The parent cuts the files, then they change before a worker reads them: shorter, longer, rewritten at the
    same size, gone. Each is named in one line instead of being read as other tokens."""
    monkeypatch.setattr(sources, "PIECE_CHARS", 300)
    text = "".join(f"line {i} é\n" for i in range(400)).encode()
    records = "".join(json.dumps({"text": f"record {i}"}) + "\n" for i in range(300)).encode()
    changes = {
        "shorter.txt": (text, lambda path: path.write_bytes(text[:-700])),
        "longer.jsonl": (records, lambda path: path.write_bytes(records + b'{"text": "one more"}\n')),
        "rewritten.txt": (text, lambda path: path.write_bytes(text.replace(b"line", b"LINE"))),
        "gone.txt": (b"a small file, one span", lambda path: path.unlink()),
    }
    for name, (content, change) in changes.items():
        path = tmp_path / name
        path.write_bytes(content)
        (tmp_path / "parts").mkdir(exist_ok=True)
        tasks = list(text_pieces([path], tmp_path / "parts", 1000))
        read_tasks(tasks, str(path))  # unchanged, it reads
        stat = path.stat()
        change(path)
        if path.exists():  # a rewrite in the same clock tick keeps the time; a later one does not
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        with pytest.raises(DataError) as error:
            read_tasks(tasks, str(path))
        assert str(error.value) == f"{path} changed while it was being prepared; run again"


def test_a_rewrite_that_keeps_size_and_time_is_named_as_one_process_names_it(tmp_path, monkeypatch):
    """A bad byte written into a part of a file that the parent decoded, the file's size and time put back: the
    worker's UnicodeDecodeError is the one line that one process gives for that file."""
    monkeypatch.setattr(sources, "PIECE_CHARS", 300)
    path = tmp_path / "latin.txt"
    path.write_bytes("".join(f"line {i} é\n" for i in range(400)).encode())
    tasks = list(text_pieces([path], tmp_path, 1000))
    assert len(tasks) > 3 and all(span.blocks for _, spans in tasks for span in spans)
    stat = path.stat()
    content = bytearray(path.read_bytes())
    content[3001] = 0xE9  # a lone Latin-1 é in the middle of the file, the size kept
    path.write_bytes(content)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(DataError) as worker:
        read_tasks(tasks, str(path))
    with pytest.raises(DataError) as single:
        write_shards(str(path), ByteTokenizer(), tmp_path / "single")
    assert str(worker.value) == str(single.value) == f"{path} is not UTF-8 text: byte 0xe9 at offset 3001"


def test_a_bad_byte_in_jsonl_is_named_by_its_line_and_offset_in_the_file_for_any_num_proc(tmp_path):
    """Each line is decoded alone: the error names the file's line and byte, not a worker's read-ahead block, and a
    bad JSON line and a bad byte a few lines apart (one decoder block) are found in the order of the file."""
    lines = [json.dumps({"text": f"row {i}"}).encode() for i in range(300)]
    bad_byte, bad_json = b'{"text": "row \xe9"}', b"{not json"
    cases = {
        "byte": ({250: bad_byte}, "byte.jsonl:251 is not UTF-8 text: byte 0xe9 at offset {}"),
        "both": ({240: bad_byte, 244: bad_json}, "both.jsonl:241 is not UTF-8 text: byte 0xe9 at offset {}"),
        "json": ({240: bad_json, 244: bad_byte}, "json.jsonl:241 is not valid JSON"),
    }
    for name, (inserted, expected) in cases.items():
        content = [inserted.get(i, line) for i, line in enumerate(lines)]
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(b"\r\n".join(content) + b"\r\n")
        offset = path.read_bytes().index(b"\xe9")
        messages = []
        for num_proc in (1, 2):
            with pytest.raises(DataError) as error:
                write_text_shards(str(path), ByteTokenizer(), tmp_path / name, num_proc, bytes_per_piece=1000)
            messages.append(str(error.value))
        with pytest.raises(DataError) as single:
            write_shards(str(path), ByteTokenizer(), tmp_path / name)
        assert messages == [str(single.value)] * 2 == [f"{tmp_path}/{expected.format(offset)}"] * 2
        assert len(list(file_spans(path, 1000))) > 3 and not (tmp_path / name).exists()
