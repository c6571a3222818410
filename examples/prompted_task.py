"""A prompted task: train a diffusion model to find paths in star graphs, then let it decode in its own order.

python examples/prompted_task.py                 # 4,000 steps of 64: ~20 minutes on 2 cores, ~100% solved
python examples/prompted_task.py --quick         # a few steps: checks the plumbing, solves nothing
"""

import argparse
import json
import tempfile
from pathlib import Path

import torch

import scorediff
from scorediff.tasks import path_star

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=4000)
parser.add_argument("--quick", action="store_true")
args = parser.parse_args()
steps, examples = (20, 200) if args.quick else (args.steps, 20000)
compile_ = "train.compile=false" if args.quick else "train.compile=true"

graphs = path_star.generate(examples + 100, seed=0)
train, test = graphs[:examples], graphs[examples:]
folder = Path(tempfile.mkdtemp())
data = folder / "train.jsonl"  # one example per line: tokens, and which of them are given (the prompt)
data.write_text("".join(json.dumps(path_star.encode(g)) + "\n" for g in train))

overrides = [f"data.source={data}", f"data.num_tokens={path_star.num_tokens()}", "model.seq_len=45",
             f"train.max_steps={steps}", "train.batch_size=64", "train.time_budget_minutes=0", "train.eval_every=0",
             "train.preview_samples=0", f"train.out_dir={folder}", compile_]  # fmt: skip
result = scorediff.train(scorediff.load_config("tiny", overrides), progress=not args.quick)
model = scorediff.load(result.run_dir)

records = [path_star.encode(g) for g in test]
tokens, given = torch.tensor([r["tokens"] for r in records]), torch.tensor([r["given"] for r in records])
for order in ("random", "confidence"):
    out = scorediff.generate(model.objective, model.model, tuple(tokens.shape), condition=(tokens, given), seed=0,
                             order=order, tokens_per_step=1)  # fmt: skip
    solved = sum(
        path_star.is_path(g, row[~known].tolist()) for g, row, known in zip(test, out.tokens, given, strict=True)
    )
    print(f"{order:>10} order: {solved} of {len(test)} held-out graphs solved, {out.stats.nfe} network calls")
