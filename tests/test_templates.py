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
