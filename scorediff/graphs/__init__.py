"""Forward noising processes (rate matrices ``Q``) and the registry that names them."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from ..errors import InputError
from .absorbing import AbsorbingGraph
from .base import Graph
from .dense import DenseGraph, from_rates
from .dna import f81, hky85, jc69, k80
from .uniform import UniformGraph

#: name -> builder taking ``num_tokens`` first, then the keyword options it names
GRAPHS: dict[str, Callable[..., Graph]] = {
    "absorbing": AbsorbingGraph,
    "uniform": UniformGraph,
    "jc69": jc69,
    "k80": k80,
    "f81": f81,
    "hky85": hky85,
    "dense": from_rates,
}
_ALIASES = {"absorb": "absorbing"}  # the original SEDD configs say "absorb"


def get_graph(name: str, num_tokens: int, **options) -> Graph:
    """Build a registered graph by name: ``get_graph("absorbing", 50)``, ``get_graph("k80", 4, kappa=2.0)``.

    ``options`` may hold more than the builder takes (say, every field of a config section); only the keywords
    it names are passed.
    """
    key = _ALIASES.get(name, name)
    if key not in GRAPHS:
        raise InputError(f"unknown graph {name!r}; expected one of {sorted(GRAPHS)}")
    builder = GRAPHS[key]
    names = list(inspect.signature(builder).parameters)[1:]
    return builder(num_tokens, **{k: v for k, v in options.items() if k in names})


__all__ = ["GRAPHS", "AbsorbingGraph", "DenseGraph", "Graph", "UniformGraph", "get_graph"]
