"""What a training step optimises and how a trained model is scored and sampled.

The trainer asks an objective for the loss of a batch and knows nothing else of the math; the commands ask
it to score (an upper bound for diffusion, the exact negative log-likelihood for an autoregressive model) and
to sample, so every benchmark compares the two through the same code path.
"""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..checkpoint import Header
from ..devices import fast_bf16
from ..errors import InputError
from ..graphs import Graph
from ..model import ModelConfig
from ..sampling import SampleStats, SampleTrajectory
from ..sampling.blocks import default_block, generate_in_blocks
from ..sampling.options import OptionError, SamplingOptions
from ..schedules import NoiseSchedule
from ..types import ScoreFn


class Objective(ABC):
    """One way of modelling sequences of ``num_tokens`` data tokens.

    Subclasses set ``name`` and ``exact`` and implement the methods below. Tensors of tokens are int64
    ``(batch_size, seq_len)``; per-sequence values are nats, float ``(batch_size,)``.
    """

    #: ``"diffusion"`` or ``"autoregressive"``: the ``objective`` a checkpoint's ``config.json`` states.
    name: ClassVar[str]
    #: Whether ``nll`` is the exact negative log-likelihood (True) or an upper bound on it (False).
    exact: ClassVar[bool]
    #: Number of data tokens.
    num_tokens: int
    #: The network's input vocabulary (data tokens plus a mask or begin-of-sequence state).
    vocab_size: int

    @abstractmethod
    def header(self) -> Header:
        """What ``config.json`` states about the model outright."""

    @abstractmethod
    def build_model(self, config: ModelConfig) -> nn.Module:
        """The network for this objective; ``config.vocab_size`` is replaced by ``self.vocab_size``."""

    @abstractmethod
    def draw(
        self, x_0: Tensor, generator: torch.Generator, label: Tensor | None = None, given: Tensor | None = None
    ) -> dict[str, Tensor]:
        """The randomness of one training step for the global batch ``x_0``, drawn on the CPU.

        Drawn for the whole batch on every process and then sliced by rows, so a run on N processes sees
        the same draws as a run on one. Returns tensors whose first dimension is the batch. The per-example
        fields: ``label`` (B,), a class-conditional model's class; ``given`` (B, L) bool, a prompt's positions,
        conditioned on and not scored.
        """

    @abstractmethod
    def loss(self, network: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Training loss of a batch from ``draw``, nats per sequence, float ``(batch_size,)``."""

    @abstractmethod
    def nll(
        self,
        model: nn.Module,
        x_0: Tensor,
        generator: torch.Generator | None = None,
        num_t: int = 32,
        given: Tensor | None = None,
    ) -> Tensor:
        """``-log p(x_0)`` (exact) or an upper bound on it, nats per sequence, float64 ``(batch_size,)``; with
        ``given`` (B, L) bool, that of the other positions given those.

        ``num_t`` is the number of Monte Carlo noise levels of a bound; an exact objective ignores it.
        """

    #: The fields of ``SamplingOptions`` that ``sample`` reads; any other must keep its default.
    option_fields: ClassVar[frozenset[str]]
    #: How a message names this kind of model ("a diffusion model").
    described: ClassVar[str]
    #: Whether the model generates left to right (it sees no suffix, so it only continues a prefix).
    left_to_right: ClassVar[bool] = False
    #: The forward process and its noise schedule (None for an objective without one).
    graph: Graph | None = None
    schedule: NoiseSchedule | None = None

    def sequence_score(self, model: nn.Module) -> ScoreFn | None:
        """The model as a ``ScoreFn`` of whole sequences (what ``scorediff.sample`` and ``elbo`` take), or None when
        the objective samples and scores only through its own ``sample`` and ``nll``."""
        return None

    def sample(
        self,
        model: nn.Module,
        shape: tuple[int, int],
        options: SamplingOptions | None = None,
        *,
        condition: tuple[Tensor, Tensor] | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Generation:
        """Draw ``shape`` tokens; ``condition = (tokens, given)`` fixes the tokens where ``given`` is True.

        Past the model's context the tokens are generated window by window (``generate_in_blocks``), each new
        window given the tokens before it (``options.block`` new tokens each; half the context by default).

        Args:
            model (nn.Module): the objective's network.
            shape (tuple[int, int]): (batch_size, length).
            options (SamplingOptions | None): how to sample (default: ``SamplingOptions()``).
            condition (tuple[Tensor, Tensor] | None): int64 and bool, shape ``shape`` each.
            generator (torch.Generator | None): the source of randomness.
            device: where to sample.
        """
        options = self.check_options(options)
        started = time.perf_counter()
        model = inference_copy(model, device, options.bf16)
        fill = self.window_filler(model, options, generator, device)
        tokens, given = condition if condition is not None else nothing_given(shape, device)
        context = model.config.seq_len
        x = generate_in_blocks(fill, tokens, given, context, options.block or default_block(context))
        seconds = time.perf_counter() - started
        return Generation(x, SampleStats(fill.nfe, fill.steps, seconds, shape[0] * shape[1], fill.nfe_per_sequence))

    def check_options(self, options: SamplingOptions | None) -> SamplingOptions:
        """``options`` (None: the defaults), refusing a field this objective does not read set to other than its
        default, so that no option is silently ignored."""
        options = SamplingOptions.of(options)
        unused = [name for name in options.changed() if name not in self.option_fields]
        if unused:
            raise OptionError(
                unused[0], f"does not apply to {self.described}; its options: {', '.join(sorted(self.option_fields))}"
            )
        return options

    @abstractmethod
    def window_filler(self, model: nn.Module, options: SamplingOptions, generator, device) -> WindowFiller:
        """What fills one window of at most the context, given some of its tokens (checking ``options``)."""


@dataclass
class Generation:
    """What ``Objective.sample`` and ``scorediff.generate`` return.

    Attributes:
        tokens (Tensor): int64, shape (batch_size, length).
        stats (SampleStats): network calls, steps, seconds and tokens of the call.
        trajectory (SampleTrajectory | None): every intermediate state, when asked for (``options.trajectory``).
    """

    tokens: Tensor
    stats: SampleStats
    trajectory: SampleTrajectory | None = None


class WindowFiller:
    """``fill(tokens, given) -> (tokens, nfe, steps[, nfe_per_sequence])`` for one window, counted over the windows
    of a ``sample``; a fill that skips some sequences in some calls (a cached score) returns the mean number of
    calls each sequence took part in, any other took every sequence in every call.

    Attributes:
        nfe (int): network calls so far.
        steps (int): sampler steps so far.
        nfe_per_sequence (float): calls each sequence took part in so far, the mean over the batch.
    """

    def __init__(self, fill: Callable[[Tensor, Tensor], tuple]):
        self.fill, self.nfe, self.steps, self.nfe_per_sequence = fill, 0, 0, 0.0

    def __call__(self, tokens: Tensor, given: Tensor) -> Tensor:
        x, nfe, steps, *per_sequence = self.fill(tokens, given)
        self.nfe, self.steps = self.nfe + nfe, self.steps + steps
        self.nfe_per_sequence += per_sequence[0] if per_sequence else nfe
        return x


def check_scored(x_0: Tensor, num_tokens: int, model: nn.Module, given: Tensor | None = None) -> None:
    """What ``nll`` scores: int tokens (B, L) of the data vocabulary, at most the model's context long (a longer
    sequence would be scored at positions the network never saw), and ``given`` a bool mask of the same shape."""
    if not isinstance(x_0, Tensor) or x_0.dtype.is_floating_point or x_0.dtype.is_complex or x_0.dtype == torch.bool:
        raise InputError(f"x_0 must be an integer tensor; got {getattr(x_0, 'dtype', type(x_0).__name__)}")
    if x_0.dim() != 2 or x_0.numel() == 0:
        raise InputError(f"x_0 must have shape (batch_size, length), neither 0; got {tuple(x_0.shape)}")
    context = getattr(getattr(model, "config", None), "seq_len", None)
    if context is not None and x_0.shape[1] > context:
        raise InputError(f"x_0 is {x_0.shape[1]} tokens long; the model's context is {context} (score windows of it)")
    if int(x_0.min()) < 0 or int(x_0.max()) >= num_tokens:
        raise InputError(f"x_0 must be in [0, {num_tokens}); got values in [{int(x_0.min())}, {int(x_0.max())}]")
    if given is not None and (not isinstance(given, Tensor) or given.dtype != torch.bool or given.shape != x_0.shape):
        raise InputError(f"given must be a bool tensor of x_0's shape {tuple(x_0.shape)}")


def nothing_given(shape: tuple[int, int], device) -> tuple[Tensor, Tensor]:
    """The condition of an unconditional ``sample``: tokens int64 and ``given`` bool, both zeros of ``shape``."""
    return torch.zeros(shape, dtype=torch.int64, device=device), torch.zeros(shape, dtype=torch.bool, device=device)


def inference_copy(model: nn.Module, device, bf16: bool) -> nn.Module:
    """The model to sample with: a bf16 copy where asked and the hardware does bf16 natively, else the model.

    A copy in bf16 is cast once; autocast would cast every weight again at each of the sampler's network calls.
    """
    if bf16 and fast_bf16(torch.device(device or "cpu")):
        return copy.deepcopy(model).to(torch.bfloat16)
    return model


def prefix_length(given: Tensor, kind: str) -> int:
    """How many leading positions ``given`` (B, L) marks, refusing anything but the same prefix in every row
    (``kind`` names the model in the message)."""
    prefix = int(given[0].long().cumprod(0).sum())
    if not (given[:, :prefix].all() and not given[:, prefix:].any()):
        raise InputError(f"{kind} can only continue a prefix; the given tokens are not one")
    return prefix
