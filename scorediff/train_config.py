"""The ``train`` section of a run's configuration: the loop, its batch and clocks, evaluation, checkpoints, where
it runs and how it is sharded, and LoRA; it checks its own values when built (``ValueError`` naming the field).
The other sections are in ``scorediff.config_sections``."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from .checks import MAX_STEPS, at_least, one_of, within

DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,attn_qkv,attn_out,blocks.*.mlp.0,blocks.*.mlp.2"
"""The attention and MLP linears of the llama backbone (model/llama.py) and of the DiT (model/transformer.py)."""
LORA_TARGET = re.compile(r"[A-Za-z0-9_*]+(\.[A-Za-z0-9_*]+)*")
PARALLEL = ("ddp", "fsdp")
MAX_SAMPLES = 2**16
"""At most this many preview samples: more are a mistake, refused before a run trains for hours to reach them."""


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
