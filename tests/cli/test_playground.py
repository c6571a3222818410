"""The playground: its session streams the sampler's states and keeps the given text, checks every field, ends
every stream however the sampler fails and shows a request only its own network calls; the Gradio page, driven by
headless Chromium, does the same in a real browser with one line in the server log per failure."""

import logging
import math
import os
import re
import shutil
import socket
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


RECORD_FRAMES = """() => {
    window.seenFrames = [];
    setInterval(() => {
        const text = document.querySelector('#output textarea').value;
        if (text !== window.seenFrames.at(-1)) window.seenFrames.push(text);
    }, 5);
}"""
RUN_PATTERN = r"To be, or .{9} not to be"


def wait_for_text(field, done, seconds: float = 60) -> str:
    """The value of ``field`` once ``done(value)`` holds (or when ``seconds`` have passed)."""
    deadline, text = time.monotonic() + seconds, ""
    while time.monotonic() < deadline:
        text = field.input_value()
        if done(text):
            break
        time.sleep(0.05)
    return text


def test_the_page_in_a_real_browser(trained_run, caplog, capfd):
    """One server and page: a template filled, a failing sampler, a Run and a Score at once, bad fields from the
    page and from the API; each failure is one message on the page and one line in the server log."""
    pytest.importorskip("gradio")
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        assert not os.environ.get("SCOREDIFF_REQUIRE_BROWSER"), "CI asks for the browser test; there is no Chromium"
        pytest.skip("no Chromium here (.ci/run installs the Debian package)")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from gradio_client import Client

    from scorediff.playground import build_app

    loaded = scorediff.load(trained_run)
    control = {"delay": 0.0, "fail": False}

    def tamper(module, args):  # registered before any stream's hook, so it runs first
        if control["fail"]:
            raise RuntimeError("injected failure")
        time.sleep(control["delay"])

    loaded.model.vocab_embed.register_forward_pre_hook(tamper)
    app = build_app(loaded)
    port = free_port()
    caplog.set_level(logging.WARNING, "scorediff.playground")
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            output = page.locator("#output textarea")
            page.locator("#template textarea").fill(TEMPLATE)
            page.locator("#run").click()
            text = wait_for_text(output, lambda text: text and MASK_GLYPH not in text)
            assert re.fullmatch(RUN_PATTERN, text, re.S), text
            page.locator("#output .generating").wait_for(state="detached")

            control["fail"] = True
            page.locator("#run").click()
            page.get_by_text("unexpected error (a bug, not your input): RuntimeError: injected failure").wait_for()
            control["fail"] = False

            scorer = browser.new_page()  # a second visitor scores text while the first one's Run streams
            scorer.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            scorer.get_by_role("tab", name="Score").click()
            scorer.locator("#score-text textarea").fill("zebra quagga zebra quagga zebra")
            page.evaluate(RECORD_FRAMES)
            control["delay"] = 0.1  # the Run's 33 network calls take 3 s
            page.locator("#run").click()
            wait_for_text(output, lambda text: MASK_GLYPH in text)
            scorer.locator("#score").click()
            scored = wait_for_text(scorer.locator("#score-result textarea"), bool)
            running = MASK_GLYPH in output.input_value()
            text = wait_for_text(output, lambda text: MASK_GLYPH not in text)
            page.locator("#output .generating").wait_for(state="detached")  # Gradio ignores clicks until then
            control["delay"] = 0.0
            frames = page.evaluate("window.seenFrames")
            assert running and "bits per token <=" in scored, (running, scored)  # the two overlapped
            assert len(frames) >= 5 and all(re.fullmatch(RUN_PATTERN, f, re.S) for f in frames[1:]), frames

            for fields, message in [
                ({"#template textarea": "nothing to fill"}, "the template has no [MASK:n] marker"),
                ({"#template textarea": "[MASK:" + "9" * 5000 + "]"}, "of 5000 digits asks for more tokens"),
                ({"#template textarea": TEMPLATE, "#seed input": ""}, "2**63 - 1 (a seed must fit in 64 bits); the"),
                ({"#seed input": "100000000000000000000000"}, "(a seed must fit in 64 bits); got 1e+23"),
                ({"#seed input": "0", "#template textarea": "", "#prefix textarea": "To be", "#length input": ""},
                 "length: expected a whole number from 1 to 32 (the model's context); the box is empty"),
            ]:  # fmt: skip
                for selector, value in fields.items():
                    page.locator(selector).fill(value)
                page.locator("#run").click()
                page.get_by_text(message).first.wait_for(timeout=20_000)
            assert output.input_value() == text  # the last run's result stays
            browser.close()

        client = Client(f"http://127.0.0.1:{port}/", verbose=False)  # what the page cannot send, the API can
        values = {"template": TEMPLATE, "prefix": "", "suffix": "", "length": None, **OPTIONS, "seed": 0}
        for field, value, message in [
            ("steps", None, "steps: expected a whole number from 1 to 512; the box is empty (or not a number)"),
            ("steps", 0, "steps: expected a whole number from 1 to 512; got 0"),
            ("temperature", 0, "temperature: expected a number from 0.05 to 2.0; got 0"),
            ("top_p", 1.5, "top-p: expected a number from 0.05 to 1.0; got 1.5"),
        ]:
            with pytest.raises(Exception, match=re.escape(message)):
                client.predict(*{**values, field: value}.values(), api_name="/run")
    finally:
        app.close()
    lines = [(line.getMessage(), line.exc_info) for line in caplog.records if line.name == "scorediff.playground"]
    assert len(lines) == 10 and all("\n" not in line and info is None for line, info in lines), lines
    assert "Traceback" not in capfd.readouterr().err
