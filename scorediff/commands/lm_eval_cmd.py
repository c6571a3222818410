"""``scorediff lm-eval``: lm-evaluation-harness tasks on a scorediff checkpoint (the ``[lm-eval]`` extra)."""

from __future__ import annotations

import argparse
import json
import math

from . import UsageError, add_load_options, atomic_write, check_device, check_output, positive, seed_value

INSTALL = "pip install 'scorediff[lm-eval]'"


def add_parser(commands) -> None:
    parser = commands.add_parser("lm-eval", help="run lm-evaluation-harness tasks (log-likelihoods, generation)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run directory, or Hub id org/name[@rev]")
    parser.add_argument("--tasks", required=True, help="comma-separated lm-eval task or group names")
    parser.add_argument("--include-path", help="a folder of your own task YAML files")
    parser.add_argument("--num-fewshot", type=int, help="examples in each prompt (default: the task's)")
    parser.add_argument("--limit", type=float, help="documents per task (a fraction when below 1)")
    parser.add_argument("--mc-samples", type=int, default=32, help="diffusion: times (or mask counts) per request")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=seed_value, default=0)
    add_load_options(parser)
    parser.add_argument("--output", metavar="FILE", help="also write lm-eval's results as JSON")
    parser.set_defaults(run=run_lm_eval)


MAX_LIMIT = 2**31
"""More documents per task than any task holds."""


def run_lm_eval(args: argparse.Namespace) -> int:
    positive("--mc-samples", args.mc_samples)
    positive("--batch-size", args.batch_size)
    positive("--limit", args.limit)
    whole = args.limit is None or args.limit < 1 or (args.limit.is_integer() and args.limit <= MAX_LIMIT)
    if args.limit is not None and not (math.isfinite(args.limit) and whole):  # 2.5 was cut to 2; 1e30 a traceback
        raise UsageError(
            f"--limit must be a whole number of documents (at most {MAX_LIMIT:,}), or a fraction below 1; "
            f"got {args.limit:g}"
        )
    positive("--num-fewshot", args.num_fewshot, allow_zero=True)
    check_device(args.device)
    check_output("--output", args.output, "results", {"--checkpoint": args.checkpoint})
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
        from lm_eval.utils import make_table

        from ..harness import ScorediffLM
    except ImportError:
        raise ImportError(f"scorediff lm-eval needs lm-evaluation-harness: {INSTALL}") from None
    tasks = [name.strip() for name in args.tasks.split(",") if name.strip()]
    if not tasks:
        raise UsageError(f"--tasks must name at least one task (comma-separated); got {args.tasks!r}")
    manager = TaskManager(include_path=args.include_path) if args.include_path else TaskManager()
    unknown = [name for name in tasks if name not in manager.all_tasks]
    if unknown:
        raise UsageError(f"lm-eval knows no task {unknown[0]!r} (see `lm-eval ls tasks`, or pass --include-path)")
    model = ScorediffLM(args.checkpoint, args.mc_samples, args.batch_size, args.seed, args.device, dtype=args.dtype)
    limit = int(args.limit) if args.limit and args.limit >= 1 else args.limit
    try:
        results = lm_eval.simple_evaluate(
            model=model, tasks=tasks, num_fewshot=args.num_fewshot, limit=limit, task_manager=manager,
            random_seed=args.seed, numpy_random_seed=args.seed, torch_random_seed=args.seed,
            fewshot_random_seed=args.seed,
        )  # fmt: skip
    except ValueError as error:  # the harness draws the examples with random.sample, which says only this
        if args.num_fewshot and "larger than population" in str(error):
            raise UsageError(
                f"--num-fewshot {args.num_fewshot}: a task has fewer documents than that to draw its examples from"
            ) from None
        raise
    print(make_table(results))
    if args.output:
        keep = {key: results[key] for key in ("results", "versions", "n-shot", "config") if key in results}
        atomic_write(args.output, json.dumps(keep, indent=2, default=str) + "\n")
    return 0
