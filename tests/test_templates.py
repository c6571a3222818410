"""Text with gaps as tokens and a given-mask: templates and prefix/length/suffix requests."""

import pytest

from scorediff.data.tokenizers import CharTokenizer
from scorediff.errors import InputError
from scorediff.templates import gap, parse_template

TOKENIZER = CharTokenizer.from_texts(["abcdef xyz"])


def test_a_template_and_a_gap_mark_the_unknowns_alone():
    tokens, given = parse_template("ab[MASK:2]c[MASK]", TOKENIZER, context=16)
    assert given == [True, True, False, False, True, False]
    assert [t for t, g in zip(tokens, given, strict=True) if g] == TOKENIZER.encode("abc")
    assert gap("ab", 3, "c", TOKENIZER, context=6) == (TOKENIZER.encode("ab") + [0, 0, 0] + TOKENIZER.encode("c"),
                                                       [True, True, False, False, False, True])  # fmt: skip


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: gap("ab", 0, "", TOKENIZER, 8), "at least 1; got 0"),
        (lambda: gap("ab", 6, "c", TOKENIZER, 8), "would be 9 tokens; the model's context is 8"),
        (lambda: parse_template("abc", TOKENIZER, 8), "no [MASK:n] marker"),
        (lambda: parse_template("a[MASK:0]", TOKENIZER, 8), "needs n > 0"),
        (lambda: gap("a~", 1, "", TOKENIZER, 8), "cannot encode the prompt"),
    ],
)
def test_requests_that_cannot_be_built_are_one_line_errors(build, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build()


class CountingTokenizer:
    """A char tokenizer that records the length of every text it is asked to encode."""

    def __init__(self):
        self.inner, self.encoded = CharTokenizer.from_texts(["abcdef xyz"]), []

    def encode(self, text):
        self.encoded.append(len(text))
        return self.inner.encode(text)


@pytest.mark.parametrize("digits", [20, 5000])
def test_a_mask_count_past_the_context_is_refused_from_its_digits(digits):
    with pytest.raises(
        InputError, match=rf"\[MASK:n\] with n of {digits} digits asks for more tokens than the model's context of 8"
    ):
        parse_template(f"ab[MASK:{'9' * digits}]c", TOKENIZER, context=8)
    with pytest.raises(InputError, match=r"\[MASK:9\] asks for more tokens than the model's context of 8"):
        parse_template("ab[MASK:9]c", TOKENIZER, context=8)
    assert parse_template("[MASK:0008]", TOKENIZER, context=8)[1] == [False] * 8  # leading zeros are still 8


def test_a_huge_prompt_is_refused_before_it_is_tokenised_whole():
    tokenizer = CountingTokenizer()
    huge = "abc " * 2_500_000  # 10 MB of text for a 16-token context
    for build in (lambda: gap(huge, 1, "", tokenizer, 16), lambda: parse_template(huge + "[MASK]", tokenizer, 16)):
        with pytest.raises(InputError, match="far longer than the model's context of 16 tokens"):
            build()
    assert max(tokenizer.encoded) == 64 * 17  # only the head was encoded
    assert gap("ab", 2, "", tokenizer, 16)[1] == [True, True, False, False]  # a short prompt is encoded whole
