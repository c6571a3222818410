"""``scorediff playground``: a local web page that shows a checkpoint filling in text (the ``[ui]`` extra)."""

from __future__ import annotations

import argparse

from ..loading import load
from . import add_load_options, check_device, positive


def add_parser(commands) -> None:
    parser = commands.add_parser("playground", help="a local web page: fill in text and watch the sampler work")
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run directory, or Hub id org/name[@rev]")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    add_load_options(parser)
    parser.set_defaults(run=run_playground)


def run_playground(args: argparse.Namespace) -> int:
    positive("--port", args.port)
    check_device(args.device)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ImportError("scorediff playground needs Gradio: pip install 'scorediff[ui]'") from None
    from ..playground import build_app

    loaded = load(args.checkpoint, device=args.device, dtype=args.dtype)
    if loaded.tokenizer is None:
        from . import UsageError

        raise UsageError(f"{loaded.path} has no tokenizer, so the page cannot show text")
    build_app(loaded).launch(server_name=args.host, server_port=args.port)
    return 0
