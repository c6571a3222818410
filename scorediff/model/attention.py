"""Attention pieces shared by the diffusion and the causal transformers: the explicit bf16 attention used for
CPU training, the masks, and the key/value cache of incremental generation.

Legend: B batch, H heads, L query positions, S key positions, K head size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError


class KVCache:
    """Keys and values of the positions seen so far, one pair per block, preallocated to ``max_len``.

    Args:
        n_blocks (int): blocks of the model.
        shape (tuple): ``(batch_size, n_heads, max_len, head_dim)`` of each key and value tensor.
    """

    def __init__(self, n_blocks: int, shape: tuple[int, int, int, int], dtype=torch.float32, device=None):
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_blocks)]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_blocks)]
        self.length = 0  # positions already stored
        self.max_len = shape[2]
        self.after: Tensor | None = None  # a shifted network's prediction of the token after the stored ones (B, V)

    @classmethod
    def for_model(cls, config, batch_size: int, max_len: int, dtype=torch.float32, device=None) -> KVCache:
        """An empty cache for a transformer of ``config`` (a ``ModelConfig``: its blocks, key/value heads and
        head size)."""
        shape = (batch_size, config.kv_heads, max_len, config.head_size)
        return cls(config.n_blocks, shape, dtype, device)

    def select(self, rows: Tensor, room: int) -> KVCache:
        """A copy holding the stored positions of ``rows`` (bool (B,)), with room for ``room`` more positions."""
        first = self.keys[0]
        shape = (int(rows.sum()), first.shape[1], self.length + room, first.shape[3])
        picked = KVCache(len(self.keys), shape, first.dtype, first.device)
        for targets, sources in ((picked.keys, self.keys), (picked.values, self.values)):
            for target, source in zip(targets, sources, strict=True):
                target[:, :, : self.length] = source[rows, :, : self.length]
        picked.length = self.length
        picked.after = None if self.after is None else self.after[rows]
        return picked

    def extend(self, block: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new keys and values (B, H, T, K) of ``block``; return all of them so far."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise InputError(f"the KV cache holds {self.max_len} positions; asked for {end}")
        self.keys[block][:, :, self.length : end] = k
        self.values[block][:, :, self.length : end] = v
        return self.keys[block][:, :, :end], self.values[block][:, :, :end]

    def advance(self, count: int) -> None:
        """Mark ``count`` more positions as stored (after every block has been extended)."""
        self.length += count


class StaleKVCache(KVCache):
    """Keys and values of a whole sequence, for a window of it to attend to (Fast-dLLM's prefix and dual cache).

    Approximate: a bidirectional network's keys and values at a position depend on every token, so those kept
    here go stale as the window's tokens change. A pass over ``T`` tokens at ``length`` overwrites their positions
    and its queries see all ``max_len`` positions: the fresh window and the stale rest.
    """

    def extend(self, block: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        super().extend(block, k, v)
        return self.keys[block], self.values[block]


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    mask: Tensor | None,
    cache: KVCache | None,
    index: int,
    dropout: float,
) -> Tensor:
    """Attention of queries ``q`` (B, H, L, K) to keys and values ``k``, ``v`` (B, G, L, K) with ``G`` dividing
    ``H`` (grouped-query attention: each key/value head serves ``H / G`` consecutive query heads), returning
    (B, H, L, K).

    With a ``cache`` the new keys and values are stored in block ``index`` and the queries see every cached
    position as well; ``causal`` queries then see the cached keys and, among themselves, the earlier ones.
    ``mask``: bool (L, S) of the keys each query sees (None: all, or the causal ones).
    """
    is_causal = causal and mask is None
    if cache is not None:
        start = cache.length
        k, v = cache.extend(index, k, v)  # (B, G, start + L, K)
        if is_causal and start:
            queries = q.shape[2]
            mask, is_causal = (causal_mask(queries, start, q.device) if queries > 1 else None), False
    if k.shape[1] != q.shape[1]:
        k, v = repeat_heads(k, q.shape[1] // k.shape[1]), repeat_heads(v, q.shape[1] // k.shape[1])
    if explicit_attention_pays(q, k):
        return explicit_attention(q, k, v, mask if mask is not None or not is_causal else "causal", dropout)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal)


def repeat_heads(x: Tensor, times: int) -> Tensor:
    """Each head of ``x`` (B, G, S, K) repeated ``times`` times in place, (B, G * times, S, K)."""
    batch_size, heads, length, size = x.shape
    return x[:, :, None].expand(batch_size, heads, times, length, size).reshape(batch_size, heads * times, length, size)


#: Longest key sequence for which bf16 attention on a CPU is computed explicitly (scores of B x H x L x L).
EXPLICIT_ATTENTION_MAX_LEN = 512


def explicit_attention_pays(q: Tensor, k: Tensor) -> bool:
    """Training in bf16 on a CPU, on short sequences: there the fused kernel's backward is the slow part; in
    inference the fused kernel is 3-5x faster."""
    cpu_bf16 = q.device.type == "cpu" and q.dtype == torch.bfloat16
    return cpu_bf16 and torch.is_grad_enabled() and k.shape[2] <= EXPLICIT_ATTENTION_MAX_LEN


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | str | None, dropout: float) -> Tensor:
    """``softmax(q k^T / sqrt(K)) v`` with the softmax in float32, (B, H, L, K) each.

    On CPUs with bf16 matrix units PyTorch's fused attention kernel is slower than this in bf16 (its backward
    most of all: 2.7x at L = 128 on a Sapphire Rapids core pair); the scores of short sequences are cheap to
    hold. ``mask`` is a bool (L, S) tensor of allowed pairs, ``"causal"``, or None.
    """
    scores = (q @ k.transpose(-1, -2)).float() * (q.shape[-1] ** -0.5)  # (B, H, L, S)
    if isinstance(mask, str):
        mask = causal_mask(q.shape[2], k.shape[2] - q.shape[2], q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, -torch.inf)
    probs = F.dropout(scores.softmax(-1), dropout, training=dropout > 0).to(v.dtype)
    return probs @ v


def causal_mask(queries: int, start: int, device=None) -> Tensor:
    """bool (T, start + T): query ``i`` (at position ``start + i``) sees keys at positions ``<= start + i``."""
    keys = torch.arange(start + queries, device=device)
    return keys[None, :] <= (start + torch.arange(queries, device=device))[:, None]


def block_diffusion_mask(seq_len: int, block_size: int, device=None) -> Tensor:
    """bool (2L, 2L): which keys each query sees in the training pass of a block diffusion model over the
    concatenation ``[x_t, x_0]`` (BD3-LM's vectorised form; Arriola et al. 2025, Sec. 3.2).

    A noised token (first half) in block ``b`` sees the noised tokens of block ``b`` and the clean tokens of the
    blocks before ``b``; a clean token (second half) in block ``b`` sees the clean tokens of blocks ``<= b``, which
    are exactly the keys and values a KV cache holds when the clean blocks are fed one at a time.
    """
    block = torch.arange(seq_len, device=device) // block_size
    same = block[:, None] == block[None, :]  # (L, L)
    earlier = block[:, None] > block[None, :]
    noised_row = torch.cat([same, earlier], dim=1)  # (L, 2L)
    clean_row = torch.cat([torch.zeros_like(same), same | earlier], dim=1)
    return torch.cat([noised_row, clean_row], dim=0)
