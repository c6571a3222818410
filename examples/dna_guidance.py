"""DNA with classifier-free guidance: a class-conditional model of two genomes, sampled with and without guidance.

python examples/dna_guidance.py --data ecoli=ecoli.fa.gz --data saureus=saureus.fa.gz
python examples/dna_guidance.py --quick    # the two 4 kb test genomes, a few steps
"""

import argparse
from pathlib import Path

import scorediff
from scorediff.dna_metrics import gc_content

FIXTURES = Path(__file__).parents[1] / "tests" / "fixtures" / "dna"
parser = argparse.ArgumentParser()
parser.add_argument("--data", action="append", help="name=files; give one per class")
parser.add_argument("--minutes", type=float, default=9.0)
parser.add_argument("--out", default="runs")
parser.add_argument("--quick", action="store_true")
args = parser.parse_args()
data = args.data or [f"ecoli={FIXTURES / 'ecoli_mg1655_4kb.fa'}", f"saureus={FIXTURES / 'saureus_n315_4kb.fa'}"]

names = [spec.split("=", 1)[0] for spec in data]
overrides = [f"data.source={','.join(data)}", f"train.time_budget_minutes={args.minutes}", f"train.out_dir={args.out}"]
if args.quick:
    overrides += ["train.time_budget_minutes=0", "train.max_steps=20", "train.eval_every=0", "train.preview_samples=0",
                  "train.compile=false", "train.eval_windows=4",
                  "model.hidden_size=64", "model.n_blocks=2", "model.seq_len=128", "train.batch_size=8"]  # fmt: skip
result = scorediff.train(scorediff.load_config("dna", overrides), progress=not args.quick)
model = scorediff.load(result.run_dir)

for name in names:
    for guidance in (0.0, 3.0):
        drawn = scorediff.generate(model.objective, model.model, (4, model.model.config.seq_len), seed=0, steps=64,
                                   label=names.index(name), guidance=guidance)  # fmt: skip
        start = model.tokenizer.decode(drawn.tokens[0, :60].tolist())
        print(f"{name:>8}, guidance {guidance}: GC content {float(gc_content(drawn.tokens).mean()):.3f}; {start}...")
