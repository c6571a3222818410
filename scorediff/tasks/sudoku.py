"""Sudoku puzzles for prompted training, deterministic from a seed and offline.

Full grids are drawn by a randomised backtracking solver (every valid grid can come out, not the symmetries of
one base grid); a puzzle keeps the grid's clues while removing the others would still leave exactly one solution
(checked by the solver), down to a drawn number of givens. ``split_by_grid`` keeps the grids of the training
and test puzzles apart. The checker accepts any valid completion that keeps the clues.

As tokens (``encode``): ``0`` is a blank, ``1..n`` the digits, ``n + r`` (r = 1..n) the tag that ends row ``r``; a
prompt is the puzzle row by row with its tags, and the answer the solved grid in the same layout, in which the
tags and the clues are given in place: the unknowns are the blanks alone. A network with only relative positions
can still tell the rows apart, and a left-to-right model sees every clue in the prompt before it answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: board size -> (box rows, box columns)
BOXES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}


@dataclass(frozen=True)
class Puzzle:
    """A puzzle and its unique solution, both row-major tuples of ``n * n`` values (0: blank)."""

    size: int
    clues: tuple[int, ...]
    solution: tuple[int, ...]

    @property
    def givens(self) -> int:
        return sum(1 for value in self.clues if value)


def _units(size: int) -> list[tuple[int, int, int]]:
    """For each cell, its row, column and box."""
    box_rows, box_cols = BOXES[size]
    units = []
    for cell in range(size * size):
        row, col = divmod(cell, size)
        units.append((row, col, (row // box_rows) * (size // box_cols) + col // box_cols))
    return units


_UNITS = {size: _units(size) for size in BOXES}


def solve(grid: list[int], size: int, limit: int = 2, rng: random.Random | None = None) -> list[list[int]]:
    """Up to ``limit`` solutions of ``grid`` (0: blank), by backtracking on the cell with fewest candidates (the
    first such cell), values tried in increasing order or, with ``rng``, shuffled (to draw random grids). The
    digits used in each row, column and box are kept as bit masks."""
    units, full = _UNITS[size], (1 << (size + 1)) - 2  # bits 1..size
    grid, found = list(grid), []
    rows, cols, boxes = ([0] * size for _ in range(3))  # digits used in each, as bit masks
    for cell, value in enumerate(grid):
        if value:
            r, c, b = units[cell]
            rows[r], cols[c], boxes[b] = rows[r] | 1 << value, cols[c] | 1 << value, boxes[b] | 1 << value

    def flip(cell: int, bit: int) -> None:
        r, c, b = units[cell]
        rows[r] ^= bit
        cols[c] ^= bit
        boxes[b] ^= bit

    def search() -> None:
        best, best_mask, best_count = -1, 0, size + 1
        for cell in range(size * size):
            if grid[cell]:
                continue
            r, c, b = units[cell]
            mask = full & ~(rows[r] | cols[c] | boxes[b])
            if mask.bit_count() < best_count:
                best, best_mask, best_count = cell, mask, mask.bit_count()
                if not best_count:
                    return
        if best < 0:
            found.append(list(grid))
            return
        values = [v for v in range(1, size + 1) if best_mask >> v & 1]
        if rng is not None:
            rng.shuffle(values)
        for value in values:
            grid[best] = value
            flip(best, 1 << value)
            search()
            flip(best, 1 << value)
            if len(found) >= limit:
                break
        grid[best] = 0

    search()
    return found


def random_grid(size: int, rng: random.Random) -> list[int]:
    """A uniformly shuffled solver's first full grid: any valid grid may come out."""
    return solve([0] * size * size, size, limit=1, rng=rng)[0]


def make_puzzle(grid: list[int], givens: int, rng: random.Random) -> Puzzle:
    """Blank the cells of ``grid`` in a random order, keeping a blank only while the solution stays unique, until
    ``givens`` clues are left (or no further cell can go)."""
    size = int(len(grid) ** 0.5)
    clues = list(grid)
    for cell in rng.sample(range(len(grid)), len(grid)):
        if sum(1 for v in clues if v) <= givens:
            break
        value, clues[cell] = clues[cell], 0
        if len(solve(clues, size, limit=2)) != 1:
            clues[cell] = value
    return Puzzle(size, tuple(clues), tuple(grid))


def is_solution(puzzle: Puzzle, answer: list[int] | tuple[int, ...]) -> bool:
    """Whether ``answer`` is a valid full grid that keeps every clue (any valid completion counts)."""
    size = puzzle.size
    if len(answer) != size * size or any(not 1 <= v <= size for v in answer):
        return False
    if any(clue and clue != value for clue, value in zip(puzzle.clues, answer, strict=True)):
        return False
    seen = {(kind, index, value) for cell, value in enumerate(answer) for kind, index in enumerate(_UNITS[size][cell])}
    return len(seen) == 3 * size * size  # no digit twice in a row, column or box


def transform(puzzle: Puzzle, rng: random.Random) -> Puzzle:
    """The same puzzle under a random symmetry of the board: digits relabelled, bands and the rows within them,
    stacks and the columns within them permuted (validity and uniqueness are kept)."""
    size = puzzle.size
    box_rows, box_cols = BOXES[size]
    digits = [0, *rng.sample(range(1, size + 1), size)]

    def lines(box: int) -> list[int]:
        groups = rng.sample(range(size // box), size // box)
        return [g * box + i for g in groups for i in rng.sample(range(box), box)]

    rows, cols = lines(box_rows), lines(box_cols)

    def move(values: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(digits[values[rows[r] * size + cols[c]]] for r in range(size) for c in range(size))

    return Puzzle(size, move(puzzle.clues), move(puzzle.solution))


def generate(size: int, count: int, givens: tuple[int, int], seed: int) -> list[Puzzle]:
    """``count`` puzzles, each from its own freshly drawn grid, with a number of givens drawn in ``givens``
    (inclusive; a puzzle keeps more when no further clue can go without a second solution)."""
    if size not in BOXES:
        raise ValueError(f"size must be one of {sorted(BOXES)}; got {size}")
    rng = random.Random(seed)
    return [make_puzzle(random_grid(size, rng), rng.randint(*givens), rng) for _ in range(count)]


def split_by_grid(puzzles: list[Puzzle], test: int) -> tuple[list[Puzzle], list[Puzzle]]:
    """The last ``test`` puzzles whose grids no training puzzle shares, and the training puzzles."""
    test_part = puzzles[len(puzzles) - test :]
    held = {p.solution for p in test_part}
    return [p for p in puzzles[: len(puzzles) - test] if p.solution not in held], test_part


def encode(puzzle: Puzzle) -> dict:
    """A ``tokens`` / ``given`` record: the puzzle then its solution, each row ended by its tag; given are the
    puzzle, and in the solution its tags and clues."""
    size = puzzle.size

    def rows(values: tuple[int, ...]) -> list[int]:
        return [t for r in range(size) for t in (*values[r * size : (r + 1) * size], size + 1 + r)]

    prompt, answer = rows(puzzle.clues), rows(puzzle.solution)
    return {"tokens": prompt + answer, "given": [True] * len(prompt) + [bool(t) for t in prompt]}


def decode_answer(size: int, tokens: list[int]) -> list[int]:
    """The grid in an encoded answer (the row tags dropped), ``n * n`` values."""
    return [t for i, t in enumerate(tokens) if i % (size + 1) != size]


def num_tokens(size: int) -> int:
    """Blank, digits and one tag per row."""
    return 2 * size + 1
