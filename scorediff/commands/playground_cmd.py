"""``scorediff playground``: a local web page that shows a checkpoint filling in text (the ``[ui]`` extra)."""

from __future__ import annotations

import argparse
import socket

from ..loading import load
from . import UsageError, add_load_options, check_device


def add_parser(commands) -> None:
    parser = commands.add_parser("playground", help="a local web page: fill in text and watch the sampler work")
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run directory, or Hub id org/name[@rev]")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    add_load_options(parser)
    parser.set_defaults(run=run_playground)


def _check_host(host: str) -> None:
    """``host`` is an address or a name this machine resolves (an unknown one made the server blame the port,
    after ten seconds of retries, in several lines)."""
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError) as error:
        raise UsageError(f"--host {host!r} is no address this machine resolves ({error})") from None


def run_playground(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:  # beyond, the server's bind escaped as an OverflowError
        raise UsageError(f"--port must be in [1, 65535]; got {args.port}")
    _check_host(args.host)
    check_device(args.device)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ImportError("scorediff playground needs Gradio: pip install 'scorediff[ui]'") from None
    from ..playground import build_app

    loaded = load(args.checkpoint, device=args.device, dtype=args.dtype)
    if loaded.tokenizer is None:
        raise UsageError(f"{loaded.path} has no tokenizer, so the page cannot show text")
    build_app(loaded).launch(server_name=args.host, server_port=args.port)
    return 0
