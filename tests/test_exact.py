import pytest
import torch
from reference import all_sequences, random_data

from scorediff import AbsorbingGraph, ExactScore, UniformGraph


@pytest.mark.parametrize("graph", [AbsorbingGraph(3), UniformGraph(3)], ids=repr)
def test_exact_score_matches_explicit_enumeration(graph):
    data = random_data(3, 3, seed=1)
    exact = ExactScore(graph, data)
    sigma_bar = 0.8
    clean = all_sequences(3, 3)  # (27, 3)
    noisy = all_sequences(graph.vocab_size, 3)  # (M, 3)
    kernel = torch.linalg.matrix_exp(sigma_bar * graph.rate_matrix())  # kernel[y, x] = p(y | x)
    # p_t(x_t) = sum over x_0 of p(x_0) prod_i p(x_t^i | x_0^i), one sequence pair at a time
    p_t = torch.zeros(noisy.shape[0], dtype=torch.float64)
    for m, x_t in enumerate(noisy):
        for x_0, weight in zip(clean, data.reshape(-1), strict=True):
            p_t[m] += weight * kernel[x_t, x_0].prod()
    torch.testing.assert_close(exact.marginal(sigma_bar).reshape(-1), p_t, rtol=1e-12, atol=1e-15)

    x_t = noisy[torch.tensor([0, 5, 17, noisy.shape[0] - 1])]
    log_score = exact(x_t, torch.full((4,), sigma_bar, dtype=torch.float64))
    for b in range(4):
        for i in range(3):
            for y in range(graph.vocab_size):
                neighbour = x_t[b].clone()
                neighbour[i] = y
                n_index = int((neighbour * graph.vocab_size ** torch.arange(2, -1, -1)).sum())
                x_index = int((x_t[b] * graph.vocab_size ** torch.arange(2, -1, -1)).sum())
                expected = (p_t[n_index] / p_t[x_index]).log()
                torch.testing.assert_close(log_score[b, i, y], expected, rtol=1e-10, atol=1e-12)
        assert (log_score[b].gather(-1, x_t[b][:, None]) == 0).all()


def test_exact_score_rejects_a_table_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"data_probs must have shape \(3,\) \* seq_len; got \(4, 4\)"):
        ExactScore(AbsorbingGraph(3), torch.full((4, 4), 1 / 16))
