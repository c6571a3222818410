"""A model for EleutherAI's lm-evaluation-harness (0.4.x), registered as ``scorediff`` when this module is imported
(``scorediff lm-eval`` does; or ``import scorediff.harness`` before ``lm_eval.simple_evaluate(model="scorediff",
model_args="checkpoint=...")``). Needs the ``[lm-eval]`` extra.

- ``loglikelihood``: ``log p(continuation | context)``. A diffusion model gives its conditional bound: the context
  is given (never noised), only the continuation is scored, ``mc_samples`` stratified times or mask counts per
  request from a fixed seed, so the number is a lower bound on the log-likelihood and the same on every run. An
  autoregressive model gives the exact value. ``is_greedy``: whether greedy decoding (for diffusion: the
  confidence order, greedy tokens) returns the continuation.
- ``loglikelihood_rolling``: a document in consecutive windows of the model's context, each scored given nothing
  before it, the last one given as much of the document before it as fits (so a document that fills whole
  windows is scored as ``scorediff eval`` scores windows).
- ``generate_until``: the library's samplers (a run's ``sampling`` section, or the options given) fill
  ``max_gen_toks`` positions after the context; the text is cut at the first stop sequence.

Contexts longer than the model's context lose their beginning, as the harness's own models do.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from .errors import InputError
from .generation import generate, sampling_options
from .loading import load
from .sampling.options import SamplingOptions

NAME = "scorediff"


@register_model(NAME)
class ScorediffLM(LM):
    """``model_args``: ``checkpoint`` (a run, checkpoint or Hub id), ``mc_samples`` (32), ``batch_size`` (16),
    ``seed`` (0), ``device`` (cpu), ``max_gen_toks`` (the default when a task gives none: 64), ``dtype`` (of the
    weights, ``scorediff.load``'s: float32 when None)."""

    def __init__(
        self, checkpoint: str, mc_samples=32, batch_size=16, seed=0, device="cpu", max_gen_toks=64, dtype=None
    ):
        super().__init__()
        self.loaded = load(checkpoint, device=device, dtype=dtype)
        if self.loaded.tokenizer is None:
            raise InputError(f"{checkpoint} has no tokenizer; lm-eval gives the model text")
        self.mc_samples, self.batch_size = _count("mc_samples", mc_samples), _count("batch_size", batch_size)
        self.seed, self.max_gen_toks = int(seed), _count("max_gen_toks", max_gen_toks)
        self._device = torch.device(device)
        self.length = self.loaded.model.config.seq_len

    # the harness's three requests ---------------------------------------------------------------------------

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [(self._encode(context), self._encode(continuation)) for context, continuation in self._args(requests)]
        return [(-nats, greedy) for nats, greedy in self.score_pairs(pairs, check_greedy=True)]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        results = []
        for (text,) in self._args(requests):
            tokens = self._encode(text)
            pairs = rolling_windows(tokens, self.length)
            results.append(-sum(nats for nats, _ in self.score_pairs(pairs)))
        return results

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        return [self._generate(context, dict(options)) for context, options in self._args(requests)]

    # scoring ---------------------------------------------------------------------------------------------------

    def score_pairs(self, pairs, check_greedy: bool = False) -> list[tuple[float, bool]]:
        """``-log p(continuation | context)`` (a bound for diffusion), nats, for token pairs; pairs of the same
        total length are scored in batches."""
        results: list[tuple[float, bool] | None] = [None] * len(pairs)
        rows, by_length = [], {}
        for index, (context, continuation) in enumerate(pairs):
            if not continuation:
                raise InputError("lm-eval asked for the likelihood of an empty continuation")
            rows.append(_fit(context, continuation, self.length))
            by_length.setdefault(len(rows[-1]), []).append(index)
        for indices in by_length.values():
            for first in range(0, len(indices), self.batch_size):
                batch = indices[first : first + self.batch_size]
                x = torch.tensor([rows[i] for i in batch], device=self._device)
                answer = torch.tensor([len(pairs[i][1]) for i in batch], device=self._device)
                given = torch.arange(x.shape[1], device=self._device) < (x.shape[1] - answer)[:, None]
                nats = self._nats(x, given)
                greedy = self._greedy(x, given) if check_greedy else [False] * len(batch)
                for i, value, hit in zip(batch, nats.tolist(), greedy, strict=True):
                    results[i] = (value, hit)
        return results

    @torch.no_grad()
    def _nats(self, x: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        objective, model = self.loaded.objective, self.loaded.model
        generator = torch.Generator(device=self._device).manual_seed(self.seed)
        return objective.nll(model, x, generator=generator, num_t=self.mc_samples, given=given).cpu()

    @torch.no_grad()
    def _greedy(self, x: torch.Tensor, given: torch.Tensor) -> list[bool]:
        options = SamplingOptions(greedy=True)
        if self.loaded.kind != "autoregressive":  # the likeliest token at the surest position, one per call
            options = replace(options, order="confidence", tokens_per_step=1)
        drawn = generate(self.loaded.objective, self.loaded.model, tuple(x.shape), options, condition=(x, given),
                         seed=self.seed, device=self._device).tokens  # fmt: skip
        return (drawn == x).all(-1).tolist()

    # generation ------------------------------------------------------------------------------------------------

    def _generate(self, context: str, options: dict) -> str:
        until = options.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        new = min(_count("max_gen_toks", options.pop("max_gen_toks", self.max_gen_toks)), self.length)
        chosen = sampling_options(self.loaded.config) if self.loaded.config is not None else SamplingOptions()
        if not options.pop("do_sample", True) and self.loaded.kind == "autoregressive":
            chosen = replace(chosen, greedy=True)
        if "temperature" in options and float(options["temperature"]) > 0:
            chosen = replace(chosen, temperature=float(options.pop("temperature")))
        prompt = self._encode(context)[-(self.length - new) :] if self.length > new else []
        tokens = torch.tensor([prompt + [0] * new], device=self._device)
        given = torch.tensor([[True] * len(prompt) + [False] * new], device=self._device)
        drawn = generate(self.loaded.objective, self.loaded.model, tuple(tokens.shape), chosen,
                         condition=(tokens, given), seed=self.seed, device=self._device).tokens  # fmt: skip
        text = self.loaded.tokenizer.decode(drawn[0, len(prompt) :].tolist())
        cut = min((text.index(stop) for stop in until if stop and stop in text), default=len(text))
        return text[:cut]

    # helpers ---------------------------------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        try:
            return self.loaded.tokenizer.encode(text) if text else []
        except ValueError as error:  # the tokenizer's own (a character outside its vocabulary), not the package's
            raise InputError(f"lm-eval gave text this model's tokenizer cannot encode: {error}") from None

    @staticmethod
    def _args(requests) -> list[tuple]:
        return [request.args for request in requests]


def _count(name: str, value) -> int:
    """``value`` (model_args come as text or numbers, a task's generation_kwargs from YAML) as a positive whole
    number, or a one-line error."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise InputError(f"{name} must be a positive whole number; got {value!r}")
    return int(text)


def _fit(context: list[int], continuation: list[int], length: int) -> list[int]:
    """Context and continuation in one row of at most ``length`` tokens, the context cut from the left."""
    if len(continuation) > length:
        raise InputError(f"a continuation of {len(continuation)} tokens does not fit the model's context of {length}")
    keep = length - len(continuation)
    return (context[-keep:] if keep else []) + continuation


def rolling_windows(tokens: list[int], length: int) -> list[tuple[list[int], list[int]]]:
    """``(context, continuation)`` pairs that score each token once: consecutive windows of ``length`` tokens
    given nothing, and a shorter last one given the tokens before it that fit."""
    pairs = []
    for start in range(0, len(tokens), length):
        piece = tokens[start : start + length]
        context = tokens[max(0, start - (length - len(piece))) : start] if len(piece) < length else []
        pairs.append((context, piece))
    return pairs
