"""The puzzle benchmark's scoring, splits and ``--merge`` (``benchmarks/puzzles.py``), on hand-built cases."""

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from scorediff import SamplingOptions
from scorediff.tasks import path_star, sudoku

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "puzzles.py"
sys.path.insert(0, str(SCRIPT.parent))  # where the script finds puzzles_report, as when it is run
spec = importlib.util.spec_from_file_location("puzzles_benchmark", SCRIPT)
puzzles = importlib.util.module_from_spec(spec)
spec.loader.exec_module(puzzles)


def grid(text: str) -> tuple[int, ...]:
    return tuple(int(c) for c in text.replace(" ", ""))


# Three 4x4 puzzles (the generator's first ones for seeds 0 and 1): 8, 8 and 6 clues, so 8, 8 and 10 blanks.
PUZZLES = [
    sudoku.Puzzle(4, grid("3004 0403 0042 0031"), grid("3124 2413 1342 4231")),
    sudoku.Puzzle(4, grid("0124 2430 4300 0000"), grid("3124 2431 4312 1243")),
    sudoku.Puzzle(4, grid("0310 0000 2043 0001"), grid("4312 1234 2143 3421")),
]


def task_args(**changes) -> argparse.Namespace:
    """The arguments ``Task`` reads, for a small 4x4 run."""
    args = {"givens": (6, 8), "hard_givens": (4, 5), "train_examples": 300, "test": 30, "data_seed": 0, "augment": 1}
    return argparse.Namespace(**{**args, **changes})


def answer_index(size: int, cell: int) -> int:
    """Where grid cell ``cell`` sits in an encoded record: the answer half, each row ended by its tag."""
    row, col = divmod(cell, size)
    return size * (size + 1) + row * (size + 1) + col


def test_a_solved_grid_is_solved_and_a_wrong_cell_or_a_changed_clue_is_not():
    task = puzzles.Task("sudoku4", task_args(train_examples=2, test=1))
    puzzle = PUZZLES[0]
    record = sudoku.encode(puzzle)
    tokens, given = record["tokens"], record["given"]
    assert task.solved(puzzle, tokens, given)
    wrong = list(tokens)
    wrong[answer_index(4, 1)] = 2  # cell 1 is a blank whose answer is 1
    assert not task.solved(puzzle, wrong, given)
    relabelled = list(tokens)  # 1 <-> 3 everywhere in the answer: still a valid grid, but clue 0 (a 3) is broken
    for cell in range(16):
        index = answer_index(4, cell)
        relabelled[index] = {1: 3, 3: 1}.get(tokens[index], tokens[index])
    assert sudoku.is_solution(sudoku.Puzzle(4, (0,) * 16, puzzle.solution), sudoku.decode_answer(4, relabelled[20:]))
    assert not task.solved(puzzle, relabelled, given)
    clueless = sudoku.Puzzle(4, (0,) * 16, puzzle.solution)  # no clues: any valid grid solves it
    assert task.solved(clueless, relabelled, [True] * 20 + [False] * 20)


def test_a_path_is_solved_only_along_the_goal_arm():
    task = puzzles.Task("path_star", task_args(train_examples=3, test=2))
    graph = task.splits["test"][0]
    record = path_star.encode(graph)
    assert task.solved(graph, record["tokens"], record["given"])
    wrong_arm = next(v for u, v in graph.edges if u == graph.start and v != graph.path[1])
    tokens = list(record["tokens"])
    tokens[41] = wrong_arm
    assert not task.solved(graph, tokens, record["given"])


class ScriptedObjective:
    """Hands back prepared answers, one batch per call, and keeps what it was asked."""

    def __init__(self, answers: list[torch.Tensor]):
        self.answers, self.asked = list(answers), []

    def sample(self, model, shape, options, *, condition, generator):
        self.asked.append((shape, condition, options))
        return SimpleNamespace(tokens=self.answers.pop(0), stats=SimpleNamespace(nfe=7))


def test_solve_rate_and_cell_accuracy_of_hand_built_answers():
    """Answers: the first puzzle solved; the second with one of its 8 blanks wrong; the third with every blank
    right but a clue of its answer half changed (a decoder that does not hold the clues). Solve rate 1/3; cell
    accuracy over the blanks alone, (8 + 7 + 10) / 26; one batch per puzzle, 7 calls each."""
    task = puzzles.Task("sudoku4", task_args(train_examples=2, test=1))
    tokens, given = task.tensors(PUZZLES)
    assert (~given).sum(-1).tolist() == [8, 8, 10]
    answers = tokens.clone()
    blank = int(torch.nonzero(~given[1])[0])
    answers[1, blank] = answers[1, blank] % 4 + 1
    clue = int(torch.nonzero(given[2, 20:])[0]) + 20
    answers[2, clue] = answers[2, clue] % 4 + 1
    objective = ScriptedObjective([row[None] for row in answers])
    loaded = SimpleNamespace(objective=objective, model=None)
    result = puzzles.solve(loaded, task, PUZZLES, {"order": "margin"}, batch=1)
    assert result["solve_rate"] == pytest.approx(1 / 3)
    assert result["cell_accuracy"] == pytest.approx(25 / 26)
    assert result["network_calls"] == 21
    for (shape, (rows, known), options), first in zip(objective.asked, range(3), strict=True):
        assert shape == (1, 40) and options == SamplingOptions(order="margin")
        assert torch.equal(rows, tokens[first : first + 1]) and torch.equal(known, given[first : first + 1])


