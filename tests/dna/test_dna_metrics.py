"""DNA metrics on inputs whose answers are known."""

import itertools

import torch

from scorediff.dna_metrics import (
    KmerClassifier,
    auroc,
    discriminator_auroc,
    gc_content,
    gc_distance,
    js_distance,
    kmer_counts,
    kmer_js,
)


def draw(n, length, gc, seed):
    """Rows of independent bases with GC content ``gc``."""
    probs = torch.tensor([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2], dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    return torch.multinomial(probs, n * length, True, generator=generator).reshape(n, length)


def test_kmer_counts_against_a_loop():
    seqs = torch.randint(0, 4, (3, 12), generator=torch.Generator().manual_seed(0))
    counts = kmer_counts(seqs, 3)
    for row, expected in zip(seqs.tolist(), counts, strict=True):
        brute = torch.zeros(64, dtype=torch.float64)
        for i in range(len(row) - 2):
            brute[row[i] * 16 + row[i + 1] * 4 + row[i + 2]] += 1
        assert torch.equal(brute, expected)


def test_js_distance_limits():
    seqs = draw(200, 64, 0.5, 0)
    assert all(v == 0.0 for v in kmer_js(seqs, seqs.clone()).values())  # identical sets
    only_a, only_c = torch.zeros(5, 10, dtype=torch.long), torch.ones(5, 10, dtype=torch.long)
    assert abs(kmer_js(only_a, only_c, ks=(3,))["3"] - 1.0) < 1e-12  # disjoint spectra
    p = torch.tensor([0.5, 0.5, 0.0])
    q = torch.tensor([0.0, 0.5, 0.5])
    assert abs(js_distance(p, q) - 0.5**0.5) < 1e-12  # JSD = 1/2 bit exactly


def test_gc_content_and_distance():
    assert gc_content(torch.tensor([[0, 1, 2, 3]])).item() == 0.5
    low, high = draw(400, 200, 0.3, 1), draw(400, 200, 0.7, 2)
    assert gc_distance(low, low) == 0.0
    assert abs(gc_distance(low, high) - 0.4) < 0.02  # the shift of the mean GC; spreads are equal


def test_auroc_against_every_pair():
    scores = torch.tensor([0.1, 0.4, 0.4, 0.8, 0.3, 0.4])
    positive = torch.tensor([1, 1, 0, 1, 0, 0]).bool()
    pairs = [(p, n) for p, n in itertools.product(scores[positive], scores[~positive])]
    brute = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert auroc(scores, positive) == brute


def test_discriminator_cannot_tell_a_set_from_itself_and_can_tell_gc():
    same = [discriminator_auroc(draw(600, 128, 0.5, s), draw(600, 128, 0.5, s + 100), seed=s) for s in range(3)]
    # 300 test rows per side: the AUROC of an uninformative score has standard error about 0.024
    assert abs(sum(same) / 3 - 0.5) < 0.05, same
    assert discriminator_auroc(draw(600, 128, 0.45, 7), draw(600, 128, 0.6, 8)) > 0.95


def test_species_classifier_learns_composition():
    train = torch.cat([draw(300, 128, 0.35, 1), draw(300, 128, 0.55, 2)])
    labels = torch.cat([torch.zeros(300), torch.ones(300)])
    classifier = KmerClassifier(2).fit(train, labels)
    test = torch.cat([draw(200, 128, 0.35, 3), draw(200, 128, 0.55, 4)])
    assert classifier.accuracy(test, torch.cat([torch.zeros(200), torch.ones(200)])) > 0.95
    assert classifier.accuracy(test, torch.cat([torch.ones(200), torch.zeros(200)])) < 0.05


def test_a_perfect_conditional_model_is_compared_class_by_class():
    """Real windows come in the data's proportions (here 5:1), a conditional model's in equal numbers: compared as
    two mixtures, even perfect samples are told apart; eval-dna compares like with like."""
    from scorediff.commands.dna import _compared_sets

    real = {"x_0": torch.cat([draw(1000, 128, 0.65, 1), draw(200, 128, 0.35, 2)])}
    real["label"] = torch.cat([torch.zeros(1000), torch.ones(200)]).long()
    generated = {0: draw(200, 128, 0.65, 3), 1: draw(200, 128, 0.35, 4)}  # exact draws from each class's law
    samples = torch.cat(list(generated.values()))
    assert discriminator_auroc(real["x_0"][:400], samples) > 0.7  # the mixtures differ: 5:1 against 1:1
    reference, compared, (first, second) = _compared_sets(real, generated, seed=0)
    # class 1 has 200 real windows: 100 compared with 100 generated, 100 for the floor
    assert len(reference) == len(compared) == len(first) == len(second) == 300 and torch.equal(first, reference)
    assert abs(float(gc_content(reference).mean()) - float(gc_content(compared).mean())) < 0.01
    assert abs(discriminator_auroc(reference, compared) - 0.5) < 0.1  # 200 test rows a side: s.e. about 0.03
    assert kmer_js(reference, compared)["3"] < 2 * kmer_js(first, second)["3"]
