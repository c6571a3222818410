"""What the diffusion objectives share: classifier-free label dropout, masks drawn by their count, and how their
samplers read the options."""

from __future__ import annotations

import torch
from torch import Tensor

from ..sampling.options import OptionError, SamplingOptions


def drop_labels(label: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """``label`` (B,) with a ``fraction`` of the rows replaced by the null label (-1), so that one network learns the
    conditional and the unconditional model (classifier-free guidance)."""
    dropped = torch.rand(label.shape, generator=generator) < fraction
    return torch.where(dropped, -1, label)


def mask_by_count(u: Tensor, free: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
    """Mask ``k = 1 + floor(u n)`` of the ``n`` free positions of each row (uniform on ``1..n`` for ``u`` uniform in
    [0, 1)), the positions chosen uniformly at random: the any-order form's draw (``mask_count``).

    Args:
        u (Tensor): float, shape (...,) in [0, 1), one per row (a sequence, or a block of one).
        free (Tensor): bool, shape (..., L): the positions that may be masked (not given).
        generator (torch.Generator | None): draws the positions.

    Returns:
        ``(masked, k, n)``: bool (..., L), the masked positions, all of them free; int64 (...,), how many (1 for a
        row with nothing free, of which none is masked); int64 (...,), the free positions, 0 included.
    """
    n = free.sum(-1)  # (...,)
    at_least_one = n.clamp_min(1)
    count = 1 + (u * at_least_one).long().clamp_max(at_least_one - 1)  # uniform on 1..n
    keys = torch.rand(free.shape, generator=generator, device=free.device).masked_fill(~free, 2.0)
    rank = keys.argsort(-1).argsort(-1)  # a random order of the free positions first, (..., L)
    return (rank < count[..., None]) & free, count, n


def draw_keywords(options: SamplingOptions) -> dict:
    """What the random order's samplers read of ``options``: how each token is drawn."""
    return {"temperature": options.temperature, "top_p": options.top_p, "greedy_tail": options.greedy_tail}


def check_greedy(options: SamplingOptions) -> bool:
    """Whether ``options`` decode in an order; ``greedy=True`` is refused without one (the samplers only draw)."""
    if options.greedy and not options.adaptive:
        raise OptionError(
            "greedy",
            "applies to decoding in an order; the random order's samplers draw every token (greedy_tail "
            "takes the likeliest at their last step)",
        )
    return options.adaptive
