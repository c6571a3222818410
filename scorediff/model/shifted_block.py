r"""Block diffusion with the shifted prediction of an AR parent (``model.shift`` with ``model.block_size``): the
block diffusion an AR model is adapted into (Fast-dLLM v2, SDAR), its AR head kept.

The output for position ``i`` is read from the hidden state at ``i - 1``, as in the shifted masked-diffusion llama.
Inside a block that is the noised token before ``i``; for the first position of a block it is the last clean token
of the block before (BOS for position 0), whose state sees only clean tokens: the first token of every block is
predicted exactly as the AR parent predicts it. The clean tokens attend causally, as the parent's did, so their
keys and values are the parent's KV cache and a prompt is read as the parent reads it; a noised block sees BOS,
the clean tokens of the blocks before it and every token of its own block.

Training runs ``[x_t, BOS, x_0]`` (``2L + 1`` tokens, BOS and ``x_0[j]`` at positions 0 and ``j + 1``, ``x_t[j]``
at ``j + 1``) under ``shifted_block_mask``. Sampling keeps BOS and the finished blocks in a ``KVCache`` whose
``after`` holds the prediction of the token after them (the first position of the next block), so a block's calls
cost what the unshifted network's do. With ``block_size = 1`` every position is a block's first, and the bound is
the parent's exact likelihood.

Legend: B batch, L sequence length, T tokens in this call, V vocabulary size (with the mask), D hidden size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError
from .attention import KVCache, causal_mask
from .llama import LlamaBlockDiffusionTransformer


class ShiftedBlockDiffusionTransformer(LlamaBlockDiffusionTransformer):
    """``LlamaBlockDiffusionTransformer``'s contract (``forward(x_t, x_0)``, ``new_cache``, ``extend_cache``,
    ``block_log_probs``) with the shifted prediction (module docstring). Unconditioned."""

    def __init__(self, config, mask_id: int | None = None):
        if config.num_labels:
            raise InputError("a shifted block diffusion network is unconditioned; got model.num_labels > 0")
        super().__init__(config, mask_id)

    def forward(self, x_t: Tensor, x_0: Tensor, label: Tensor | None = None) -> Tensor:
        """``log p_theta(x_0 = y | x_t^{(b)}, x_0^{(<b)})``, float32 (B, L, V), as ``BlockDiffusionTransformer``."""
        if x_0.shape != x_t.shape:
            raise InputError(f"x_0 must have the shape of x_t, {tuple(x_t.shape)}; got {tuple(x_0.shape)}")
        self._refuse_label(label)
        batch_size, seq_len = x_t.shape
        bos = x_t.new_full((batch_size, 1), self.bos_id)
        x = self.vocab_embed(torch.cat([x_t, bos, x_0], dim=1))  # (B, 2L + 1, D)
        positions = torch.arange(seq_len + 1, device=x_t.device)
        positions = torch.cat([positions[1:], positions])  # x_t at 1..L, then BOS and x_0 at 0..L
        cos, sin = self.rotary(seq_len + 1)
        cos, sin = cos[positions], sin[positions]
        mask = shifted_block_mask(seq_len, self.config.block_size, x_t.device)
        for block in self.blocks:
            x = block(x, None, cos, sin, mask=mask)
        return self._read(x[:, shifted_sources(seq_len, self.config.block_size, x_t.device)])

    def new_cache(self, batch_size: int, max_len: int, device=None, dtype=None) -> KVCache:
        """A cache for ``max_len`` positions after BOS, BOS already in it (and ``after`` its prediction)."""
        cache = KVCache.for_model(self.config, batch_size, max_len + 1, dtype or self.vocab_embed.weight.dtype, device)
        self.extend_cache(torch.full((batch_size, 1), self.bos_id, device=device), cache)
        return cache

    def extend_cache(self, x_0: Tensor, cache: KVCache, label: Tensor | None = None) -> None:
        """Append the clean tokens ``x_0`` (B, T), causally, and keep the prediction of the token after them."""
        self._refuse_label(label)
        x, _ = self._cached_pass(x_0, cache, None, causal_mask(x_0.shape[1], cache.length, x_0.device))
        cache.after = self._read(x[:, -1:])[:, 0]
        cache.advance(x_0.shape[1])

    def block_log_probs(
        self, x_t: Tensor, cache: KVCache, label: Tensor | None = None, clean: Tensor | None = None
    ) -> Tensor:
        """``BlockDiffusionTransformer.block_log_probs``: the block's first position from ``cache.after`` (or from
        the last of ``clean``, appended in the same call), the others from the block's own states."""
        self._refuse_label(label)
        if clean is None:
            x, _ = self._cached_pass(x_t, cache, None)
            first = cache.after
        else:
            before, new, size = cache.length, clean.shape[1], x_t.shape[1]
            keys = torch.ones(new + size, before + new + size, dtype=torch.bool, device=x_t.device)
            keys[:new] = _causal_rows(new, before, size, x_t.device)
            x, _ = self._cached_pass(torch.cat([clean, x_t], dim=1), cache, None, keys)
            first = self._read(x[:, new - 1 : new])[:, 0]
            cache.after = first
            cache.advance(new)
            x = x[:, new:]
        return torch.cat([first[:, None], self._read(x[:, :-1])], dim=1)  # (B, T, V)

    def _read(self, h: Tensor) -> Tensor:
        """Token log-probabilities (B, T, V) from hidden states (B, T, D)."""
        return self._token_log_probs(self.output_layer(h, None).float())

    @staticmethod
    def _refuse_label(label: Tensor | None) -> None:
        if label is not None:
            raise InputError("this model is unconditional: it takes no label")


def _causal_rows(new: int, before: int, after: int, device=None) -> Tensor:
    """bool (new, before + new + after): ``new`` clean tokens after ``before`` cached ones see those and the clean
    ones up to themselves, not the ``after`` noised tokens that follow."""
    rows = torch.zeros(new, before + new + after, dtype=torch.bool, device=device)
    rows[:, : before + new] = causal_mask(new, before, device)
    return rows


def shifted_block_mask(seq_len: int, block_size: int, device=None) -> Tensor:
    """bool (2L + 1, 2L + 1): the keys each query sees in the training pass over ``[x_t, BOS, x_0]``.

    A noised token of block ``b`` sees the noised tokens of block ``b``, BOS and the clean tokens of the blocks
    before ``b``; BOS sees itself; a clean token sees BOS and the clean tokens up to itself (causal).
    """
    block = torch.arange(seq_len, device=device) // block_size
    noised = torch.cat(
        [block[:, None] == block[None, :], torch.ones(seq_len, 1, dtype=torch.bool, device=device),
         block[:, None] > block[None, :]], dim=1,
    )  # fmt: skip
    clean = torch.zeros(seq_len + 1, 2 * seq_len + 1, dtype=torch.bool, device=device)
    clean[:, seq_len:] = torch.ones(seq_len + 1, seq_len + 1, dtype=torch.bool, device=device).tril()
    return torch.cat([noised, clean], dim=0)


def shifted_sources(seq_len: int, block_size: int, device=None) -> Tensor:
    """int64 (L,): where position ``i``'s output is read in ``[x_t, BOS, x_0]``: the noised token ``i - 1``
    inside a block, the clean token ``i - 1`` (index ``L + i``; BOS for ``i = 0``) at a block's start."""
    i = torch.arange(seq_len, device=device)
    return torch.where(i % block_size == 0, seq_len + i, i - 1)
