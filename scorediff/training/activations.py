"""What autograd keeps of one training forward pass, in bytes: a formula read off the network code.

Each term below names the tensor that a backward function saves, counted once per storage (a view of a saved
storage adds nothing). Attention is the fused kernel's (flash / memory-efficient on a GPU, the flash kernel of a
CPU): it saves ``q``, ``k``, ``v``, the output and a float32 log-sum-exp per query and head, never the scores; a
float mask (block diffusion, annealed attention) is saved per block. Grouped keys and values are repeated to every
query head before the kernel (``attention.repeat_heads``), so it saves the repeated copies.

Dtypes: the residual stream stays float32 (the weights are float32 and the embedding is a lookup), the norms
compute in float32 (``layers.LayerNorm``, ``RMSNorm``); everything after a linear map is in the compute dtype
(``compute_bytes``: 4 for float32, 2 under bf16 autocast, whose casts of a linear's input are what it saves).

Left out: the few tensors of shape (B,), (B, 1) or (B, C) other than the noise embedding's (label embeddings, loss
weights, the loss's masks), whose bytes are O(batch) against O(batch x length x width).

Dropout saves a one-byte mask per element of each residual branch; attention dropout is taken to be the fused GPU
kernel's, which keeps only a seed (a CPU falls back to the math kernel there and saves the (B, H, L, S)
probabilities as well).

Legend: B micro-batch, n positions (queries ``n_q``, keys ``n_kv``), D hidden size, H query heads, K head size,
F MLP width, V vocabulary size (output rows).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..model.block_diffusion import BlockDiffusionTransformer
from ..model.causal import CausalTransformer

FLOAT32 = 4
INDEX = 8  # int64 token ids, saved by the embedding lookup


@dataclass(frozen=True)
class NetworkShape:
    """What the formula needs of a network, read from the built modules (so a meta-device network serves)."""

    arch: str
    n_blocks: int
    hidden_size: int
    n_heads: int
    head_size: int
    kv_heads: int
    mlp_width: int
    conditioned: bool
    qk_norm: bool
    dropout: float
    vocab_size: int
    seq_len: int
    kind: str  # "diffusion", "block_diffusion" or "autoregressive"
    shift: bool
    masked_attention: bool
    logits_saved: int  # (B, L, V) float32 tensors the loss keeps
    noise_embedding: int  # width of the noise embedding's saved tensors per row (0: time-independent)

    @classmethod
    def of(cls, model: nn.Module) -> NetworkShape:
        """The shape of ``model``, any network ``model.registry.build_network`` makes."""
        config, block = model.config, model.blocks[0]
        llama = config.arch == "llama"
        kind = (
            "block_diffusion"
            if isinstance(model, BlockDiffusionTransformer)
            else "autoregressive"
            if isinstance(model, CausalTransformer)
            else "diffusion"
        )
        # the loss's (B, L, V) tensors: a diffusion loss keeps the log-softmax (or log-score) output and the
        # scattered / normalised copy it gathers from; AR and block diffusion keep the log-softmax output alone
        logits_saved = 2 if kind == "diffusion" else 1
        return cls(
            arch=config.arch,
            n_blocks=config.n_blocks,
            hidden_size=config.hidden_size,
            n_heads=config.n_heads,
            head_size=config.head_size,
            kv_heads=config.kv_heads,
            mlp_width=block.mlp.gate_proj.out_features if llama else block.mlp[0].out_features,
            conditioned=hasattr(block, "adaLN_modulation"),
            qk_norm=llama and config.qk_norm,
            dropout=config.dropout,
            vocab_size=config.vocab_size,
            seq_len=config.seq_len,
            kind=kind,
            shift=llama and config.shift,
            masked_attention=kind == "block_diffusion",
            logits_saved=logits_saved,
            # sinusoidal features (256), the MLP's hidden layer before and after SiLU, and the SiLU of its output
            noise_embedding=model.sigma_map.frequency_dim + 3 * config.cond_dim if hasattr(model, "sigma_map") else 0,
        )

    def positions(self) -> list[tuple[int, int]]:
        """(queries, keys) per sequence of each block: a block diffusion pass runs ``[x_t, x_0]`` (2L) but its
        last block computes the noised half alone; a shifted network puts BOS first (one more, or 2L + 1)."""
        length = self.seq_len + self.shift
        if self.kind != "block_diffusion":
            return [(length, length)] * self.n_blocks
        both = 2 * self.seq_len + self.shift
        if self.shift:  # ``ShiftedBlockDiffusionTransformer`` runs every position through every block
            return [(both, both)] * self.n_blocks
        return [(both, both)] * (self.n_blocks - 1) + [(self.seq_len, both)]


@dataclass(frozen=True)
class ActivationBytes:
    """Bytes autograd holds at the end of one micro-batch's forward pass."""

    per_block: list[int]
    """Each transformer block's saved tensors."""
    outside: int
    """The embedding's ids, the output layer and the loss's (B, L, V) tensors."""
    block_inputs: int
    """What activation checkpointing per block keeps instead: each block's input, summed over blocks."""

    @property
    def total(self) -> int:
        return sum(self.per_block) + self.outside

    @property
    def checkpointed(self) -> int:
        """With checkpointing: the blocks' inputs, the outside, and one block recomputed during backward."""
        return self.block_inputs + self.outside + max(self.per_block)


