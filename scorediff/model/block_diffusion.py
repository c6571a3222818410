"""The block diffusion network (BD3-LM; Arriola et al., ICLR 2025): the SEDD transformer with an attention
pattern that makes it left to right over blocks and bidirectional within each.

Legend: B batch, L sequence length, T positions in this call, V vocabulary size (with the mask), D hidden size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError
from .attention import KVCache, block_diffusion_mask
from .transformer import ModelConfig, SEDDTransformer


class BlockDiffusionTransformer(SEDDTransformer):
    r"""A time-independent absorbing denoiser of each block given the clean blocks before it.

    The sequence is cut into blocks of ``config.block_size`` positions; the network gives, at every position
    of block ``b``, ``p_theta(x_0^i \mid x_t^{(b)}, x_0^{(<b)})``: the clean token given the block's noised tokens
    and the clean blocks before it. Training scores every block at once from the concatenation ``[x_t, x_0]``
    (``forward(x_t, x_0)``, the attention of ``block_diffusion_mask``); sampling fills one block
    at a time against a ``KVCache`` of the finished ones (``block_log_probs`` and ``extend_cache``), and both
    compute the same function.

    Args:
        config (ModelConfig): architecture, with ``block_size`` > 0 and ``time_conditioning=False``.
        mask_id (int): the absorbing graph's mask state.
    """

    def __init__(self, config: ModelConfig, mask_id: int | None = None):
        if not config.block_size:
            raise InputError("a block diffusion network needs model.block_size > 0")
        if config.time_conditioning or mask_id is None:
            raise InputError("block diffusion needs the absorbing graph and model.time_conditioning=false")
        super().__init__(config, mask_id)

    def forward(self, x_t: Tensor, x_0: Tensor, label: Tensor | None = None) -> Tensor:
        """``log p_theta(x_0 = y | x_t^{(b)}, x_0^{(<b)})``, float32 (B, L, V) (``-inf`` at the mask), at every
        position of ``x_t`` (int64 (B, L)), given the clean tokens ``x_0`` (int64 (B, L)) of the blocks before its
        own. Unlike ``SEDDTransformer`` this is not a ``ScoreFn``: a block's score needs the clean blocks before it.
        """
        if x_0.shape != x_t.shape:
            raise InputError(f"x_0 must have the shape of x_t, {tuple(x_t.shape)}; got {tuple(x_0.shape)}")
        batch_size, seq_len = x_t.shape
        x = self.vocab_embed(torch.cat([x_t, x_0], dim=1))  # (B, 2L, D)
        c = self.adaln_input(None, label, batch_size, x.dtype, x_t.device)
        cos, sin = self.rotary(seq_len)
        cos, sin = cos.repeat(2, 1), sin.repeat(2, 1)  # the clean copy sits at the same positions, (2L, K)
        mask = block_diffusion_mask(seq_len, self.config.block_size, x_t.device)
        last = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            # the clean copy only lends keys and values: the last block computes the noised positions alone
            x = block(x, c, cos, sin, mask=mask, queries=seq_len if index == last else None)
        return self._token_log_probs(self.output_layer(x, c).float())  # (B, L, V)

    def logits(self, x_t: Tensor, sigma_bar: Tensor | None, label: Tensor | None = None) -> Tensor:
        raise InputError("a block diffusion network sees the clean blocks before each block: call model(x_t, x_0)")

    def new_cache(self, batch_size: int, max_len: int, device=None, dtype=None) -> KVCache:
        """An empty cache for the clean blocks of ``batch_size`` sequences of up to ``max_len`` positions."""
        return KVCache.for_model(self.config, batch_size, max_len, dtype or self.vocab_embed.weight.dtype, device)

    def extend_cache(self, x_0: Tensor, cache: KVCache, label: Tensor | None = None) -> None:
        """Append the clean block ``x_0`` (B, T) after the cached ones: its keys and values are kept."""
        self._cached_pass(x_0, cache, label)
        cache.advance(x_0.shape[1])

    def block_log_probs(
        self, x_t: Tensor, cache: KVCache, label: Tensor | None = None, clean: Tensor | None = None
    ) -> Tensor:
        """``log p_theta(x_0 = y | x_t, cached blocks)`` (B, T, V) for the noised block ``x_t`` (B, T) that follows
        the cached ones; ``-inf`` at the mask. The cache is left as it was, but for ``clean`` (B, C): finished
        tokens that go before ``x_t``, appended to the cache in the same call (as ``extend_cache`` would)."""
        if clean is None:
            x, c = self._cached_pass(x_t, cache, label)
            return self._token_log_probs(self.output_layer(x, c).float())
        before, new = cache.length, clean.shape[1]
        keys = torch.ones(new + x_t.shape[1], before + new + x_t.shape[1], dtype=torch.bool, device=x_t.device)
        keys[:new, before + new :] = False  # the clean tokens do not see the noised block after them
        x, c = self._cached_pass(torch.cat([clean, x_t], dim=1), cache, label, keys)
        cache.advance(new)
        return self._token_log_probs(self.output_layer(x[:, new:], c).float())

    def _cached_pass(
        self, tokens: Tensor, cache: KVCache, label: Tensor | None, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """The blocks over ``tokens`` (B, T) at the positions after the cached ones; their keys and values are
        written after the cached ones (kept only if the caller advances the cache). ``mask``: bool (T, cached + T)
        of the keys each token sees (None: all)."""
        x = self.vocab_embed(tokens)  # (B, T, D)
        c = self.adaln_input(None, label, tokens.shape[0], x.dtype, tokens.device)
        cos, sin = self.rotary(tokens.shape[1], cache.length)
        for index, block in enumerate(self.blocks):
            x = block(x, c, cos, sin, cache, index, mask)
        return x, c
