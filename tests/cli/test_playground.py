"""The playground's session: it streams the sampler's states and keeps the given text, checks every field, ends
every stream however the sampler fails and shows a request only its own network calls (the page in a real browser:
test_playground_browser.py)."""

import logging
import math
import re
import threading
import time
from dataclasses import replace

import pytest

import scorediff
from scorediff.errors import InputError, ScorediffError
from scorediff.playground import MASK_GLYPH, Session

TEMPLATE = "To be, or [MASK:9] not to be"


def test_the_session_streams_states_until_every_mask_is_filled(trained_run):
    session = Session(scorediff.load(trained_run))
    tokens, given = session.request(TEMPLATE, "", "", 0)
    frames = list(session.stream(tokens, given, session.options("analytic", 8, 1.0, 1.0, "none", 0.0)))
    assert frames[0] == "To be, or " + MASK_GLYPH * 9 + " not to be"  # the first call sees every mask
    assert len(frames) >= 3 and MASK_GLYPH not in frames[-1]
    masks = [frame.count(MASK_GLYPH) for frame in frames]
    assert masks == sorted(masks, reverse=True)  # the absorbing chain only unmasks
    assert re.fullmatch(r"To be, or .{9} not to be", frames[-1], re.S)
    ordered = list(session.stream(tokens, given, session.options("confidence", 8, 1.0, 1.0, "none", 0.0)))
    assert [f.count(MASK_GLYPH) for f in ordered[:-1]] == list(range(9, 0, -1))  # one position per call
    assert "bits per token <=" in session.score("To be, or not to be, that is the question")


def test_the_session_refuses_bad_requests_with_a_message(trained_run, trained_ar_run):
    session = Session(scorediff.load(trained_run))
    for template, message in [
        ("no marker", "no \\[MASK:n\\] marker"),
        ("[MASK:99]", "more tokens than the model's context of 32"),
    ]:
        with pytest.raises(ScorediffError, match=message):
            session.request(template, "", "", 0)
    ar = Session(scorediff.load(trained_ar_run))
    with pytest.raises(ScorediffError, match="left to right"):
        ar.request(TEMPLATE, "", "", 0)
    tokens, given = ar.request("", "To be", "", 6)
    frames = list(ar.stream(tokens, given, ar.options("(autoregressive)", 1, 1.0, 1.0, "none", 0.0)))
    assert frames[-1].startswith("To be") and len(frames[-1]) == 11 and len(frames) >= 6  # one token per call


@pytest.fixture(scope="module")
def diffusion_session(trained_run) -> Session:
    return Session(scorediff.load(trained_run))


SEED_EXPECTED = "seed: expected a whole number from 0 to 2**63 - 1 (a seed must fit in 64 bits)"
OPTIONS = {"sampler": "analytic", "steps": 8, "temperature": 1.0, "top_p": 1.0, "label": "none", "guidance": 0.0}


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("length", None, "; the box is empty (or not a number)"),
        ("length", 2.5, "from 1 to 32 (the model's context); got 2.5"),
        (
            "template",
            "[MASK:" + "9" * 5000 + "]",
            "with n of 5000 digits asks for more tokens than the model's context of 32",
        ),
        ("template", "a [MASK:0033] b", "[MASK:0033] asks for more tokens than the model's context of 32"),
        ("seed", None, SEED_EXPECTED + "; the box is empty (or not a number)"),
        ("seed", 10**23, SEED_EXPECTED + "; got 100000000000000000000000"),
        ("seed", 1e23, SEED_EXPECTED + "; got 1e+23"),
        ("seed", 2**63, SEED_EXPECTED + "; got 9223372036854775808"),
        ("seed", -1, SEED_EXPECTED + "; got -1"),
        pytest.param("seed", 10**5000, SEED_EXPECTED + "; got a 16610-bit number", id="seed-5000-digits"),
        ("steps", None, "steps: expected a whole number from 1 to 512; the box is empty (or not a number)"),
        ("steps", 0, "steps: expected a whole number from 1 to 512; got 0"),
        ("temperature", 0.0, "temperature: expected a number from 0.05 to 2.0; got 0.0"),
        ("temperature", math.nan, "temperature: expected a number from 0.05 to 2.0; got nan"),
        ("top_p", 1.5, "top-p: expected a number from 0.05 to 1.0; got 1.5"),
        ("top_p", None, "top-p: expected a number from 0.05 to 1.0; the box is empty (or not a number)"),
        ("sampler", "bogus", "; got 'bogus'"),
    ],
)
def test_the_session_names_the_field_of_every_bad_value(diffusion_session, field, value, message):
    """Each message names the field, ends with what came (``message``) and is one line."""
    session = diffusion_session
    with pytest.raises(ScorediffError) as refused:
        if field in ("template", "length"):  # a cleared length box counts only when no template is given
            session.request(*((value, "", "", 5) if field == "template" else ("", "To be", "", value)))
        elif field == "seed":
            next(session.stream(*session.request(TEMPLATE, "", "", None), session.options(**OPTIONS), value))
        else:
            session.options(**{**OPTIONS, field: value})
    said = str(refused.value)
    assert said.startswith(field.replace("_", "-") + ": expected") or field == "template", said
    assert said.endswith(message) and "\n" not in said, said
    assert session.request(TEMPLATE, "", "", None)[0].shape == (1, 29)  # the length box is unused with a template


