"""Sudoku and path-star generators: deterministic, unique solutions, grids drawn by a solver and split by grid,
checkers that accept any valid answer and refuse invalid ones."""

import random

import pytest

from scorediff.tasks import path_star, sudoku


def canonical(grid) -> tuple:
    """The grid with its digits relabelled in order of first appearance (equal for relabelled copies)."""
    names = {}
    return tuple(names.setdefault(v, len(names) + 1) for v in grid)


@pytest.mark.parametrize("size, givens", [(4, (5, 7)), (6, (12, 18)), (9, (32, 36))])
def test_puzzles_have_one_solution_and_the_drawn_givens(size, givens):
    puzzles = sudoku.generate(size, 12 if size == 9 else 40, givens, seed=1)
    assert puzzles == sudoku.generate(size, len(puzzles), givens, seed=1)  # deterministic from the seed
    for puzzle in puzzles:
        solutions = sudoku.solve(list(puzzle.clues), size, limit=5)
        assert solutions == [list(puzzle.solution)] and sudoku.is_solution(puzzle, puzzle.solution)
        assert givens[0] <= puzzle.givens  # more only when no further clue could go
        record = sudoku.encode(puzzle)
        assert len(record["tokens"]) == 2 * size * (size + 1) and max(record["tokens"]) < sudoku.num_tokens(size)
        answer = record["tokens"][size * (size + 1) :]
        assert sudoku.decode_answer(size, answer) == list(puzzle.solution)
        unknown = [not g for g in record["given"]]  # the blanks of the puzzle, in the answer half
        assert sum(unknown) == size * size - puzzle.givens and not any(unknown[: size * (size + 1)])
    assert sum(p.givens <= givens[1] for p in puzzles) >= 0.9 * len(puzzles)


def test_grids_come_from_a_solver_not_one_base_grid_and_split_by_grid():
    puzzles = sudoku.generate(6, 200, (12, 18), seed=2)
    assert len({canonical(p.solution) for p in puzzles}) >= 190  # not relabellings of a few grids
    train, test = sudoku.split_by_grid(puzzles + puzzles[:20], test=20)  # the last 20 repeat the first 20's grids
    assert len(test) == 20 and len(train) == 180
    assert not {p.solution for p in train} & {p.solution for p in test}


def test_the_checker_accepts_any_valid_completion_and_refuses_the_rest():
    puzzle = sudoku.Puzzle(4, (0,) * 16, (1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1))
    other = (2, 1, 4, 3, 3, 4, 1, 2, 1, 2, 3, 4, 4, 3, 2, 1)  # another valid grid, no clues to keep
    assert sudoku.is_solution(puzzle, other)
    clued = sudoku.Puzzle(4, (1,) + (0,) * 15, puzzle.solution)
    assert not sudoku.is_solution(clued, other)  # breaks the clue
    broken = list(puzzle.solution)
    broken[0], broken[1] = broken[1], broken[0]
    assert not sudoku.is_solution(puzzle, broken) and not sudoku.is_solution(puzzle, puzzle.solution[:-1])
    latin = [1, 2, 3, 4, 2, 3, 4, 1, 3, 4, 1, 2, 4, 1, 2, 3]  # every row and column right, the boxes not
    assert not sudoku.is_solution(sudoku.Puzzle(4, (0,) * 16, tuple(latin)), latin)


def test_symmetries_keep_puzzles_valid_and_unique():
    rng = random.Random(0)
    for puzzle in sudoku.generate(6, 10, (12, 16), seed=3):
        moved = sudoku.transform(puzzle, rng)
        assert moved.givens == puzzle.givens and sudoku.solve(list(moved.clues), 6, limit=2) == [list(moved.solution)]


def test_path_star_records_and_checker():
    graphs = path_star.generate(50, arms=3, arm_length=4, num_labels=30, seed=0)
    assert graphs == path_star.generate(50, seed=0)
    for graph in graphs:
        record = path_star.encode(graph)
        assert len(record["tokens"]) == 45 and sum(record["given"]) == 40
        assert record["tokens"][40:] == list(graph.path) and path_star.is_path(graph, graph.path)
        assert len(set(graph.path)) == 5 and graph.path[0] == graph.start and graph.path[-1] == graph.goal
    graph = graphs[0]
    wrong_arm = next(v for u, v in graph.edges if u == graph.start and v != graph.path[1])
    assert not path_star.is_path(graph, (graph.start, wrong_arm, *graph.path[2:]))
    assert {g.goal for g in graphs} != {graphs[0].goal}  # the goal arm varies
