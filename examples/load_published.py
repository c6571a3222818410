"""Load a published diffusion model by Hub id (or a local folder), fill in text and score it.

pip install "scorediff[hub,gpt2]"
python examples/load_published.py --model louaaron/sedd-small          # SEDD, RADD, MDLM or BD3-LM ids
python examples/load_published.py --quick   # a tiny RADD-layout model made by the RADD code (a test fixture)
"""

import argparse
from pathlib import Path

import torch

import scorediff

FIXTURE = Path(__file__).parents[1] / "tests" / "fixtures" / "published" / "tiny_radd"
parser = argparse.ArgumentParser()
parser.add_argument("--model", default="louaaron/sedd-small")
parser.add_argument("--quick", action="store_true")
args = parser.parse_args()

model = scorediff.load(FIXTURE if args.quick else args.model)
print(f"{model.source}: the {model.layout} layout, {model.kind}, {model.model.num_parameters():,} parameters")
length = 16 if args.quick else 128
if model.tokenizer is not None:  # GPT-2's tokenizer comes with the [gpt2] extra
    before = model.tokenizer.encode("The capital of France is")
    tokens = torch.tensor([before + [0] * (length - len(before))])
    given = torch.tensor([[True] * len(before) + [False] * (length - len(before))])
    out = scorediff.generate(model.objective, model.model, (1, length), condition=(tokens, given), seed=0, steps=64)
    print(model.tokenizer.decode(out.tokens[0].tolist()))
else:  # token ids only
    out = scorediff.generate(model.objective, model.model, (2, length), seed=0, steps=16)
    print("sampled token ids:", out.tokens.tolist())
nats = model.objective.nll(model.model, out.tokens, generator=torch.Generator().manual_seed(0), num_t=16)
print(f"bound on -log p: {nats.tolist()} nats per sequence")
