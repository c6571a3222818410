"""``scorediff prepare``: the shards train reads, written before the run by several processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_run import assert_user_error, run_cli

from scorediff.data import ByteTokenizer, TokenWindows
from scorediff.data.prepare import prepare_shards

datasets = pytest.importorskip("datasets")


@pytest.fixture
def dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rows = [f"record {i} " * (1 + i % 5) for i in range(400)]
    datasets.Dataset.from_dict({"text": rows, "id": list(range(400))}).save_to_disk(str(tmp_path / "ds"))
    capsys.readouterr()  # the progress bar of save_to_disk
    return str(tmp_path / "ds"), rows


def test_prepare_writes_the_shards_that_train_finds(capsys, tmp_path, dataset):
    path, rows = dataset
    cache = tmp_path / "cache"
    argv = ["prepare", "--data", path, "--tokenizer", "byte", f"--data.cache_dir={cache}", "--num-proc", "2"]
    code, out, err = run_cli(capsys, argv)
    assert code == 0, err
    shards = Path(out.splitlines()[0].removeprefix("shards: "))
    # what train's prepare_data asks for: the same folder, found, not written again
    written = (shards / "train.bin").stat().st_mtime_ns
    assert prepare_shards(path, ByteTokenizer(), cache) == shards
    assert (shards / "train.bin").stat().st_mtime_ns == written
    assert sorted(p.name for p in cache.iterdir()) == [shards.name]
    total = sum(len(r.encode()) + 1 for r in rows)
    train, val = TokenWindows(shards, "train", 16), TokenWindows(shards, "val", 16)
    assert len(train.tokens) + len(val.tokens) == total
    assert f"train tokens: {len(train.tokens):,}  val tokens: {len(val.tokens):,}  vocab: 257" in out
    assert np.array_equal(train.tokens[:11], [*b"record 0 ", 256, ord("r")])  # the end token between records


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--data", "MISSING"], r"data '.*MISSING' is neither a file"),
        (["--data.text_field=body"], r"has no column 'body'; columns: \['text', 'id'\]"),
        (["--num-proc", "0"], r"--num-proc must be >= 1; got 0"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, dataset, extra, pattern):
    cache = tmp_path / "cache"
    argv = ["prepare", "--data", dataset[0], "--tokenizer", "byte", f"--data.cache_dir={cache}", *extra]
    assert_user_error(capsys, argv, pattern)
    assert not cache.exists()


def test_a_terminated_prepare_leaves_no_temporary_shards(tmp_path):
    """SIGTERM (what a scheduler or ``kill`` sends) ended a prepare with its temporary shard folder left behind."""
    corpus = tmp_path / "big.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 2_000_000)  # 88 MB: seconds to tokenise
    cache = tmp_path / "cache"
    argv = [sys.executable, "-m", "scorediff", "prepare", "--data", str(corpus), "--tokenizer", "byte",
            f"--data.cache_dir={cache}"]  # fmt: skip
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not list(cache.glob(".tmp-*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the prepare ended before its shards were being written"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143 and err.strip() == "scorediff: terminated", err
    assert not cache.exists()  # the cache folder this prepare made, removed with its temporary shards


@pytest.mark.parametrize("num_proc", ["1", "2"])
def test_a_failed_prepare_leaves_no_folders_it_made(capsys, tmp_path, num_proc):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine text\nthen a bad byte \xff\n")
    kept = tmp_path / "kept"
    kept.mkdir()
    cache = kept / "new" / "deeper"  # two folders this call would make
    argv = ["prepare", "--data", str(bad), "--tokenizer", "byte", f"--data.cache_dir={cache}", "--num-proc", num_proc]
    assert_user_error(capsys, argv, "not UTF-8 text")
    assert list(kept.iterdir()) == []  # the folder that was there stays, the ones made for the shards are gone
