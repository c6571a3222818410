"""The sampling options of ``scorediff sample`` and ``infill``: the run's ``sampling`` section, then the flags given,
as one ``SamplingOptions``; every mistake a one-line ``UsageError`` naming the flag."""

from __future__ import annotations

from contextlib import contextmanager

from ..sampling.options import OptionError, SamplingOptions
from . import UsageError, label_id

#: each flag and the field of ``SamplingOptions`` it sets
FLAGS = {
    "--steps": "steps",
    "--predictor": "predictor",
    "--temperature": "temperature",
    "--top-p": "top_p",
    "--sample-tokens": "greedy",
    "--greedy-tail": "greedy_tail",
    "--order": "order",
    "--tokens-per-step": "tokens_per_step",
    "--threshold": "threshold",
    "--remask-rounds": "remask_rounds",
    "--remask-tokens": "remask_tokens",
    "--no-cache": "cache",
    "--approximate-cache": "approximate_cache",
    "--cache-block": "cache_block",
    "--block": "block",
    "--label": "label",
    "--guidance": "guidance",
    "--trajectory": "trajectory",
}
#: the flags that only a diffusion model reads
DIFFUSION_FLAGS = [flag for flag in FLAGS if flag not in ("--temperature", "--top-p", "--no-cache", "--block")]


def sampling_options(args, loaded) -> SamplingOptions:
    """The run's sampling options with the flags given in their place, checked once (``SamplingOptions``)."""
    if loaded.kind == "autoregressive":
        for flag in DIFFUSION_FLAGS:
            if _given(args, flag):
                raise UsageError(f"{flag} applies to diffusion models; this checkpoint is autoregressive")
    if getattr(args, "greedy", False) and loaded.kind != "autoregressive":
        raise UsageError("--greedy applies to autoregressive models (an --order takes the likeliest token already)")
    if args.guidance is not None and args.label is None:
        raise UsageError("--guidance needs --label (the class to guide towards)")
    if args.remask_tokens is not None and not args.remask_rounds:
        raise UsageError("--remask-tokens applies with --remask-rounds")
    if args.cache_block is not None and args.approximate_cache in (None, "none"):
        raise UsageError("--cache-block applies with --approximate-cache prefix or dual")
    run = loaded.config.sampling.options(loaded.kind) if loaded.config is not None else SamplingOptions()
    with flag_errors():
        options = SamplingOptions.of(run, **_flag_values(args, loaded))
    _check_model(options, args, loaded)
    return options


@contextmanager
def flag_errors():
    """Turn an ``OptionError`` (raised here or by the objective while it samples) into a ``UsageError`` naming the
    flag that set the field."""
    try:
        yield
    except OptionError as error:
        raise UsageError(f"{_flag(error.field)} {error.reason}") from None


def _given(args, flag: str) -> bool:
    value = getattr(args, flag[2:].replace("-", "_"))
    return value is not None and value is not False


def _flag_values(args, loaded) -> dict:
    """The fields the flags set: only those given, so that the run's own options hold otherwise."""
    values = {FLAGS[flag]: getattr(args, flag[2:].replace("-", "_")) for flag in FLAGS if _given(args, flag)}
    if "order" in values:  # --order replaces the run's order with its companion
        values.setdefault("tokens_per_step", None)
    if "greedy" in values:
        values["greedy"] = False  # --sample-tokens: draw each token instead of committing the likeliest
    if getattr(args, "greedy", False):  # --greedy (autoregressive): the likeliest token at every position
        values["greedy"] = True
    if "cache" in values:
        values["cache"] = False
    if "trajectory" in values:
        values["trajectory"] = True
    if "label" in values:
        values["label"] = label_id(loaded, values["label"])
    return values


def _check_model(options: SamplingOptions, args, loaded) -> None:
    """What the options ask of the model (masks to fill, one window at once, a context to remask within), and the
    flags that mean something only in an order the model chooses."""
    if loaded.kind == "autoregressive":
        return
    if options.order == "random" and not options.tokens_per_step and options.threshold is None:
        for flag, given in (("--sample-tokens", args.sample_tokens), ("--remask-rounds", args.remask_rounds)):
            if given:
                raise UsageError(f"{flag} applies with --order confidence, margin or entropy")
    if options.trajectory and options.adaptive:
        raise UsageError("--trajectory is drawn by the random order's samplers; --order draws none")
    if args.predictor is not None and options.adaptive:  # an order commits tokens itself: it has no step rule
        raise UsageError(
            "--predictor is the random order's step rule; --order, --tokens-per-step and --threshold use none"
        )
    uniform = loaded.graph.mask_id is None
    if options.predictor == "first_hitting" and uniform:
        raise UsageError("--predictor first_hitting needs the absorbing graph; this model uses the uniform graph")
    if options.adaptive and uniform:
        raise UsageError("--order needs the absorbing graph (masks to fill); this model uses the uniform graph")
    if options.trajectory and loaded.objective.left_to_right:
        raise UsageError("--trajectory draws one window at once; a block diffusion model fills one block at a time")
    context = loaded.model.config.seq_len
    if options.remask_rounds > context:  # each round is a network call; more than one per position is waste
        raise UsageError(f"--remask-rounds must be at most the context, {context}; got {options.remask_rounds}")


def _flag(field: str) -> str:
    """The flag that sets ``field``."""
    return next((flag for flag, name in FLAGS.items() if name == field), field)
