"""The papers' zero-shot protocol: detokenisers on known strings, the two window conventions by hand."""

import pytest

from scorediff.data import zero_shot
from scorediff.data.sources import DataError
from scorediff.data.zero_shot import (
    lambada_detokenize,
    lm1b_detokenize,
    ptb_detokenize,
    wikitext_detokenize,
    zero_shot_windows,
)


@pytest.mark.parametrize(
    "detokenize, raw, expected",
    [
        (
            wikitext_detokenize,
            " The 2 @,@ 000 @-@ year ( old ) man 's car was 3 @.@ 5 m long ; it ran . \n",
            " The 2,000-year (old) man's car was 3.5 m long; it ran.\n",
        ),
        (wikitext_detokenize, " = = Gameplay = = \n", " == Gameplay ==\n"),
        (wikitext_detokenize, ' He said " yes " , at 5 \u00b0 C ', ' He said "yes", at 5\u00b0C '),
        (
            ptb_detokenize,
            "the company 's shares did n't rise N N to $ N \\/ share <unk>",
            "the company's shares didn't rise 1 1 to $1 / share ?",
        ),
        (
            lm1b_detokenize,
            'He said , " it \'s fine . " Visit http : / / x.com today !',
            'He said, "it\'s fine." Visit http://x.com today!',
        ),
        (lm1b_detokenize, "It cost $ 5 ( or \u00a3 4 ) .", "It cost $5 (or \u00a34) ."),
        (lambada_detokenize, "\u201cHi,\u201d she said.  ", '\n"Hi," she said.'),
    ],
)
def test_detokenisers_on_known_strings(detokenize, raw, expected):
    assert detokenize(raw) == expected


def test_windows_are_cut_per_group_of_rows_by_either_convention(monkeypatch):
    """Rows ab | c | de | f in groups of two, end token 9: each group's stream is cut alone, its remainder
    dropped; MDLM's windows frame length - 2 tokens of it with the end token."""
    monkeypatch.setattr(zero_shot, "GROUP_ROWS", 2)
    encode = lambda text: ["abcdef".index(c) for c in text]  # noqa: E731
    rows = ["ab", "c", "de", "f"]  # streams: 0 1 9 2 9 | 3 4 9 5 9
    sedd = zero_shot_windows(rows, encode, [9], 2, "sedd", shards=1)
    assert sedd.tolist() == [[0, 1], [9, 2], [3, 4], [9, 5]]
    mdlm = zero_shot_windows(rows, encode, [9], 4, "mdlm")
    assert mdlm.tolist() == [[9, 0, 1, 9], [9, 9, 2, 9], [9, 3, 4, 9], [9, 9, 5, 9]]
    two = zero_shot_windows(rows, encode, [7, 8], 3, "sedd", shards=1)  # a separator of two tokens: 0 1 7 8 2 7 8 | ...
    assert two.tolist() == [[0, 1, 7], [8, 2, 7], [3, 4, 7], [8, 5, 7]]
    with pytest.raises(DataError, match="no window to score"):
        zero_shot_windows(rows, encode, [9], 6, "sedd")
    with pytest.raises(DataError, match="one end-of-text token"):
        zero_shot_windows(rows, encode, [7, 8], 4, "mdlm")
