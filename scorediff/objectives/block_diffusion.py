r"""Block diffusion (BD3-LM; Arriola et al., ICLR 2025): absorbing diffusion within blocks, left to right across
them, so the likelihood bound moves from the all-at-once diffusion bound (one block) to the exact autoregressive
likelihood (blocks of one token).

The chain rule over blocks is exact, and each block's term is the any-order bound of a time-independent absorbing
model (RADD; Ou et al. 2024) given the clean blocks before it:

.. math:: -\log p_\theta(x_0) \le \sum_b \mathbb E_{k \sim U\{1..B\}} \frac{B}{k}
          \mathbb E_{|M| = k} \sum_{i \in M} -\log p_\theta(x_0^i \mid x_0^{(b) \setminus M}, x_0^{(<b)})

with ``B`` the block size and ``M`` the masked positions of block ``b``; it is an equality for a denoiser whose
conditionals are those of one distribution. ``B = 1`` leaves one term per token, ``-log p(x_i | x_<i)``.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ..checkpoint import Header
from ..errors import InputError
from ..graphs import Graph
from ..graphs.base import expm1_stable
from ..losses import sample_times
from ..model import BlockDiffusionTransformer, ModelConfig, build_network
from ..sampling.block_diffusion import sample_blocks
from ..sampling.guidance import check_label
from ..sampling.options import SamplingOptions
from ..schedules import NoiseSchedule
from .base import Objective, WindowFiller, check_scored, prefix_length
from .diffusion import DIFFUSION_OPTIONS
from .shared import check_greedy, draw_keywords, drop_labels, mask_by_count


class BlockDiffusionObjective(Objective):
    """Block diffusion with the absorbing graph and a time-independent denoiser.

    Training draws, for every block of every row, a number ``k`` of masked positions (``mask_count``) or a time
    ``t`` (each position masked with probability ``1 - e^{-sigma_bar(t)}``), stratified over the batch's blocks,
    and weights the block's masked cross-entropies by ``B / k`` or ``sigma(t) / (e^{sigma_bar(t)} - 1)``: the
    bound above in expectation. ``nll`` estimates it with ``num_t`` counts per block, stratified.

    ``sample`` takes the options of ``DiffusionObjective.sample`` but ``trajectory``; ``steps`` is the number of
    sampler steps over the whole window, spread evenly over its blocks (at least one each), and an adaptive
    ``order`` decodes inside each block, the blocks left to right. Only a prefix may be given: a block sees the
    blocks before it, not those after.

    Args:
        graph (Graph): the absorbing graph.
        schedule (NoiseSchedule): its schedule (log-linear with ``mask_count``).
        block_size (int): positions per block.
        mask_count (bool): draw mask counts (the any-order form) instead of times.
        antithetic (bool): stratify the draws across the batch's blocks.
        t_min (float): smallest training time drawn without ``mask_count``.
        label_dropout (float): labelled data: the fraction of rows trained with the null label (-1).
    """

    name = "diffusion"
    exact = False
    described = "a block diffusion model"
    option_fields = DIFFUSION_OPTIONS - {"trajectory", "approximate_cache", "cache_block"}  # its cache is exact
    left_to_right = True

    def __init__(
        self,
        graph: Graph,
        schedule: NoiseSchedule,
        block_size: int,
        mask_count: bool = True,
        antithetic: bool = True,
        t_min: float = 1e-3,
        label_dropout: float = 0.1,
    ):
        if graph.mask_id is None:
            raise InputError("block diffusion (model.block_size > 0) needs diffusion.graph=absorbing")
        if int(block_size) < 1:
            raise InputError(f"block_size must be >= 1; got {block_size}")
        self.graph, self.schedule, self.block_size = graph, schedule, int(block_size)
        self.num_tokens, self.vocab_size = graph.num_tokens, graph.vocab_size
        self.mask_count, self.antithetic, self.t_min, self.label_dropout = mask_count, antithetic, t_min, label_dropout

    def header(self) -> Header:
        return Header(self.name, "absorbing", self.num_tokens, self.graph.mask_id, self.vocab_size)

    def build_model(self, config: ModelConfig) -> BlockDiffusionTransformer:
        config = dataclasses.replace(config, vocab_size=self.vocab_size, scale_by_sigma=False)
        if config.block_size != self.block_size or config.time_conditioning:
            raise InputError(
                f"a block diffusion objective of block_size {self.block_size} needs model.block_size="
                f"{self.block_size} and model.time_conditioning=false"
            )
        return build_network("block_diffusion", config, self.graph.mask_id)

    def draw(
        self, x_0: Tensor, generator: torch.Generator, label: Tensor | None = None, given: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Noised ``x_t`` and each position's loss weight (B, L): per block a mask count or a time. ``given``
        (B, L) bool: positions (a prompt) never noised, so the loss is the bound of the rest given them."""
        blocks, free = self._blocks(x_0), self._free(x_0, given)
        u = sample_times(blocks.numel() // self.block_size, antithetic=self.antithetic, t_min=0.0, generator=generator)
        u = u.view(blocks.shape[:2])  # (B, N) in [0, 1)
        if self.mask_count:
            masked, weight = self._mask_counts(u, free, generator)
        else:
            t = self.t_min + (1 - self.t_min) * u
            sigma_bar = self.schedule.total(t)
            drawn = torch.rand(blocks.shape, generator=generator, dtype=torch.float64)
            masked = (drawn < -torch.expm1(-sigma_bar)[..., None]) & free
            weight = self.schedule.rate(t) / expm1_stable(sigma_bar)
        x_t = torch.where(masked.view(x_0.shape), self.graph.mask_id, x_0)
        batch = {"x_0": x_0, "x_t": x_t, "weight": weight.float().repeat_interleave(self.block_size, dim=1)}
        if label is not None:
            batch["label"] = drop_labels(label, self.label_dropout, generator)
        return batch

    def _mask_counts(self, u: Tensor, free: Tensor, generator) -> tuple[Tensor, Tensor]:
        """``k = 1 + floor(u n)`` of the ``n`` free positions of each block masked, chosen uniformly; weights
        ``n / k``, (B, N): zero for a block with nothing free. ``free`` (B, N, block) bool."""
        masked, count, n = mask_by_count(u, free, generator)  # (B, N, block), (B, N), (B, N)
        return masked, n / count.double()

    def _free(self, x_0: Tensor, given: Tensor | None) -> Tensor:
        """The positions that may be noised, (B, N, block) bool: all but the ``given`` ones."""
        free = torch.ones_like(x_0, dtype=torch.bool) if given is None else ~given
        return free.view(x_0.shape[0], -1, self.block_size)

    def _blocks(self, x_0: Tensor) -> Tensor:
        """``x_0`` (B, L) as (B, N, block_size); the length must be a whole number of blocks."""
        if x_0.shape[1] % self.block_size:
            raise InputError(f"block diffusion scores whole blocks of {self.block_size}; got length {x_0.shape[1]}")
        return x_0.view(x_0.shape[0], -1, self.block_size)

    def loss(self, network: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        extra = {"label": batch["label"]} if "label" in batch else {}
        return self._weighted_cross_entropy(network, batch["x_0"], batch["x_t"], batch["weight"], extra)

    def _weighted_cross_entropy(self, network, x_0: Tensor, x_t: Tensor, weight: Tensor, extra: dict) -> Tensor:
        """``sum_i w_i [x_t^i = mask] (-log p_theta(x_0^i | ...))``, float (B,)."""
        log_p = network(x_t, x_0, **extra).gather(-1, x_0[..., None]).squeeze(-1)  # (B, L)
        return -(weight * torch.where(x_t == self.graph.mask_id, log_p, 0.0)).sum(-1)

    @torch.no_grad()
    def nll(
        self,
        model: nn.Module,
        x_0: Tensor,
        generator: torch.Generator | None = None,
        num_t: int = 32,
        given: Tensor | None = None,
        label: Tensor | None = None,
    ) -> Tensor:
        """The bound per sequence of ``x_0`` int64 (B, L), nats, float64 (B,): ``num_t`` mask counts per block,
        stratified over 1..B (an offset drawn per block), each with its own random positions. ``label`` int64 (B,):
        the class-conditional bound; ``given`` (B, L) bool: the bound of the other positions given those (counts
        over each block's free ones)."""
        if int(num_t) < 1:
            raise InputError(f"num_t must be >= 1; got {num_t}")
        check_scored(x_0, self.num_tokens, model, given)
        blocks, free = self._blocks(x_0), self._free(x_0, given)
        offset = torch.rand(blocks.shape[:2], generator=generator, device=x_0.device, dtype=torch.float64)
        extra = {} if label is None else {"label": label}
        total = torch.zeros(x_0.shape[0], dtype=torch.float64, device=x_0.device)
        for k in range(int(num_t)):
            masked, weight = self._mask_counts((k + offset) / num_t, free, generator)
            x_t = torch.where(masked.view(x_0.shape), self.graph.mask_id, x_0)
            weight = weight.float().repeat_interleave(self.block_size, dim=1)
            total += self._weighted_cross_entropy(model, x_0, x_t, weight, extra).double()
        return total / num_t

    def window_filler(self, model, options: SamplingOptions, generator, device) -> WindowFiller:
        """Each window block by block, left to right (``sample_blocks``); only a prefix of it may be given."""
        check_label(model, options.label, options.guidance)
        keywords = {"cache": options.cache, "label": options.label, "guidance": options.guidance}
        keywords.update(draw_keywords(options))
        if check_greedy(options):
            keywords["order"] = options.order_keywords()

        def fill(window: Tensor, known: Tensor) -> tuple[Tensor, int, int]:
            prefix_length(known, self.described)
            per_block = max(1, round(options.steps * self.block_size / window.shape[1]))
            return sample_blocks(
                model, self.graph, self.schedule, window, known, per_block, options.predictor,
                generator=generator, **keywords,
            )  # fmt: skip

        return WindowFiller(fill)
