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


#: board size -> (box rows, box columns), written out here rather than read from the generator
BOX_SHAPES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}


def fits(grid: list[int], size: int, cell: int, digit: int) -> bool:
    """Whether ``digit`` can go in ``cell``: not already in its row, column or box (read by scanning them)."""
    box_rows, box_cols = BOX_SHAPES[size]
    row, col = divmod(cell, size)
    top, left = row - row % box_rows, col - col % box_cols
    peers = [grid[row * size + c] for c in range(size)] + [grid[r * size + col] for r in range(size)]
    peers += [grid[r * size + c] for r in range(top, top + box_rows) for c in range(left, left + box_cols)]
    return digit not in peers


def count_solutions(clues, size: int, limit: int = 2) -> tuple[int, list[int] | None]:
    """How many completions ``clues`` has, counting up to ``limit``, and the first one found: plain backtracking
    over digits (the blank with fewest fitting digits first, so 9x9 stays fast), independent of the generator's
    bit-mask solver."""
    grid = list(clues)
    for cell, value in enumerate(clues):  # clues that clash have no completion
        grid[cell] = 0
        if value and not fits(grid, size, cell, value):
            return 0, None
        grid[cell] = value
    first = []

    def search() -> int:
        blanks = [cell for cell in range(size * size) if grid[cell] == 0]
        if not blanks:
            if not first:
                first.append(list(grid))
            return 1
        options = {cell: [d for d in range(1, size + 1) if fits(grid, size, cell, d)] for cell in blanks}
        cell = min(blanks, key=lambda c: len(options[c]))
        found = 0
        for digit in options[cell]:
            grid[cell] = digit
            found += search()
            grid[cell] = 0
            if found >= limit:
                break
        return found

    return search(), (first[0] if first else None)


def test_the_independent_counter_counts():
    """The counter itself: an empty 4x4 board has 288 grids (a known count); a full grid with the 1s and 2s of
    its left two columns in rows 0 and 2 blanked has exactly two completions (they can swap); clashing clues
    have none."""
    assert count_solutions([0] * 16, 4, limit=1000)[0] == 288
    solved = [1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1]
    assert count_solutions(solved, 4) == (1, solved)
    swappable = [0, 0, 3, 4, 3, 4, 1, 2, 0, 0, 4, 3, 4, 3, 2, 1]
    assert count_solutions(swappable, 4, limit=1000) == (2, [1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1])
    assert count_solutions([1, 1] + [0] * 14, 4) == (0, None)
    assert count_solutions([1, 0, 0, 0, 0, 1] + [0] * 10, 4) == (0, None)  # the same digit twice in a box


@pytest.mark.parametrize("size, count", [(4, 40), (6, 20), (9, 4)])
def test_generated_puzzles_have_exactly_one_solution_by_an_independent_search(size, count):
    """Puzzles in the benchmark's clue ranges (training and the fewer-givens split), seeds 0 and 1: the
    independent counter finds exactly one completion and it is the stated solution. A puzzle with more clues
    than its range allows claims no clue could go: removing any one of them must open a second solution."""
    ranges = {4: [(6, 8), (4, 5)], 6: [(12, 18), (8, 11)], 9: [(30, 36), (24, 29)]}[size]
    for seed, givens in zip((0, 1), ranges, strict=True):
        for puzzle in sudoku.generate(size, count, givens, seed):
            assert count_solutions(puzzle.clues, size) == (1, list(puzzle.solution))
            if puzzle.givens > givens[1] and size < 9:
                for cell in (c for c, v in enumerate(puzzle.clues) if v):
                    fewer = list(puzzle.clues)
                    fewer[cell] = 0
                    assert count_solutions(fewer, size)[0] == 2


def grid(text: str) -> tuple[int, ...]:
    return tuple(int(c) for c in text.replace(" ", ""))


#: (size, seed) -> the first two puzzles of ``generate(size, 2, givens, seed)`` with the benchmark's training
#: clue range, as (clues, solution) row by row; a change to the generator (or its use of the seed) shows here
PINNED = {
    (4, 0): [("3004 0403 0042 0031", "3124 2413 1342 4231"), ("0124 2430 4300 0000", "3124 2431 4312 1243")],
    (4, 1): [("0310 0000 2043 0001", "4312 1234 2143 3421"), ("2410 0000 1204 4020", "2413 3142 1234 4321")],
    (6, 0): [
        ("000430 000601 620010 004200 300000 060500", "516432 243651 625314 134265 352146 461523"),
        ("300000 201500 005010 062004 004103 000245", "356421 241536 435612 162354 524163 613245"),
    ],
    (6, 1): [
        ("015020 426001 200100 650300 030060 004010", "315624 426531 243156 651342 132465 564213"),
        ("014253 352400 000640 506300 200530 000060", "614253 352416 123645 546321 261534 435162"),
    ],
}


@pytest.mark.parametrize("size, seed", sorted(PINNED))
def test_puzzles_are_pinned_per_seed(size, seed):
    givens = {4: (6, 8), 6: (12, 18)}[size]
    expected = [sudoku.Puzzle(size, grid(clues), grid(solution)) for clues, solution in PINNED[size, seed]]
    assert sudoku.generate(size, 2, givens, seed) == expected


def test_a_9x9_puzzle_is_pinned():
    clues = "800000000 040000059 005070003 009060000 610042008 000389600 001900864 730650020 004010000"
    solution = "872593146 346821759 195476283 289165437 613742598 457389612 521937864 738654921 964218375"
    assert sudoku.generate(9, 1, (30, 36), 0) == [sudoku.Puzzle(9, grid(clues), grid(solution))]
