"""Calling the command line in-process and checking how it fails."""

import re

from scorediff.cli import main


def run_cli(capsys, argv):
    """``main(argv)`` -> (exit code, stdout, stderr); argparse's own exits count as exit codes too."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_user_error(capsys, argv, pattern):
    """Exit code 2, one line on stderr that matches ``pattern``, no traceback."""
    code, _, err = run_cli(capsys, argv)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]
