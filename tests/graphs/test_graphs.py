"""Every graph against brute force: dense matrix exponentials and the score entropy summed entry by entry."""

import pytest
import torch

from scorediff import GRAPHS, AbsorbingGraph, DenseGraph, UniformGraph, get_graph

DENSE_Q = [[-2.0, 1.0, 1.0], [1.0, -2.0, 1.0], [1.0, 1.0, -2.0]]
# A DNA-like substitution model (A, C, G, T): transitions A<->G, C<->T at rate 2, transversions at rate 0.5.
KIMURA = torch.tensor(
    [[0.0, 0.5, 2.0, 0.5], [0.5, 0.0, 0.5, 2.0], [2.0, 0.5, 0.0, 0.5], [0.5, 2.0, 0.5, 0.0]], dtype=torch.float64
)
KIMURA -= torch.diag(KIMURA.sum(0))


# what each registered graph is built with in the contract tests: every name in GRAPHS must appear here
REGISTERED = {
    "absorbing": (5, {}),
    "uniform": (5, {}),
    "jc69": (4, {}),
    "k80": (4, {"kappa": 3.0}),
    "f81": (4, {"base_frequencies": [0.1, 0.2, 0.3, 0.4]}),
    "hky85": (4, {"kappa": 2.5, "base_frequencies": [0.35, 0.15, 0.2, 0.3]}),
    "dense": (3, {"rate_matrix": [[0, 1, 2], [0.5, 0, 0.5], [1, 1, 0]]}),
}


def all_graphs():
    graphs = [get_graph(name, n, **options) for name, (n, options) in REGISTERED.items()]
    return graphs + [DenseGraph(DENSE_Q), DenseGraph(KIMURA)]


def test_every_registered_graph_is_under_contract():
    assert set(REGISTERED) == set(GRAPHS)


GRAPH_IDS = [repr(g) for g in all_graphs()]


@pytest.fixture(params=all_graphs(), ids=GRAPH_IDS)
def graph(request, float64):
    return request.param


def brute_score_entropy(q, log_score, sigma_bar, x_t, x_0):
    """sum over y != x_t of Q(y -> x_t) [s_y - r_y log s_y + K(r_y)], one position at a time."""
    out = torch.zeros(x_t.shape, dtype=torch.float64)
    for index in _indices(x_t.shape):
        kernel = torch.linalg.matrix_exp(float(sigma_bar[index[0]]) * q)
        p = kernel[:, x_0[index]]
        x = int(x_t[index])
        total = 0.0
        for y in range(q.shape[0]):
            if y == x or q[x, y] == 0:
                continue
            r = p[y] / p[x]
            k = r * (torch.log(r) - 1) if r > 0 else 0.0
            total += q[x, y] * (log_score[index][y].exp() - r * log_score[index][y] + k)
        out[index] = total
    return out


def _indices(shape):
    return [tuple(int(i) for i in idx) for idx in torch.cartesian_prod(*[torch.arange(s) for s in shape])]


def valid_pair(graph, shape, generator, sigma_bar):
    """Clean tokens and a noised version of them that the forward process can produce."""
    x_0 = torch.randint(0, graph.num_tokens, shape, generator=generator)
    x_t = graph.sample_transition(x_0, sigma_bar, generator=generator)
    return x_0, x_t


def test_rate_matrix_is_a_generator(graph):
    q = graph.rate_matrix()
    assert q.shape == (graph.vocab_size, graph.vocab_size)
    torch.testing.assert_close(q.sum(0), torch.zeros(graph.vocab_size), rtol=0, atol=1e-12)
    assert ((q - torch.diag(torch.diag(q))) >= 0).all()