def _norm(shape: NetworkShape, batch: int, n: int, compute: int) -> int:
    """A pre-norm and its modulation, up to the linear map's saved input (``DiTBlock`` / ``LlamaBlock``)."""
    width = batch * n * shape.hidden_size
    stats = 2 if shape.arch == "dit" else 1  # LayerNorm: mean and 1/std; RMSNorm: 1/rms
    total = FLOAT32 * width + FLOAT32 * batch * n * stats + FLOAT32 * width  # the input, its stats, the normed x
    if shape.conditioned:  # x (1 + scale) keeps the scaled-norm output and (1 + scale), (B, 1, D)
        total += FLOAT32 * width + compute * batch * shape.hidden_size
    return total + compute * width  # the linear map's input (its compute-dtype cast)


def _attention(shape: NetworkShape, batch: int, n_q: int, n_kv: int, compute: int) -> int:
    heads, width = shape.n_heads, shape.n_heads * shape.head_size
    if shape.arch == "dit":  # the joint q/k/v output is one storage (v is a view of it); rotated q and k
        saved = 3 * n_kv * width + n_q * width + n_kv * width
    else:  # rotated q; k and v repeated to every query head (without groups: k rotated and v_proj's output)
        saved = n_q * width + 2 * n_kv * width
    # + the kernel's output: laid out (B, L, H, K) already, so the caller's transpose-reshape is a view of it
    total = compute * batch * (saved + n_q * width)
    if shape.arch == "llama" and n_q < n_kv:  # q_proj's input, a slice of the normed states, is copied
        total += compute * batch * n_q * shape.hidden_size
    total += FLOAT32 * batch * heads * n_q  # log-sum-exp
    if shape.masked_attention:
        total += compute * n_q * n_kv  # the bool mask, made a float bias
    if shape.qk_norm:  # per head, on q (H heads) and k (G heads): the float32 input, 1/rms, the normed output
        kv_width = width * shape.kv_heads // heads
        rows = batch * (n_q * width + n_kv * kv_width) // shape.head_size
        total += (FLOAT32 + compute) * batch * (n_q * width + n_kv * kv_width) + FLOAT32 * rows
    return total


def _mlp(shape: NetworkShape, batch: int, n: int, compute: int) -> int:
    hidden = batch * n * shape.mlp_width
    if shape.arch == "dit":
        return compute * 2 * hidden  # fc1's output (GELU's input) and GELU's output (fc2's input)
    return compute * 4 * hidden  # gate, silu(gate), up, and their product (down_proj's input)


def _gates(shape: NetworkShape, batch: int, n_q: int, compute: int) -> int:
    """The two residual branches' gates, the dropout masks."""
    branch = batch * n_q * shape.hidden_size
    total = 2 * branch if shape.dropout > 0 else 0  # one bool mask per branch
    if not shape.conditioned:
        return total
    total += 2 * compute * branch  # gate x branch keeps the branch
    if shape.arch == "dit":  # gate_msa is a view of adaLN's (B, 6D) output, which is kept whole
        return total + compute * batch * 6 * shape.hidden_size
    return total + 2 * compute * batch * shape.hidden_size  # llama: (1 + gate), (B, 1, D) each


def activation_bytes(shape: NetworkShape, batch: int, compute_bytes: int = FLOAT32) -> ActivationBytes:
    """Saved-tensor bytes of one forward pass of ``batch`` sequences (module docstring for what is counted).

    Args:
        shape: the network's shape (``NetworkShape.of``).
        batch: sequences in the micro-batch.
        compute_bytes: 4 in float32, 2 under bf16 autocast.
    """
    per_block = []
    for n_q, n_kv in shape.positions():
        block = _norm(shape, batch, n_kv, compute_bytes) + _attention(shape, batch, n_q, n_kv, compute_bytes)
        block += _norm(shape, batch, n_q, compute_bytes) + _mlp(shape, batch, n_q, compute_bytes)
        per_block.append(block + _gates(shape, batch, n_q, compute_bytes))
    tokens = shape.positions()[0][1]  # what the embedding looks up
    out_positions = shape.seq_len if shape.kind == "block_diffusion" else shape.positions()[-1][0]
    outside = INDEX * batch * tokens + _norm(shape, batch, out_positions, compute_bytes)
    outside += FLOAT32 * shape.logits_saved * batch * shape.seq_len * shape.vocab_size
    outside += FLOAT32 * batch * shape.noise_embedding
    if shape.kind == "block_diffusion":  # the rotary tables repeated for the clean copy, (2L, K) each
        outside += FLOAT32 * 2 * tokens * shape.head_size
    inputs = sum(FLOAT32 * batch * n_kv * shape.hidden_size for _, n_kv in shape.positions())
    return ActivationBytes(per_block, outside, inputs)
