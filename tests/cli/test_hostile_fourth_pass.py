"""What a hostile pass over infill, eval, eval-dna, lm-eval and the playground's flags found: each was ignored, a
traceback, several lines or a message that blamed something else. One line, exit code 2, nothing written."""

import re

import pytest
from cli_run import assert_user_error


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--port", "70000"], r"--port must be in \[1, 65535\]; got 70000"),  # an OverflowError from bind()
        (["--port", "0"], r"--port must be in \[1, 65535\]; got 0"),
        (["--host", "bogus.invalid"], r"--host 'bogus.invalid' is no address this machine resolves"),  # blamed the port
        (["--host", "999.1.1.1"], r"--host '999.1.1.1' is no address this machine resolves"),
    ],
)
def test_the_playground_refuses_an_address_it_cannot_serve_on(capsys, trained_run, flags, expected):
    assert_user_error(capsys, ["playground", "--checkpoint", str(trained_run), *flags], expected)


def test_flags_that_were_ignored_are_refused(capsys, trained_run, tmp_path):
    run = str(trained_run)
    template = ["infill", "--checkpoint", run, "--template", "To be[MASK:4]"]
    assert_user_error(capsys, [*template, "--region", "1-10"], r"--region and --record go with --fasta")
    assert_user_error(capsys, [*template, "--record", "chr1"], r"--region and --record go with --fasta")
    assert_user_error(capsys, ["eval", "--checkpoint", run, "--chunking", "mdlm"], r"--chunking go with --dataset")
    assert_user_error(capsys, ["sample", "--checkpoint", run, "--out", ""], r"--out expects a file path; got ''")
    assert_user_error(capsys, ["eval", "--checkpoint", run, "--json", " "], r"--json expects a file path; got ' '")


@pytest.mark.parametrize("marker", ["[MASK:-1]", "[MASK:two]", "[MASK:1.5]", "[MASK: 3]"])
def test_a_marker_that_is_almost_one_is_named(capsys, trained_run, marker):
    """``[MASK:-1]`` was taken as text, and the template said to hold no marker at all."""
    argv = ["infill", "--checkpoint", str(trained_run), "--template", f"To be {marker} or [MASK:2]"]
    assert_user_error(capsys, argv, rf"\[MASK:n\] needs n, a whole number > 0; got {re.escape(marker)}")
