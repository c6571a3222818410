"""Forward noising processes (rate matrices ``Q``) and the registry that names them."""

from __future__ import annotations

from .absorbing import AbsorbingGraph
from .base import Graph
from .dense import DenseGraph
from .uniform import UniformGraph

GRAPHS: dict[str, type[Graph]] = {
    "absorbing": AbsorbingGraph,
    "uniform": UniformGraph,
}
_ALIASES = {"absorb": "absorbing"}  # the original SEDD configs say "absorb"


def get_graph(name: str, num_tokens: int) -> Graph:
    """Build a registered graph by name: ``get_graph("absorbing", 50)``.

    ``DenseGraph`` takes a matrix, not a token count, so it is built directly.
    """
    key = _ALIASES.get(name, name)
    if key not in GRAPHS:
        raise ValueError(f"unknown graph {name!r}; expected one of {sorted(GRAPHS)}")
    return GRAPHS[key](num_tokens)


__all__ = ["GRAPHS", "AbsorbingGraph", "DenseGraph", "Graph", "UniformGraph", "get_graph"]