def read_all(stream, seconds: float = 60) -> dict:
    """The frames of ``stream`` and the error it raised, read in a thread so that a stream that never ends fails
    the test instead of hanging it."""
    out: dict = {"frames": []}

    def read():
        try:
            out["frames"].extend(stream)
        except Exception as error:
            out["error"] = error

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(seconds)
    assert not reader.is_alive(), "the stream never ended"
    return out


def test_any_sampler_failure_ends_the_stream_with_one_line(trained_run, caplog):
    pytest.importorskip("gradio")
    from scorediff.playground import page_error

    session = Session(scorediff.load(trained_run))
    tokens, given = session.request(TEMPLATE, "", "", None)
    broken = read_all(session.stream(tokens, given, {"steps": None}), seconds=30)  # refused inside the worker
    assert isinstance(broken.get("error"), InputError) and broken["frames"] == []

    def fail(module, args):
        raise RuntimeError("injected failure\nsecond line")

    hook = session.loaded.model.vocab_embed.register_forward_pre_hook(fail)
    try:
        failed = read_all(session.stream(tokens, given, session.options(**OPTIONS)))
    finally:
        hook.remove()
    caplog.set_level(logging.WARNING, "scorediff.playground")
    shown = page_error("run", failed["error"])
    assert shown.message == "unexpected error (a bug, not your input): RuntimeError: injected failure"
    assert not shown.print_exception  # else Gradio prints the traceback
    refused = page_error("run", ScorediffError("[MASK:n] needs n > 0; got [MASK:0]"))
    assert refused.message == "[MASK:n] needs n &gt; 0; got [MASK:0]"  # Gradio shows it as HTML
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records] == [
        ("ERROR", "playground: the run failed: " + shown.message, None),
        ("WARNING", "playground: refused a run: [MASK:n] needs n > 0; got [MASK:0]", None),
    ]
    assert len(read_all(session.stream(tokens, given, session.options(**OPTIONS)))["frames"]) >= 2  # still works


def test_overlapping_requests_each_see_only_their_own_calls(trained_run):
    session = Session(scorediff.load(trained_run))
    first_prefix = session.loaded.tokenizer.encode("To be, or ")
    release, calls = threading.Event(), []

    def hold_the_first(module, args):  # the first request waits at its second call until the others are done
        if args[0][0, : len(first_prefix)].tolist() == first_prefix:
            calls.append(1)
            if len(calls) == 2:
                assert release.wait(30)

    hook = session.loaded.model.vocab_embed.register_forward_pre_hook(hold_the_first)
    try:
        first = session.stream(*session.request(TEMPLATE, "", "", None), session.options(**OPTIONS))
        frames = [next(first)]
        other = list(session.stream(*session.request("", "", "so on and so forth", 6), session.options(**OPTIONS)))
        scored = session.score("zebra quagga zebra quagga")
        release.set()
        frames += list(first)
    finally:
        release.set()
        hook.remove()
    assert len(calls) == 9 and len(frames) == 10  # the first request's 9 calls and its result
    assert all(re.fullmatch(r"To be, or .{9} not to be", frame, re.S) for frame in frames), frames
    assert len(other) == 10 and all(re.fullmatch(r".{6}so on and so forth", f, re.S) for f in other), other
    assert "bits per token <=" in scored


def test_closing_a_stream_stops_its_sampler(trained_run):
    session = Session(scorediff.load(trained_run))
    calls = []

    def slow(module, args):
        calls.append(1)
        time.sleep(0.2)

    hook = session.loaded.model.vocab_embed.register_forward_pre_hook(slow)
    try:
        stream = session.stream(*session.request(TEMPLATE, "", "", None), replace(session.options(**OPTIONS), steps=64))
        next(stream)
        stream.close()  # what Gradio does when the page goes away; it returns once the sampler has stopped
    finally:
        hook.remove()
    assert len(calls) <= 3  # of 65: the sampler stops at its next call
