"""Path-star graphs (Bachmann & Nagarajan 2024, "The pitfalls of next-token prediction", arXiv 2403.06963).

A star: a start node with ``arms`` paths of ``arm_length`` nodes leaving it, the nodes labelled with distinct
labels drawn from ``num_labels``. The prompt lists the edges in a random order, then the start and the goal (the
last node of one arm); the answer is the path from the start to the goal. Left to right, the first step is the
hard one (which arm?) and teacher forcing teaches a shortcut that never learns it; read from the goal backwards
the path is a chain of look-ups, which a model that fills positions in any order can find.

Tokens: ``0..num_labels-1`` the labels, then ``,`` (ends an edge), ``/`` (before the start and goal) and ``=``
(before the path).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class PathStar:
    """One graph: its edges (in prompt order), the start, the goal and the path between them (labels)."""

    edges: tuple[tuple[int, int], ...]
    start: int
    goal: int
    path: tuple[int, ...]


def make_graph(arms: int, arm_length: int, num_labels: int, rng: random.Random) -> PathStar:
    labels = rng.sample(range(num_labels), 1 + arms * arm_length)
    start, rest = labels[0], labels[1:]
    chains = [[start, *rest[a * arm_length : (a + 1) * arm_length]] for a in range(arms)]
    edges = [(chain[i], chain[i + 1]) for chain in chains for i in range(arm_length)]
    rng.shuffle(edges)
    target = rng.randrange(arms)
    return PathStar(tuple(edges), start, chains[target][-1], tuple(chains[target]))


def generate(count: int, arms: int = 3, arm_length: int = 4, num_labels: int = 30, seed: int = 0) -> list[PathStar]:
    if num_labels < 1 + arms * arm_length:
        raise ValueError(f"num_labels must be >= {1 + arms * arm_length} for distinct labels; got {num_labels}")
    rng = random.Random(seed)
    return [make_graph(arms, arm_length, num_labels, rng) for _ in range(count)]


def separators(num_labels: int) -> tuple[int, int, int]:
    """The ids of ``,``, ``/`` and ``=``."""
    return num_labels, num_labels + 1, num_labels + 2


def num_tokens(num_labels: int = 30) -> int:
    return num_labels + 3


def encode(graph: PathStar, num_labels: int = 30) -> dict:
    """A ``tokens`` / ``given`` record: edges, ``/ start goal =``, then the path (the answer)."""
    comma, slash, equals = separators(num_labels)
    prompt = [t for u, v in graph.edges for t in (u, v, comma)] + [slash, graph.start, graph.goal, equals]
    return {"tokens": prompt + list(graph.path), "given": [True] * len(prompt) + [False] * len(graph.path)}


def is_path(graph: PathStar, answer: list[int] | tuple[int, ...]) -> bool:
    """Whether ``answer`` walks the graph's edges from the start to the goal."""
    edges = set(graph.edges)
    return (
        len(answer) == len(graph.path)
        and answer[0] == graph.start
        and answer[-1] == graph.goal
        and all((u, v) in edges for u, v in zip(answer, answer[1:], strict=False))
    )
