"""What the diffusion objectives share: classifier-free label dropout and how their samplers read the options."""

from __future__ import annotations

import torch
from torch import Tensor

from ..sampling.options import OptionError, SamplingOptions


def drop_labels(label: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """``label`` (B,) with a ``fraction`` of the rows replaced by the null label (-1), so that one network learns the
    conditional and the unconditional model (classifier-free guidance)."""
    dropped = torch.rand(label.shape, generator=generator) < fraction
    return torch.where(dropped, -1, label)


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
