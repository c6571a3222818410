"""The nucleotide substitution models: their structure, their stationary laws and their scale."""

import pytest
import torch

from scorediff import DenseGraph, UniformGraph, get_graph
from scorediff.graphs.dna import substitution_matrix

TRANSITIONS = [(0, 2), (2, 0), (1, 3), (3, 1)]  # A <-> G, C <-> T


def test_jc69_is_the_uniform_graph_on_four_bases():
    torch.testing.assert_close(get_graph("jc69", 4).rate_matrix(), UniformGraph(4).rate_matrix(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("kappa", [0.5, 1.0, 4.0])
def test_hky85_structure_stationarity_and_scale(kappa):
    pi = torch.tensor([0.35, 0.15, 0.2, 0.3], dtype=torch.float64)
    q = substitution_matrix(kappa, pi.tolist())  # column convention: q[y, x] is the rate of x -> y
    for y in range(4):
        for x in range(4):
            if x != y:
                # the rate into y is proportional to pi_y, times kappa for a transition
                expected_ratio = pi[y] * (kappa if (x, y) in TRANSITIONS else 1.0)
                torch.testing.assert_close(q[y, x] / q[1, 0] * pi[1], expected_ratio, rtol=1e-12, atol=0)
    torch.testing.assert_close(q @ pi, torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-15)  # pi is stationary
    assert abs(float(-(pi * torch.diag(q)).sum()) - 0.75) < 1e-12  # changes per unit of noise, as uniform's
    graph = get_graph("hky85", 4, kappa=kappa, base_frequencies=pi.tolist())
    torch.testing.assert_close(graph.limit_distribution(), pi, rtol=0, atol=1e-12)
    far = graph.transition(torch.tensor([0]), torch.tensor(60.0, dtype=torch.float64))[0]
    torch.testing.assert_close(far, pi, rtol=0, atol=1e-10)  # fully noised: the base composition


def test_dense_graph_accepts_float32_rates_at_their_scale():
    # F81 rates in float32 do not sum to 0 to float64 precision; the check is relative to the given precision
    q = substitution_matrix(1.0, [0.31, 0.19, 0.21, 0.29]).float() * 1000
    assert DenseGraph(q).vocab_size == 4
    broken = q.clone()
    broken[0, 0] += 5.0
    with pytest.raises(ValueError, match="columns must sum to 0"):
        DenseGraph(broken)


def test_a_users_rates_are_read_in_the_row_convention():
    rows = [[0, 2.0, 0.5], [1.0, 0, 1.0], [0.25, 0.25, 0]]  # rows[x][y]: the rate of x -> y
    q = get_graph("dense", 3, rate_matrix=rows).rate_matrix()
    assert q[1, 0] == 2.0 and q[0, 1] == 1.0 and q[0, 0] == -2.5
    with pytest.raises(ValueError, match="must be 3 x 3"):
        get_graph("dense", 3, rate_matrix=[[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="need the 4 bases"):
        get_graph("k80", 5)
    with pytest.raises(ValueError, match="4 positive numbers"):
        get_graph("f81", 4, base_frequencies=[0.5, 0.5, 0.0, 0.0])


@pytest.mark.parametrize("kappa", [0.0, -1.0, float("nan"), float("inf"), 1e24, 1e308])
def test_a_kappa_past_what_float64_holds_is_refused(kappa):
    """At kappa 1e24 the stationary law of frequencies (0.1, 0.2, 0.3, 0.4) came out as (0.25, 0, 0.75, 0) and the
    run trained on it without a word; 1e6, far past published estimates, still gives the frequencies back."""
    from scorediff.errors import InputError

    with pytest.raises(InputError, match=r"kappa \(the transition/transversion rate ratio\) must be in \(0, 1e\+06\]"):
        substitution_matrix(kappa, [0.1, 0.2, 0.3, 0.4])
    limit = get_graph("hky85", 4, kappa=1e6, base_frequencies=[0.1, 0.2, 0.3, 0.4]).limit_distribution()
    torch.testing.assert_close(limit, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64))
