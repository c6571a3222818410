"""Type aliases shared by the math core."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

#: ``score_fn(x_t, sigma_bar) -> log_score``: ``x_t`` int64 (B, L), ``sigma_bar`` float (B,) the total noise,
#: ``log_score`` float (B, L, vocab_size), log of ``p_t(x_t with position i set to y) / p_t(x_t)``,
#: 0 at the current token's entry. A trained network, an exact score or a user's own model all fit.
ScoreFn = Callable[[Tensor, Tensor], Tensor]
