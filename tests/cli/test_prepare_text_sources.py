"""``scorediff prepare --num-proc 2`` on a folder of text and JSONL files: the cache entry one process writes."""

import json
from pathlib import Path

from cli_run import run_cli

from scorediff.data import ByteTokenizer, parallel, sources
from scorediff.data.prepare import prepare_shards


def test_prepare_shares_a_folder_between_processes_and_writes_what_one_writes(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "PIECE_CHARS", 300)
    monkeypatch.setattr(parallel, "BYTES_PER_PIECE", 2000)  # the big files in several pieces, the small ones joined
    root = tmp_path / "owt"
    (root / "sub").mkdir(parents=True)
    for i in range(6):
        (root / "sub" / f"doc{i}.txt").write_text(f"document {i}\n" + "some words, " * (10 + 40 * i))
    (root / "long.txt").write_text("".join(f"a line numbered {i}\n" for i in range(800)))
    (root / "records.jsonl").write_text("".join(json.dumps({"text": f"record {i} " * 5}) + "\n" for i in range(300)))
    argv = ["prepare", "--data", str(root), "--tokenizer", "byte", f"--data.cache_dir={tmp_path / 'two'}"]
    code, out, err = run_cli(capsys, [*argv, "--num-proc", "2"])
    assert code == 0 and err == "", err
    two = Path(out.splitlines()[0].removeprefix("shards: "))
    one = prepare_shards(str(root), ByteTokenizer(), tmp_path / "one", val_fraction=0.05)  # one process
    assert two.name == one.name  # the cache key does not hold the number of processes
    for name in ("train.bin", "val.bin", "meta.json"):
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    meta = json.loads((one / "meta.json").read_text())
    total = sum(len(p.read_bytes()) for p in root.rglob("*.txt")) + 7  # each text file, then its end token
    total += sum(len(f"record {i} " * 5) + 1 for i in range(300))
    assert meta["train_tokens"] + meta["val_tokens"] == total and meta["val_tokens"] > 0
    assert f"train tokens: {meta['train_tokens']:,}  val tokens: {meta['val_tokens']:,}  vocab: 257" in out


def test_the_embedded_corpus_says_it_is_read_by_one_process(capsys, tmp_path):
    argv = ["prepare", "--config", "tiny", "--tokenizer", "char", f"--data.cache_dir={tmp_path}", "--num-proc", "2"]
    code, out, err = run_cli(capsys, argv)
    assert code == 0 and out.startswith("shards: ")
    assert err == "note: the embedded corpus is read by one process, whatever --num-proc says\n"
