"""The zero-shot perplexity protocol of the SEDD and MDLM papers: the datasets they scored, read through
``datasets``, the detokenisers they applied, and the windows they cut.

Each row of the split is detokenised, tokenised (GPT-2 tokens for the published models), ended with the end-of-text
token, and the rows are concatenated in groups; each group is cut into windows and its remainder dropped. The
groups are those of ``datasets.map(batched=True, num_proc=n)``: the split is cut into ``n`` contiguous shards (the
first ``len % n`` one row longer; ``n`` no more than the rows) and each shard into batches of 1,000 rows. SEDD's
``get_dataset`` maps with ``num_proc=8`` (WikiText-2's 4,358 test rows: shards of 545 and 544 rows); MDLM's with one
process per CPU of the machine that ran it, which no file records (``shards=1`` unless told). Two conventions:

- ``sedd`` (the default; Lou et al. 2024): windows of ``length`` tokens of the stream;
- ``mdlm`` (Sahoo et al. 2024, ``wrap``): ``length - 2`` tokens of the stream between a start and an end token
  (GPT-2 has one end-of-text token for both).

The detokenisers undo the tokenisation of the source corpora (WikiText's ``@-@``, PTB's split contractions,
LM1B's spaced punctuation) so a byte-level tokenizer sees ordinary text; they are written here as tables of the
rules the papers' code applies, tested on known strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from .sources import DataError

GROUP_ROWS = 1000
CONVENTIONS = ("sedd", "mdlm")
SHARDS = {"sedd": 8, "mdlm": 1}  # num_proc of each paper's datasets.map (MDLM's varies by machine)


def _apply(rules: list[tuple[str, str, bool]], text: str) -> str:
    """Apply ``(pattern, replacement, is_regex)`` rules in order."""
    for pattern, replacement, regex in rules:
        text = re.sub(pattern, replacement, text) if regex else text.replace(pattern, replacement)
    return text


_BRACKETS = [(r"\(\s*([^\)]*?)\s*\)", r"(\1)"), (r"\[\s*([^\]]*?)\s*\]", r"[\1]"), (r"{\s*([^}]*?)\s*}", r"{\1}"),
             (r"\"\s*([^\"]*?)\s*\"", r'"\1"'), (r"'\s*([^']*?)\s*'", r"'\1'")]  # fmt: skip
WIKITEXT_RULES = [
    ("s '", "s'", False),
    (r"/' [0-9]/", r"/'[0-9]/", True),
    *((f" @{mark}@ ", mark, False) for mark in "-,."),
    *((f" {mark} ", f"{mark} ", False) for mark in ":;.!?,"),
    *((pattern, replacement, True) for pattern, replacement in _BRACKETS),
    ("= = = =", "====", False),
    ("= = =", "===", False),
    ("= =", "==", False),
    (" \u00b0 ", "\u00b0", False),
    (" \n", "\n", False),
    ("\n ", "\n", False),
    (" N ", " 1 ", False),
    (" 's", "'s", False),
]
PTB_RULES = [
    (" 's", "'s", False),
    ("s ' ", "s' ", False),
    (" n't", "n't", False),
    (" \n ", "\n", False),
    ("\\/", "/", False),
    *[(" N ", " 1 ", False)] * 10,  # each pass replaces every other of adjacent ones
    ("$ 1", "$1", False),
    ("# 1", "#1", False),
    ("<unk>", "?", False),
]
LM1B_RULES = [
    ("http : / / ", "http://", False),
    ("https : / / ", "https://", False),
    (r" \'(\w+)", r"'\1", True),
    (r" (\w+) \. ", r" \1. ", True),
    (r" (\w+) \.$", r" \1.", True),
    (" ? ", "? ", False),
    (r" \?$", "?", True),
    (" ! ", "! ", False),
    (r" \!$", "!", True),
    *((f" {mark} ", f"{mark} ", False) for mark in ",:;"),
    (" / ", "/", False),
    (r"\" ([^\"]+) \"", r'"\1"', True),
    (r"\' ([^\']+) \'", r"'\1'", True),
    (r"\( ([^\(\)]+) \)", r"(\1)", True),
    (r"\[ ([^\[\]]+) \]", r"[\1]", True),
    ("$ ", "$", False),
    ("\u00a3 ", "\u00a3", False),
]


def wikitext_detokenize(text: str) -> str:
    return _apply(WIKITEXT_RULES, text)


def ptb_detokenize(text: str) -> str:
    return _apply(PTB_RULES, text)


def lm1b_detokenize(text: str) -> str:
    return _apply(LM1B_RULES, text)


def lambada_detokenize(text: str) -> str:
    """Curly double quotes made straight; the passage starts on a new line."""
    return "\n" + text.replace("\u201c", '"').replace("\u201d", '"').strip()


@dataclass(frozen=True)
class ZeroShotSet:
    """A dataset of the papers' zero-shot table: where ``datasets`` finds it and how its rows are read."""

    path: str
    name: str | None
    column: str
    detokenize: Callable[[str], str]
    split: str = "test"


