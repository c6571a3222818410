"""Is generated DNA like real DNA? k-mer spectra, GC content, a real-vs-generated discriminator, a species classifier.

Sequences are int64 base ids (N, L) (A, C, G, T = 0-3). The classifiers are multinomial logistic regressions on
k-mer frequencies (k = 1..4: 340 features), fitted in float64 with L-BFGS; k-mer composition is what tells
bacterial species apart at these lengths, and a linear model keeps the discriminator honest (it sees what a
k-mer spectrum sees, no more).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

FEATURE_KS = (1, 2, 3, 4)


def kmer_counts(seqs: Tensor, k: int) -> Tensor:
    """Counts of every k-mer in each row, float64 (N, 4**k); k-mers are read within a row, never across rows."""
    seqs = seqs.long()
    if seqs.shape[-1] < k:
        return torch.zeros(seqs.shape[0], 4**k, dtype=torch.float64)
    windows = seqs.unfold(-1, k, 1)  # (N, L - k + 1, k)
    index = (windows * (4 ** torch.arange(k - 1, -1, -1))).sum(-1)
    counts = torch.zeros(seqs.shape[0], 4**k, dtype=torch.float64)
    return counts.scatter_add_(1, index, torch.ones_like(index, dtype=torch.float64))


def kmer_spectrum(seqs: Tensor, k: int) -> Tensor:
    """Frequencies of the k-mers over all rows, float64 (4**k,), summing to 1."""
    counts = kmer_counts(seqs, k).sum(0)
    return counts / counts.sum().clamp_min(1)


def js_distance(p: Tensor, q: Tensor) -> float:
    """Jensen-Shannon distance (the square root of the divergence, base 2): 0 for equal laws, 1 for disjoint."""
    m = 0.5 * (p + q)
    kl = lambda a: float(torch.where(a > 0, a * (a / m).log2(), 0.0).sum())  # noqa: E731
    return math.sqrt(max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


def kmer_js(real: Tensor, generated: Tensor, ks=(3, 4, 5, 6)) -> dict[str, float]:
    """``{k: JS distance}`` between the k-mer spectra of two sets of sequences."""
    return {str(k): js_distance(kmer_spectrum(real, k), kmer_spectrum(generated, k)) for k in ks}


def gc_content(seqs: Tensor) -> Tensor:
    """The fraction of G and C in each row, float64 (N,)."""
    return ((seqs == 1) | (seqs == 2)).double().mean(-1)


def gc_distance(real: Tensor, generated: Tensor, quantiles: int = 201) -> float:
    """1-Wasserstein distance between the GC-content distributions (in GC fraction; 0 for equal laws)."""
    grid = torch.linspace(0, 1, quantiles, dtype=torch.float64)
    a, b = torch.quantile(gc_content(real), grid), torch.quantile(gc_content(generated), grid)
    return float((a - b).abs().mean())


def kmer_features(seqs: Tensor, ks=FEATURE_KS) -> Tensor:
    """Per-row k-mer frequencies for k in ``ks``, concatenated, float64 (N, sum 4**k)."""
    parts = []
    for k in ks:
        counts = kmer_counts(seqs, k)
        parts.append(counts / counts.sum(-1, keepdim=True).clamp_min(1))
    return torch.cat(parts, -1)


class KmerClassifier:
    """Multinomial logistic regression on standardised k-mer features, L2-penalised, fitted by L-BFGS."""

    def __init__(self, num_classes: int, l2: float = 1e-2, steps: int = 100):
        self.num_classes, self.l2, self.steps = num_classes, l2, steps

    def fit(self, seqs: Tensor, labels: Tensor) -> KmerClassifier:
        features = kmer_features(seqs)
        spread = features.std(0) if len(features) > 1 else torch.ones_like(features[0])  # one row has none
        self.mean, self.std = features.mean(0), spread.clamp_min(1e-6)
        x, y = (features - self.mean) / self.std, labels.long()
        self.weight = torch.zeros(x.shape[1], self.num_classes, dtype=torch.float64, requires_grad=True)
        self.bias = torch.zeros(self.num_classes, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([self.weight, self.bias], max_iter=self.steps, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ self.weight + self.bias, y)
            loss = loss + self.l2 * self.weight.square().sum() / len(x)
            loss.backward()
            return loss

        optimizer.step(closure)
        return self

    @torch.no_grad()
    def log_probs(self, seqs: Tensor) -> Tensor:
        x = (kmer_features(seqs) - self.mean) / self.std
        return (x @ self.weight + self.bias).log_softmax(-1)

    def accuracy(self, seqs: Tensor, labels: Tensor) -> float:
        return float((self.log_probs(seqs).argmax(-1) == labels.long()).double().mean())


def auroc(scores: Tensor, positive: Tensor) -> float:
    """Area under the ROC curve: the chance that a positive scores above a negative (ties count one half),
    counted over every pair (sets of a few thousand)."""
    scores, positive = scores.double(), positive.bool()
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        raise ValueError("AUROC needs both positives and negatives")
    above = (pos[:, None] > neg[None]).double().mean()
    ties = (pos[:, None] == neg[None]).double().mean()
    return float(above + 0.5 * ties)


def discriminator_auroc(real: Tensor, generated: Tensor, seed: int = 0) -> float:
    """AUROC of a classifier trained on half of each set to tell real from generated, scored on the other halves.

    0.5: the classifier cannot tell them apart (the ideal); 1: it always can. Both sets should be of similar size.
    """
    generator = torch.Generator().manual_seed(seed)
    halves = [_halves(s, generator) for s in (real, generated)]
    train = torch.cat([halves[0][0], halves[1][0]])
    train_labels = torch.cat([torch.ones(len(halves[0][0])), torch.zeros(len(halves[1][0]))])
    test = torch.cat([halves[0][1], halves[1][1]])
    test_real = torch.cat([torch.ones(len(halves[0][1])), torch.zeros(len(halves[1][1]))]).bool()
    classifier = KmerClassifier(2).fit(train, train_labels)
    return auroc(classifier.log_probs(test)[:, 1], test_real)


def _halves(seqs: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    order = torch.randperm(len(seqs), generator=generator)
    cut = len(seqs) // 2
    return seqs[order[:cut]], seqs[order[cut:]]
