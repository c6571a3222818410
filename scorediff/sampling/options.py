"""How to generate: one frozen dataclass, validated once, that every caller builds and every objective reads.

The run configuration's ``sampling`` section builds it (``SamplingConfig.options``), the command line fills it from
its flags, the playground, the lm-eval adapter and the benchmarks construct it, and ``Objective.sample`` takes it.
A mistake raises ``OptionError`` naming the field, which the command line turns into the name of its flag.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import dataclass
from typing import Literal

from ..errors import InputError
from .orders import ORDERS
from .predictors import SAMPLERS

#: The ``approximate_cache`` choices: none (exact) and Fast-dLLM's two approximate caches.
APPROXIMATE_CACHES = ("none", "prefix", "dual")


class OptionError(InputError):
    """A sampling option out of its range: ``field`` names it, ``reason`` says what was expected and what came."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field} {reason}")
        self.field, self.reason = field, reason


@dataclass(frozen=True)
class SamplingOptions:
    """The options of one call of ``Objective.sample`` (and ``scorediff.generate``).

    Every field has a default that samples the model's own law where one is defined; which fields an objective
    reads is its ``option_fields``, and a field it does not read must keep its default.
    """

    steps: int = 128
    """Diffusion: reverse steps per window (block diffusion: spread over the window's blocks)."""
    predictor: str = "analytic"
    """Diffusion: the step rule, ``analytic``, ``euler`` or ``first_hitting`` (exact, one token per network call,
    absorbing graph; ignores ``steps``); a ``Predictor`` object of one's own also fits."""
    temperature: float = 1.0
    """Finite, > 0: divides the log-probabilities a token is drawn from."""
    top_p: float = 1.0
    """In (0, 1]: nucleus sampling, the smallest set of likeliest tokens whose probability reaches it."""
    greedy: bool | None = None
    """True: take the most probable token instead of drawing one (an autoregressive model decodes greedily, an
    adaptive order commits its argmax); False: draw it at ``temperature``. None: each decoder's usual, a draw for
    a sampler of the model's law and the argmax for an adaptive order. The random order's samplers only draw."""
    greedy_tail: bool = False
    """Diffusion samplers: the final denoising step takes the likeliest token instead of drawing it."""
    order: str = "random"
    """Diffusion, absorbing graph: ``random`` (the samplers; exact) or a decoding order the model chooses,
    ``confidence``, ``margin`` or ``entropy`` (``scorediff.sampling.orders``; not samplers of the model's law)."""
    tokens_per_step: int | None = None
    """With an order: positions committed per network call (None: the masks spread over ``steps`` calls)."""
    threshold: float | None = None
    """In (0, 1], the confidence order only: also commit every position at least this sure."""
    remask_rounds: int = 0
    """With an order: rounds after the masks are filled that each refill the least sure commitments of a row."""
    remask_tokens: int = 1
    """With ``remask_rounds``: the commitments refilled per row and round."""
    end_token: int | None = None
    """With an order: the token that ends and pads an answer (a text model's end-of-text token), committed at a
    position only while every masked position before it takes it too, so that an order does not end an answer before
    writing it (``scorediff.sampling.orders``). None: ranked as any other token. ``scorediff sample --prompts``
    sets it to the tokenizer's end token for a model trained on prompted text."""
    approximate_cache: Literal["none", "prefix", "dual"] = "none"
    """With an order, a time-independent absorbing network: Fast-dLLM's approximate KV cache (Wu et al. 2025,
    arXiv 2505.22618). The window is decoded ``cache_block`` positions at a time, left to right; the first call of
    each block runs the whole sequence and keeps every position's keys and values, the block's later calls run only
    ``prefix``: the block and everything after it, or ``dual``: the block alone, against the kept ones.
    **Approximate**: reuses keys and values computed before the block's tokens changed (a bidirectional network's
    keys depend on every token), so the tokens may differ from ``none``'s exact decode
    (``scorediff.sampling.approximate_cache`` states how far, measured)."""
    cache_block: int = 32
    """With ``approximate_cache``: positions decoded per cache refresh (Fast-dLLM's block length)."""
    cache: bool = True
    """Skip work that cannot change the result: an autoregressive model's keys and values, a time-independent
    diffusion network's calls on unchanged sequences."""
    bf16: bool = True
    """Sample with a bf16 copy of the network where the hardware computes bf16 natively (draws stay float64)."""
    block: int | None = None
    """Past the model's context: new tokens per window (None: half the context)."""
    label: int | None = None
    """A class-conditional diffusion model's class id (None: the unconditional model)."""
    guidance: float = 0.0
    """With ``label``: the classifier-free guidance weight (0: the conditional model)."""
    trajectory: bool = False
    """Diffusion, one window, random order: also keep every intermediate state (``Generation.trajectory``)."""

    def __post_init__(self):
        _whole("steps", self.steps, 1)
        if isinstance(self.predictor, str) and self.predictor not in SAMPLERS:
            raise OptionError("predictor", f"must be one of {', '.join(SAMPLERS)}; got {self.predictor!r}")
        if not (_number(self.temperature) and 0 < self.temperature < math.inf):
            raise OptionError("temperature", f"must be finite and > 0; got {self.temperature!r}")
        if not (_number(self.top_p) and 0 < self.top_p <= 1):
            raise OptionError("top_p", f"must be in (0, 1]; got {self.top_p!r}")
        for name in ("greedy_tail", "cache", "bf16", "trajectory"):
            _flag(name, getattr(self, name))
        if self.greedy is not None:
            _flag("greedy", self.greedy)
        self._check_order()
        self._check_approximate_cache()
        if self.block is not None:
            _whole("block", self.block, 1)
        self._check_label()

    def _check_order(self) -> None:
        if self.order not in ORDERS:
            raise OptionError("order", f"must be one of {', '.join(ORDERS)}; got {self.order!r}")
        if self.tokens_per_step is not None:
            _whole("tokens_per_step", self.tokens_per_step, 1)
        if self.threshold is not None:
            if self.order != "confidence":
                raise OptionError("threshold", f"applies to the confidence order; got order {self.order!r}")
            if not (_number(self.threshold) and 0 < self.threshold <= 1):
                raise OptionError("threshold", f"must be in (0, 1]; got {self.threshold!r}")
        _whole("remask_rounds", self.remask_rounds, 0)
        _whole("remask_tokens", self.remask_tokens, 1)
        if self.remask_tokens != 1 and not self.remask_rounds:
            raise OptionError("remask_tokens", "applies with remask_rounds")
        if self.end_token is not None:
            _whole("end_token", self.end_token, 0)
            if not self.adaptive:
                raise OptionError("end_token", "applies to decoding in an order (the random order ranks nothing)")

    def _check_approximate_cache(self) -> None:
        _whole("cache_block", self.cache_block, 1)
        if self.approximate_cache not in APPROXIMATE_CACHES:
            raise OptionError(
                "approximate_cache", f"must be one of {', '.join(APPROXIMATE_CACHES)}; got {self.approximate_cache!r}"
            )
        if self.approximate_cache == "none":
            return
        if not self.adaptive:
            raise OptionError("approximate_cache", "applies to decoding in an order (set order or tokens_per_step)")
        if self.remask_rounds:  # a remasked position may sit in a block whose keys the cache no longer refreshes
            raise OptionError("approximate_cache", "does not combine with remask_rounds")
        if self.label is not None:
            raise OptionError("approximate_cache", "applies to an unconditional model; got a label")

    def _check_label(self) -> None:
        if self.label is not None:
            _whole("label", self.label, 0)
        if not (_number(self.guidance) and math.isfinite(self.guidance)):
            raise OptionError("guidance", f"must be a finite number; got {self.guidance!r}")
        if self.guidance != 0 and self.label is None:
            raise OptionError("guidance", "needs a label (the class to guide towards)")

    @classmethod
    def of(cls, options: SamplingOptions | None = None, **keywords) -> SamplingOptions:
        """``options`` (default: the defaults) with ``keywords`` replacing its fields; an unknown name raises
        ``InputError`` listing the valid ones."""
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(keywords) - set(names))
        if unknown:
            raise InputError(f"unknown sampling option {unknown[0]!r}; valid: {', '.join(names)}")
        if options is not None and not isinstance(options, SamplingOptions):
            raise InputError(f"options must be a SamplingOptions; got {type(options).__name__}")
        return dataclasses.replace(options or cls(), **keywords)

    @property
    def adaptive(self) -> bool:
        """Whether a diffusion model decodes in an order (or several positions per call) instead of sampling."""
        return (
            self.order != "random"
            or bool(self.tokens_per_step)
            or self.threshold is not None
            or bool(self.remask_rounds)
        )

    def changed(self) -> list[str]:
        """The names of the fields that differ from their defaults, in field order."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != f.default]

    def order_keywords(self) -> dict:
        """The keywords of ``decode_in_order`` (``tokens_per_step`` as given: None spreads over ``steps``)."""
        return {
            "order": self.order, "tokens_per_step": self.tokens_per_step, "threshold": self.threshold,
            "greedy": self.greedy is not False, "temperature": self.temperature,
            "remask_rounds": self.remask_rounds, "remask_tokens": self.remask_tokens, "end_token": self.end_token,
        }  # fmt: skip


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(name: str, value: object, low: int) -> None:
    """``value`` a whole number >= ``low`` (not a bool, not a float)."""
    try:
        number = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        number = None
    if number is None or number < low:
        raise OptionError(name, f"must be a whole number >= {low}; got {value!r}")


def _flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise OptionError(name, f"must be True or False; got {value!r}")