ZERO_SHOT = {
    "wikitext2": ZeroShotSet("wikitext", "wikitext-2-raw-v1", "text", wikitext_detokenize),
    "wikitext103": ZeroShotSet("wikitext", "wikitext-103-raw-v1", "text", wikitext_detokenize),
    "ptb": ZeroShotSet("ptb_text_only", None, "sentence", ptb_detokenize),
    "lambada": ZeroShotSet("EleutherAI/lambada_openai", "default", "text", lambada_detokenize),  # OpenAI's test file
    "lm1b": ZeroShotSet("lm1b", None, "text", lm1b_detokenize),
}


def zero_shot_rows(dataset: str, split: str | None = None, path: str | Path | None = None) -> list[str]:
    """The detokenised rows of ``dataset``'s ``split``: from the Hub through ``datasets``, or from a
    ``save_to_disk`` copy at ``path`` (a ``DatasetDict`` or one split)."""
    if dataset not in ZERO_SHOT:
        raise DataError(f"--dataset must be one of {', '.join(ZERO_SHOT)}; got {dataset!r}")
    spec = ZERO_SHOT[dataset]
    split = split or spec.split
    try:
        import datasets
    except ImportError:
        raise ImportError("the zero-shot datasets are read with `pip install 'scorediff[hf]'`") from None
    try:
        data = datasets.load_from_disk(str(path)) if path is not None else datasets.load_dataset(spec.path, spec.name)
    except Exception as error:  # the library's network, cache and format errors
        where = path or f"{spec.path}{'/' + spec.name if spec.name else ''} on the Hub"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"cannot read {dataset} from {where} ({first})") from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise DataError(f"{dataset} has no split {split!r}; it has {sorted(data)}")
        data = data[split]
    if spec.column not in data.column_names:
        raise DataError(f"{dataset}: expected a column {spec.column!r}; got {data.column_names}")
    texts = data[spec.column]
    bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
    if bad is not None:
        raise DataError(f"{dataset}: row {bad} of column {spec.column!r} is not text; got {type(texts[bad]).__name__}")
    return [spec.detokenize(text) for text in texts]


def row_groups(count: int, shards: int) -> list[range]:
    """The rows ``datasets.map(batched=True, num_proc=shards)`` hands its function together: ``shards`` contiguous
    shards (``Dataset.shard(contiguous=True)``; no more shards than rows), each in batches of ``GROUP_ROWS``."""
    shards = max(1, min(shards, count))
    size, extra = divmod(count, shards)
    groups = []
    for index in range(shards):
        start = size * index + min(index, extra)
        end = start + size + (index < extra)
        groups += [range(first, min(first + GROUP_ROWS, end)) for first in range(start, end, GROUP_ROWS)]
    return groups


def zero_shot_windows(
    rows: Iterable[str],
    encode: Callable[[str], list[int]],
    eos: list[int],
    length: int,
    convention: str = "sedd",
    shards: int | None = None,
) -> torch.Tensor:
    """int64 (N, ``length``): the rows' tokens, each followed by ``eos`` (the end-of-text token, or a tokenizer's
    document separator), concatenated in the groups of ``row_groups(len(rows), shards)`` and cut into windows by
    ``convention`` (see the module docstring; ``mdlm`` needs a single end-of-text token). ``shards`` defaults to
    the convention's (``SHARDS``: 8 for SEDD, 1 for MDLM)."""
    if convention not in CONVENTIONS:
        raise DataError(f"--chunking must be one of {', '.join(CONVENTIONS)}; got {convention!r}")
    if convention == "mdlm" and len(eos) != 1:
        raise DataError(f"MDLM's windows start and end with one end-of-text token; this tokenizer ends text with {eos}")
    if shards is not None and shards < 1:
        raise DataError(f"shards must be >= 1; got {shards}")
    body = length if convention == "sedd" else length - 2
    rows, windows = list(rows), []
    for group in row_groups(len(rows), shards or SHARDS[convention]):
        stream = [t for i in group for t in (*encode(rows[i]), *eos)]
        for start in range(0, len(stream) - body + 1, body):
            chunk = stream[start : start + body]
            windows.append(chunk if convention == "sedd" else [*eos, *chunk, *eos])
    if not windows:
        raise DataError(f"the rows hold fewer than {body} tokens in any group of rows: no window to score")
    return torch.tensor(windows, dtype=torch.int64)
