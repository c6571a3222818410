"""``scorediff prepare``: tokenise a run's data into the shard cache before training, with several processes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..config import load_config
from ..data.examples import example_format
from ..data.prepare import build_tokenizer, prepare_dna_shards, prepare_shards
from ..data.shards import META_FILE
from ..data.sources import EMBEDDED
from . import UsageError, add_run_config_option


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "prepare",
        help="tokenise a run's data into the shard cache that train reads (a saved dataset with several processes)",
        description="Write the token shards that `scorediff train` with the same options would write, so that a "
        "multi-GPU run finds them ready instead of tokenising on rank 0 while the others wait. Options as for "
        "train: --section.key=value.",
    )
    add_run_config_option(parser)
    parser.add_argument("--data", help="embedded corpus, text file, folder, glob, JSONL, FASTA or saved dataset")
    parser.add_argument("--tokenizer", help="char | byte | dna | gpt2 | bpe | path to a tokenizer")
    parser.add_argument(
        "--num-proc",
        type=int,
        default=1,
        help="processes that tokenise text files, folders, globs, JSONL or a saved Hugging Face dataset, a large file "
        "shared between them (a compressed or FASTA file goes to one; the embedded corpus and --tokenizer dna are "
        "read by one process); the shards are the same whatever the number",
    )
    parser.set_defaults(run=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    if args.num_proc < 1:
        raise UsageError(f"--num-proc must be >= 1; got {args.num_proc}")
    if args.num_proc > (cpus := os.cpu_count() or 1):  # a process per CPU is the most that can work at once
        raise UsageError(f"--num-proc must be at most this machine's {cpus} CPUs; got {args.num_proc}")
    overrides = list(args.overrides)
    overrides += [f"data.source={args.data}"] if args.data is not None else []
    overrides += [f"data.tokenizer={args.tokenizer}"] if args.tokenizer is not None else []
    data = load_config(args.config, overrides).data
    if example_format(data.source):
        raise UsageError(f"{data.source} is a file of prompted examples: train reads it directly, there is no cache")
    tokenizer = build_tokenizer(data.tokenizer, data.source, data.text_field, data.bpe_vocab_size)
    cache = data.cache_dir or None
    single = "the embedded corpus" if data.source in EMBEDDED else "--tokenizer dna" if tokenizer.kind == "dna" else ""
    if args.num_proc > 1 and single:
        print(f"note: {single} is read by one process, whatever --num-proc says", file=sys.stderr)
    if tokenizer.kind == "dna":
        shards = prepare_dna_shards(data.source, cache, data.val_fraction, data.dna_policy, data.label_regex)
    else:
        field, num_proc = data.text_field, args.num_proc
        shards = prepare_shards(data.source, tokenizer, cache, data.val_fraction, field, num_proc=num_proc)
    tokenizer.save(shards)  # where train's other ranks read it
    meta = json.loads((Path(shards) / META_FILE).read_text())
    print(f"shards: {shards}")
    print(f"train tokens: {meta['train_tokens']:,}  val tokens: {meta['val_tokens']:,}  vocab: {meta['vocab_size']:,}")
    return 0
