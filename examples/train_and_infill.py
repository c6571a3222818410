"""Train a diffusion model on your own text, then fill in a gap and score a sentence.

python examples/train_and_infill.py --text my_corpus.txt --minutes 9
python examples/train_and_infill.py --quick            # the embedded Shakespeare, a few seconds
"""

import argparse

import torch

import scorediff

parser = argparse.ArgumentParser()
parser.add_argument("--text", default="shakespeare", help="a text file, a folder of them, or the embedded corpus")
parser.add_argument("--minutes", type=float, default=9.0, help="training time budget")
parser.add_argument("--out", default="runs")
parser.add_argument("--quick", action="store_true", help="a tiny model for a few steps")
args = parser.parse_args()

overrides = [f"data.source={args.text}", f"train.out_dir={args.out}", f"train.time_budget_minutes={args.minutes}"]
if args.quick:
    overrides += ["train.time_budget_minutes=0", "train.max_steps=30", "train.eval_every=0", "train.preview_samples=0",
                  "train.compile=false", "train.eval_windows=4",
                  "model.hidden_size=64", "model.n_blocks=2", "model.seq_len=64", "train.batch_size=8"]  # fmt: skip
result = scorediff.train(scorediff.load_config("tiny", overrides), progress=not args.quick)
model = scorediff.load(result.run_dir)

# Fill 20 unknown characters between a given beginning and end: given tokens are never changed.
before, after = model.tokenizer.encode("To be, or "), model.tokenizer.encode(" the question")
tokens = torch.tensor([before + [0] * 20 + after])
given = torch.tensor([[True] * len(before) + [False] * 20 + [True] * len(after)])
filled = scorediff.generate(model.objective, model.model, tuple(tokens.shape), condition=(tokens, given), seed=0)
print("filled in:", model.tokenizer.decode(filled.tokens[0].tolist()))

# The likelihood bound of a sentence, in bits per character (an upper bound: this is a diffusion model).
line = torch.tensor([model.tokenizer.encode("Now is the winter of our discontent")])
nats = model.objective.nll(model.model, line, generator=torch.Generator().manual_seed(0), num_t=32)
print(f"bound: {float(nats[0]) / line.shape[1] / 0.6931:.3f} bits per character")
