"""Generators and checkers of prompted tasks, deterministic from a seed and offline: Sudoku and path-star graphs.
Each encodes an instance as a ``tokens`` / ``given`` record (``scorediff.data.examples``)."""

from . import path_star, sudoku

__all__ = ["path_star", "sudoku"]
