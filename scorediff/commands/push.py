"""``scorediff push``: publish a checkpoint to the Hub (or write the folder that would be published)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..hub import HUB_ID
from ..loading import load
from ..publish import check_destination
from . import UsageError, check_folder_writable


def add_parser(commands) -> None:
    parser = commands.add_parser("push", help="publish a checkpoint to the Hugging Face Hub, with a model card")
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run directory")
    parser.add_argument("--repo", required=True, help="the Hub repository to create or update: user/name")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--license", default="other", help="licence of the weights for the card (default: other)")
    parser.add_argument("--local", metavar="DIR", help="write the folder to DIR and upload nothing")
    parser.set_defaults(run=run_push)


def run_push(args: argparse.Namespace) -> int:
    if not HUB_ID.match(args.repo) or "@" in args.repo:
        raise UsageError(f"--repo must be a Hub id like user/name; got {args.repo!r}")
    if args.local:  # before loading: a refusal costs nothing
        check_folder_writable(args.local)
        check_destination(Path(args.local), Path(args.checkpoint))
    loaded = load(args.checkpoint)
    if args.local:
        folder = loaded.save_pretrained(args.local, repo=args.repo, license=args.license)
        print(f"wrote {folder} (config, weights, tokenizer, model card); nothing was uploaded")
        return 0
    url = loaded.push_to_hub(args.repo, private=args.private, license=args.license)
    print(f"pushed {loaded.path} to {args.repo}: {url}")
    return 0
