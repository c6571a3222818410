"""Dream (Ye et al. 2025; the Hub's ``Dream-org/Dream-v0-Base-7B``/``-Instruct-7B``): Qwen2.5 adapted into a masked
diffusion model, in Qwen2's names (``model_type: Dream``): q/k/v biases, rotary base 1e6, bidirectional attention,
no time input, mask token 151666. Read as scorediff's time-independent absorbing model on the llama backbone, the
mask moved to the last id (``llama_layout.masked_model``).

Dream keeps the AR model's *shifted* head: the network's output at position ``i`` predicts token ``i + 1``. Its
sampler reads the prediction for token ``i`` at ``i - 1`` (token 0 reuses position 0's). ``ShiftedLlamaTransformer``
realigns the outputs in the same way inside the network (``llama.shift_right``), so its ``logits`` and scores are
per position as every objective expects. Dream has no BOS row, so it is not ``model.shift`` (which reads token 0
from a BOS placed first): its first position is its own rule.
"""

from __future__ import annotations

from torch import Tensor

from ..model.llama import LlamaTransformer, shift_right
from .hf_llama import shape as qwen_shape
from .llama_layout import masked_model, rename_hf, stated_id

NAME = "Dream"
MASK_ID = 151666  # the released models' mask token, when config.json does not state it


class ShiftedLlamaTransformer(LlamaTransformer):
    """A ``LlamaTransformer`` whose network predicts token ``i`` at position ``i - 1`` (Dream's shifted head);
    ``logits`` returns them per position: ``out[:, i] = raw[:, i - 1]`` and ``out[:, 0] = raw[:, 0]``."""

    def logits(self, x_t: Tensor, sigma_bar: Tensor | None, label: Tensor | None = None) -> Tensor:
        raw = super().logits(x_t, sigma_bar, label)  # (B, L, V)
        return shift_right(raw, raw[:, :1])


def matches(config: dict) -> bool:
    return config.get("model_type") == "Dream"


def mask_id(config: dict) -> int:
    return stated_id(config, "mask_token_id", MASK_ID)


def convert(config: dict, state: dict[str, Tensor]):
    architecture = qwen_shape(config, NAME)
    state = rename_hf(state, architecture.tie_embeddings)
    return masked_model(architecture, state, mask_id(config), NAME, ShiftedLlamaTransformer)