def test_no_held_out_grid_is_trained_on():
    """4x4 has only 288 grids, so 330 draws repeat many: the training examples (augmented copies included)
    share no solution grid with the test split or the fewer-givens split, although the unfiltered draws do."""
    args = task_args()
    task = puzzles.Task("sudoku4", args)
    test, hard = task.splits["test"], task.splits["fewer-givens-4-5"]
    drawn = sudoku.generate(4, args.train_examples + args.test, args.givens, args.data_seed)
    assert test == drawn[-args.test :] and hard == sudoku.generate(4, args.test, args.hard_givens, args.data_seed + 1)
    held = {p.solution for p in test + hard}
    assert sum(p.solution in held for p in drawn[: -args.test]) > 50  # the filter has work to do
    assert not {p.solution for p in task.train} & held
    assert len(task.train) > 100  # and leaves training examples, copies among them
    originals = {p.solution for p in drawn[: -args.test]}
    assert any(p.solution not in originals for p in task.train)


def results_file(path: Path, task: str, seed: int, rows: list[tuple]) -> Path:
    """A minimal ``puzzles.json``: one run per model of ``seed``, rows of (model, decoder, solve rate, cells)."""
    models = sorted({model for model, *_ in rows})
    path.write_text(json.dumps({
        "task": task, "command": f"run seed {seed}", "batch": 8, "curve_puzzles": 4, "test_puzzles": 10,
        "runs": [{"model": m, "seed": seed, "curve": [{"step": 1, "solve_rate": 0.5}]} for m in models],
        "rows": [{"model": model, "seed": seed, "split": "test", "decoder": decoder, "puzzles": 10,
                  "solve_rate": rate, "cell_accuracy": cells, "seconds_per_puzzle": 0.01 * (seed + 1),
                  "network_calls": 100 * (seed + 1)} for model, decoder, rate, cells in rows],
    }))  # fmt: skip
    return path


def merged(tmp_path: Path, *paths: Path) -> dict:
    """``python benchmarks/puzzles.py --merge PATHS --out tmp_path/out``, read back."""
    out = tmp_path / "out"
    argv = sys.argv
    sys.argv = ["puzzles.py", "--merge", *map(str, paths), "--out", str(out)]
    try:
        puzzles.main()
    finally:
        sys.argv = argv
    assert (out / "puzzles.png").stat().st_size > 0
    return json.loads((out / "puzzles.json").read_text())


def test_merge_pools_the_seeds_of_two_files(tmp_path):
    """Seed 0 ran diffusion (confidence 0.5, cells 0.9) and AR; seed 1 diffusion (confidence 0.7, cells 0.8;
    margin 0.3): one table with mean, min and max over the seeds that ran each decoder."""
    first = results_file(tmp_path / "a.json", "sudoku6", 0, [("diffusion", "confidence", 0.5, 0.9),
                                                            ("ar", "ar-greedy", 0.1, 0.4)])  # fmt: skip
    second = results_file(tmp_path / "b.json", "sudoku6", 1, [("diffusion", "confidence", 0.7, 0.8),
                                                             ("diffusion", "margin", 0.3, 0.6)])  # fmt: skip
    result = merged(tmp_path, first, second)
    assert result["commands"] == ["run seed 0", "run seed 1"]
    assert [(r["model"], r["seed"]) for r in result["runs"]] == [("ar", 0), ("diffusion", 0), ("diffusion", 1)]
    assert len(result["rows"]) == 4
    summary = {(s["model"], s["decoder"]): s for s in result["summary"]}
    assert set(summary) == {("diffusion", "confidence"), ("diffusion", "margin"), ("ar", "ar-greedy")}
    confidence = summary["diffusion", "confidence"]
    assert confidence["seeds"] == 2 and confidence["solve_rate"] == pytest.approx(0.6)
    assert (confidence["solve_rate_min"], confidence["solve_rate_max"]) == (0.5, 0.7)
    assert confidence["cell_accuracy"] == pytest.approx(0.85)
    assert confidence["seconds_per_puzzle"] == pytest.approx(0.015) and confidence["network_calls"] == 150
    margin = summary["diffusion", "margin"]
    assert margin["seeds"] == 1 and margin["solve_rate"] == margin["solve_rate_min"] == 0.3
    assert summary["ar", "ar-greedy"]["solve_rate"] == pytest.approx(0.1)


def test_merge_refuses_other_tasks(tmp_path):
    first = results_file(tmp_path / "a.json", "sudoku6", 0, [("diffusion", "confidence", 0.5, 0.9)])
    second = results_file(tmp_path / "b.json", "sudoku9", 1, [("diffusion", "confidence", 0.7, 0.8)])
    with pytest.raises(SystemExit, match="one task"):
        merged(tmp_path, first, second)


def test_merge_refuses_a_seed_twice(tmp_path):
    """The same seed's rows in two files would count as two seeds in the mean and the spread."""
    first = results_file(tmp_path / "a.json", "sudoku6", 0, [("diffusion", "confidence", 0.5, 0.9)])
    second = results_file(tmp_path / "b.json", "sudoku6", 0, [("diffusion", "confidence", 0.7, 0.8)])
    with pytest.raises(SystemExit, match="twice"):
        merged(tmp_path, first, second)