@pytest.mark.parametrize("sigma_bar", [0.0, 1e-6, 0.05, 0.7, 3.0, 25.0])
def test_transition_is_column_of_matrix_exp(graph, sigma_bar):
    x = torch.arange(graph.vocab_size)
    expected = torch.linalg.matrix_exp(sigma_bar * graph.rate_matrix())
    out = graph.transition(x, torch.full(x.shape, sigma_bar))
    torch.testing.assert_close(out, expected.T, rtol=1e-10, atol=1e-12)  # row i of out = column i
    torch.testing.assert_close(out.sum(-1), torch.ones(graph.vocab_size), rtol=0, atol=1e-12)
    torch.testing.assert_close(graph.transp_transition(x, sigma_bar), expected, rtol=1e-10, atol=1e-12)
    if sigma_bar == 0.0:
        torch.testing.assert_close(out, torch.eye(graph.vocab_size), rtol=0, atol=0)


def test_transition_broadcasts_batch_sigma(graph):
    x = torch.randint(0, graph.vocab_size, (3, 4), generator=torch.Generator().manual_seed(0))
    sigma_bar = torch.tensor([0.1, 1.0, 4.0])
    out = graph.transition(x, sigma_bar)  # (B,) broadcast over the sequence
    for b in range(3):
        expected = torch.linalg.matrix_exp(sigma_bar[b] * graph.rate_matrix())[:, x[b]].T
        torch.testing.assert_close(out[b], expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(graph.transition(x, sigma_bar[:, None]), out)


def test_rate_into_is_row_of_q(graph):
    x = torch.arange(graph.vocab_size)
    torch.testing.assert_close(graph.rate_into(x).double(), graph.rate_matrix(), rtol=0, atol=1e-7)


@pytest.mark.parametrize("sigma_bar", [0.05, 0.3, 0.5, 2.0, 9.0])
def test_score_entropy_matches_brute_force(graph, sigma_bar):
    generator = torch.Generator().manual_seed(1)
    x_0, x_t = valid_pair(graph, (2, 5), generator, sigma_bar)
    log_score = torch.randn(2, 5, graph.vocab_size, generator=generator)
    sigma = torch.tensor([sigma_bar, sigma_bar * 1.7])
    x_t[1] = graph.sample_transition(x_0[1], sigma[1], generator=generator)
    out = graph.score_entropy(log_score, sigma, x_t, x_0)
    expected = brute_score_entropy(graph.rate_matrix(), log_score, sigma, x_t, x_0)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    assert (out >= 0).all()


def true_log_ratios(graph, sigma_bar, x_t, x_0):
    probs = graph.transition(x_0, sigma_bar)
    return (probs / probs.gather(-1, x_t[..., None])).log()


@pytest.mark.parametrize("sigma_bar", [0.01, 0.5, 3.0])
def test_score_entropy_is_zero_with_zero_gradient_at_true_ratios(graph, sigma_bar):
    generator = torch.Generator().manual_seed(2)
    x_0, x_t = valid_pair(graph, (4, 6), generator, sigma_bar)
    log_score = true_log_ratios(graph, sigma_bar, x_t, x_0).clamp_min(-50.0)  # log 0 -> finite stand-in
    log_score.requires_grad_(True)
    value = graph.score_entropy(log_score, sigma_bar, x_t, x_0)
    torch.testing.assert_close(value, torch.zeros_like(value), rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(value.sum(), log_score)
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-12)
    # Moving away from the ratios makes it strictly positive wherever the position has incoming rates.
    moved = graph.score_entropy(log_score.detach() + 0.3, sigma_bar, x_t, x_0)
    has_rates = graph.rate_into(x_t).scatter(-1, x_t[..., None], 0.0).sum(-1) > 0
    assert (moved[has_rates] > 0).all()
    assert (moved[~has_rates] == 0).all()


@pytest.mark.parametrize("delta", [0.01, 0.4, 2.5])
def test_staggered_score_is_inverse_kernel_times_score(graph, delta):
    score = torch.rand(3, 4, graph.vocab_size, generator=torch.Generator().manual_seed(3)) + 0.1
    inverse = torch.linalg.matrix_exp(-delta * graph.rate_matrix())
    torch.testing.assert_close(graph.staggered_score(score, delta), score @ inverse.T, rtol=1e-10, atol=1e-10)


def test_reverse_rate_rows(graph):
    generator = torch.Generator().manual_seed(4)
    x = torch.randint(0, graph.vocab_size, (3, 4), generator=generator)
    score = torch.rand(3, 4, graph.vocab_size, generator=generator) + 0.1
    rate = graph.reverse_rate(x, score)
    q = graph.rate_matrix()
    for index in _indices(x.shape):
        xi = int(x[index])
        for y in range(graph.vocab_size):
            if y != xi:
                torch.testing.assert_close(rate[index][y], score[index][y] * q[xi, y])
    torch.testing.assert_close(rate.sum(-1), torch.zeros(3, 4), rtol=0, atol=1e-12)


def test_sample_transition_frequencies(graph):
    generator = torch.Generator().manual_seed(5)
    n = 200_000
    x_0 = torch.full((n,), 1)
    x_t = graph.sample_transition(x_0, 0.6, generator=generator)
    empirical = torch.bincount(x_t, minlength=graph.vocab_size).double() / n
    expected = graph.transition(torch.tensor(1), 0.6)
    # 5 standard errors of a binomial proportion
    torch.testing.assert_close(empirical, expected, rtol=0, atol=5 * (0.25 / n) ** 0.5)


def test_sample_limit_and_prior_kl(graph):
    generator = torch.Generator().manual_seed(6)
    x = graph.sample_limit(50_000, generator=generator)
    empirical = torch.bincount(x, minlength=graph.vocab_size).double() / x.numel()
    torch.testing.assert_close(empirical, graph.limit_distribution(), rtol=0, atol=0.01)
    if graph.mask_id is None:  # the KL to the limit goes to 0 as the noise grows
        kl = graph.prior_kl(torch.arange(graph.num_tokens), 40.0)
        torch.testing.assert_close(kl, torch.zeros_like(kl), rtol=0, atol=1e-12)
        assert (graph.prior_kl(torch.arange(graph.num_tokens), 1.0) > 0).all()


def test_absorbing_prior_kl_is_kl_to_the_noised_uniform_token(float64):
    graph = AbsorbingGraph(6)
    sigma_bar = 2.0
    x_0 = torch.arange(6)
    probs = graph.transition(x_0, sigma_bar)
    base = graph.transition(torch.arange(6), sigma_bar).mean(0)  # what the process makes of a uniform token
    expected = (probs * (probs.clamp_min(1e-300).log() - base.log())).sum(-1)
    torch.testing.assert_close(graph.prior_kl(x_0, sigma_bar), expected, rtol=1e-12, atol=1e-12)


def test_names_and_sizes():
    assert AbsorbingGraph(50).vocab_size == 51 and AbsorbingGraph(50).mask_id == 50
    assert UniformGraph(50).vocab_size == 50 and UniformGraph(50).mask_id is None
    assert isinstance(get_graph("absorb", 4), AbsorbingGraph)
    assert get_graph("uniform", 4).num_tokens == 4
    with pytest.raises(ValueError, match="unknown graph 'gaussian'; expected one of"):
        get_graph("gaussian", 4)


def test_dense_graph_rejects_bad_matrices():
    with pytest.raises(ValueError, match="rows sum to 0: pass its transpose"):
        DenseGraph([[-1.0, 1.0], [2.0, -2.0]])
    with pytest.raises(ValueError, match="non-negative off-diagonal"):
        DenseGraph([[1.0, -1.0], [-1.0, 1.0]])
    with pytest.raises(ValueError, match="square"):
        DenseGraph([[0.0, 0.0]])


def test_check_tokens():
    graph = AbsorbingGraph(4)
    graph.check_tokens(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"tokens must be in \[0, 5\); got values in \[0, 7\]"):
        graph.check_tokens(torch.tensor([0, 7]))
