"""A saved Hugging Face dataset tokenised by several processes: the same shards as one, streamed, written whole."""

import json

import numpy as np
import pytest

from scorediff.data import ByteTokenizer, CharTokenizer, DataError, write_shards
from scorediff.data.parallel import read_rows, write_dataset_shards, write_piece
from scorediff.data.shards import _goes_to_validation

datasets = pytest.importorskip("datasets")

CHUNK = 64


def texts(rows: int) -> list:
    """Documents of varied length, with empty and missing ones (which add nothing, not even a separator)."""
    out = [f"doc {i}: " + "lorem ipsum é " * (i % 9) for i in range(rows)]
    out[3], out[40], out[41] = "", None, ""
    return out


@pytest.fixture
def saved(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")

    def save(values, name="ds", column="text"):
        path = tmp_path / name
        datasets.DatasetDict({"train": datasets.Dataset.from_dict({column: values})}).save_to_disk(str(path))
        return str(path)

    return save


def stream_of(folder, val_fraction=0.05):
    """The token stream read back from the two splits chunk by chunk, in the order the chunks were cut."""
    files = {s: np.fromfile(folder / f"{s}.bin", dtype=np.uint16) for s in ("train", "val")}
    position, parts = {"train": 0, "val": 0}, []
    for k in range(sum(len(f) for f in files.values()) // CHUNK + 1):
        split = "val" if _goes_to_validation(k, val_fraction) else "train"
        parts.append(files[split][position[split] : position[split] + CHUNK])
        position[split] += CHUNK
    return np.concatenate(parts)


def test_two_processes_write_the_shards_of_one_and_of_write_shards(saved, tmp_path):
    values = texts(300)
    path = saved(values)
    tokenizer = ByteTokenizer()
    pieces = dict(chunk_tokens=CHUNK, rows_per_piece=16, rows_per_read=5)  # 19 pieces, 4 reads each
    one = write_dataset_shards(path, tokenizer, tmp_path / "one", num_proc=1, **pieces)
    two = write_dataset_shards(path, tokenizer, tmp_path / "two", num_proc=2, **pieces)
    reference = write_shards(path, tokenizer, tmp_path / "reference", chunk_tokens=CHUNK)
    for split in ("train.bin", "val.bin"):
        assert (one / split).read_bytes() == (two / split).read_bytes() == (reference / split).read_bytes()
    # the stream itself, from the texts: each non-empty document's UTF-8 bytes, then the end-of-text token 256
    expected = [token for t in values if t for token in [*t.encode(), 256]]
    assert tokenizer.separator == [256] and np.array_equal(stream_of(two), expected)
    meta = json.loads((two / "meta.json").read_text())
    assert meta["train_tokens"] + meta["val_tokens"] == len(expected) and meta["val_tokens"] > 0
    assert meta["rows"] == 300 and meta["tokenizer"] == "tokenizer.json" and meta["tokenizer_kind"] == "byte"
    assert sorted(p.name for p in two.iterdir()) == ["meta.json", "tokenizer.json", "train.bin", "val.bin"]
    assert not list(tmp_path.glob(".tmp-*"))


class CountingRows:
    """A dataset of ``rows`` generated texts that records the largest slice asked of it (no corpus in memory)."""

    def __init__(self, rows: int):
        self.rows, self.largest = rows, 0

    def __len__(self):
        return self.rows

    def __getitem__(self, window: slice):
        self.largest = max(self.largest, window.stop - window.start)
        return {"text": [f"row {i} " * 20 for i in range(window.start, window.stop)]}


def test_a_worker_holds_one_read_of_rows_at_a_time(tmp_path):
    """Memory by construction: a piece of 20,000 rows (about 1 MB of text) is read 64 rows at a time."""
    corpus = CountingRows(5_000)
    written = write_piece(corpus, ByteTokenizer(), "gen", "text", 0, 5_000, tmp_path / "part.bin", "uint16", 64)
    assert corpus.largest == 64
    part = np.fromfile(tmp_path / "part.bin", dtype=np.uint16)
    assert written == len(part) == sum(len(f"row {i} " * 20) + 1 for i in range(5_000))
    assert [first for first, _ in read_rows(corpus, "text", 10, 150, 64)] == [10, 74, 138]


def test_a_damaged_dataset_is_one_line_in_one_process_and_in_many(saved, tmp_path):
    """A broken JSON header or a cut Arrow file escaped as JSONDecodeError or ArrowInvalid tracebacks."""
    info = saved(["some text"] * 50, "info") + "/train/dataset_info.json"
    state = saved(["some text"] * 50, "state") + "/train/state.json"
    for header in (info, state):
        with open(header, "a") as handle:
            handle.write("{")
    saved(["some text"] * 50, "cut")
    arrow = next((tmp_path / "cut" / "train").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:100])
    for name in ("info", "state", "cut"):
        with pytest.raises(DataError, match=rf"dataset .*{name} cannot be read: ") as error:
            write_shards(str(tmp_path / name), CharTokenizer("some tx\n"), tmp_path / "one", chunk_tokens=CHUNK)
        assert "\n" not in str(error.value)
        with pytest.raises(DataError, match=rf"dataset .*{name} cannot be read: "):
            write_dataset_shards(str(tmp_path / name), CharTokenizer("some tx\n"), tmp_path / "two", 2)
    assert not list(tmp_path.glob("one*")) and not list(tmp_path.glob("two*"))


def test_bad_datasets_are_one_line_and_write_nothing(saved, tmp_path):
    cache = tmp_path / "cache"
    cases = [
        (str(tmp_path / "missing"), r"dataset '.*missing' does not exist"),
        (saved(["a", "b"], "content", column="content"), r"has no column 'text'; columns: \['content'\]"),
        (saved([], "empty"), r"dataset .*empty has no rows"),
        (saved(["", None, ""], "blank"), r"holds no text"),  # found while writing
        (saved([1, 2], "numbers"), r"dataset .*numbers: column 'text' holds int64, not text"),
        # pieces 0 and 1 are written before row 40 fails: an interrupted prepare leaves nothing behind
        (saved(["ab"] * 40 + ["abc"], "late"), r"row 40: .*'c'"),
    ]
    for path, pattern in cases:
        for num_proc in (1, 2) if path.endswith("late") else (1,):
            with pytest.raises(DataError, match=pattern) as error:
                write_dataset_shards(path, CharTokenizer("ab\n"), cache / "shards", num_proc, rows_per_piece=16)
            assert "\n" not in str(error.value)
            assert not cache.exists()
