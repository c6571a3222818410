"""The architecture of a network (``model:`` in a run's config): the DiT fields every network reads, and the
fields only the LLaMA-style backbone (``arch: llama``) reads."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..checks import at_least, one_of, positive, within
from ..errors import InputError

ARCHS = ("dit", "llama")

#: The LLaMA-only fields and their defaults: a DiT refuses any other value rather than silently ignore it.
LLAMA_ONLY = {
    "intermediate_size": 0,
    "n_kv_heads": 0,
    "head_dim": 0,
    "rope_theta": 10000.0,
    "norm_eps": 1e-6,
    "tie_embeddings": False,
    "qkv_bias": False,
    "qk_norm": False,
    "shift": False,
}


@dataclass
class ModelConfig:
    """Architecture of the score network."""

    vocab_size: int = 0
    """Number of states including the mask of an absorbing graph, set from the tokenizer and graph (leave it at 0;
    a training run refuses another count than theirs)."""
    arch: str = "dit"
    """``dit``: the SEDD transformer (LayerNorm, GELU MLP, adaLN); ``llama``: RMSNorm, SwiGLU, rotary positions
    with base ``rope_theta``, grouped-query attention, the layout of LLaMA, Qwen2/3 and SmolLM2."""
    hidden_size: int = 256
    """Width D of the residual stream."""
    cond_dim: int = 128
    """Width C of the noise-level embedding that drives adaLN."""
    n_blocks: int = 4
    """Number of transformer blocks."""
    n_heads: int = 4
    """Attention (query) heads; hidden_size must be divisible by it unless a llama sets head_dim."""
    seq_len: int = 128
    """Longest sequence the model is trained on (rotary positions work beyond it, but untrained)."""
    dropout: float = 0.0
    """Dropout on the attention and MLP branches during training."""
    scale_by_sigma: bool = True
    """Absorbing graph: shift log scores by -log(e^sigma_bar - 1) - log(V - 1), as the original SEDD does."""
    time_conditioning: bool = True
    """False: no noise-level input (RADD). The network predicts p(x_0 | unmasked tokens), and the absorbing
    score is that probability over e^sigma_bar - 1, so equal inputs give equal network outputs."""
    mlp_ratio: int = 4
    """MLP width as a multiple of hidden_size (a llama's SwiGLU: two thirds of it, unless intermediate_size)."""
    norm_bias: bool = False
    """dit: LayerNorms with a bias as well as a scale (RADD's networks; SEDD's and MDLM's have none)."""
    block_size: int = 0
    """Block diffusion (BD3-LM, Arriola et al. 2025): generate ``block_size`` tokens at a time, left to right; a
    block's noised tokens see one another and the clean blocks before it. 0: one block, the whole sequence
    (SEDD). Must divide seq_len; needs the absorbing graph and time_conditioning=false; 1 is a left-to-right model."""
    num_labels: int = 0
    """Classes a conditional model knows (set from labelled data); 0: unconditional. Label ``num_labels`` (or any
    negative label) is the null label, the unconditional model of classifier-free guidance."""
    intermediate_size: int = 0
    """llama: width of the SwiGLU MLP; 0: two thirds of mlp_ratio x hidden_size, rounded up to a multiple of 8."""
    n_kv_heads: int = 0
    """llama: key/value heads of grouped-query attention, dividing n_heads (1: multi-query); 0: n_heads."""
    head_dim: int = 0
    """llama: width of each attention head (Qwen3 sets it apart from the hidden size); 0: hidden_size / n_heads."""
    rope_theta: float = 10000.0
    """llama: the base of the rotary frequencies (LLaMA 2: 10000, SmolLM2-135M: 100000, Qwen2.5: 1000000)."""
    norm_eps: float = 1e-6
    """llama: the epsilon of every RMSNorm."""
    tie_embeddings: bool = False
    """llama: the output layer reuses the token embedding's weights (SmolLM2, small Qwens)."""
    qkv_bias: bool = False
    """llama: biases on the query, key and value maps (Qwen2)."""
    qk_norm: bool = False
    """llama: an RMSNorm over each head's queries and keys before the rotary map (Qwen3)."""
    shift: bool = False
    """llama, masked or block diffusion: the shifted prediction of a network adapted from an AR model (Dream,
    Fast-dLLM v2): token ``i`` is read from the hidden state at position ``i - 1``. The network puts a BOS token
    (id ``vocab_size``, one embedding row past the mask; never an output) before its input, so that position
    ``i``'s output keeps the AR head's meaning, "the token after what precedes ``i``"; with ``block_size`` the
    first token of each block is read from the clean token before it (``model.shifted_block``)."""

    def __post_init__(self):
        # the upper bounds keep an untrusted config.json from asking for an absurd allocation
        at_least("vocab_size", self.vocab_size, 0, 2**24)
        at_least("hidden_size", self.hidden_size, 2, 2**16)
        at_least("cond_dim", self.cond_dim, 1, 2**16)
        at_least("n_blocks", self.n_blocks, 1, 1024)
        at_least("n_heads", self.n_heads, 1, self.hidden_size)
        at_least("seq_len", self.seq_len, 1, 2**20)
        at_least("mlp_ratio", self.mlp_ratio, 1, 64)
        at_least("num_labels", self.num_labels, 0, 2**16)
        at_least("block_size", self.block_size, 0, self.seq_len)
        if self.block_size and self.seq_len % self.block_size:
            raise InputError(f"block_size must divide seq_len = {self.seq_len}; got {self.block_size}")
        within("dropout", self.dropout, 0.0, 1.0, low_open=False, high_open=True)
        one_of("arch", self.arch, ARCHS)
        self._check_llama_fields()
        if self.head_size % 2 or (not self.head_dim and self.hidden_size % self.n_heads):
            raise InputError(
                f"hidden_size must be divisible by n_heads with an even head size; "
                f"got hidden_size={self.hidden_size}, n_heads={self.n_heads}, head_dim={self.head_dim}"
            )

    def _check_llama_fields(self) -> None:
        if self.arch != "llama":
            for name, default in LLAMA_ONLY.items():
                if getattr(self, name) != default:
                    raise InputError(f"{name} applies to arch=llama; got {getattr(self, name)} with arch={self.arch}")
            return
        if self.norm_bias:
            raise InputError("norm_bias applies to arch=dit; a llama's RMSNorms have no bias")
        at_least("intermediate_size", self.intermediate_size, 0, 2**20)
        at_least("n_kv_heads", self.n_kv_heads, 0, self.n_heads)
        at_least("head_dim", self.head_dim, 0, 2**12)
        positive("rope_theta", self.rope_theta)
        positive("norm_eps", self.norm_eps)
        if self.n_heads % self.kv_heads:
            raise InputError(f"n_kv_heads must divide n_heads = {self.n_heads}; got {self.n_kv_heads}")

    @property
    def head_size(self) -> int:
        """Width K of each attention head."""
        return self.head_dim or self.hidden_size // self.n_heads

    @property
    def kv_heads(self) -> int:
        """Heads of the keys and values (fewer than ``n_heads`` under grouped-query attention)."""
        return self.n_kv_heads or self.n_heads

    @property
    def mlp_size(self) -> int:
        """Width of a llama's SwiGLU MLP: about the weights of a GELU MLP of ``mlp_ratio`` (3 maps, not 2)."""
        return self.intermediate_size or 8 * math.ceil(2 * self.mlp_ratio * self.hidden_size / 3 / 8)
