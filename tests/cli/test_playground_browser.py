"""The playground's Gradio page, driven by headless Chromium: a template filled, a failing sampler, overlapping
requests and bad fields, each failure one message on the page and one line in the server log."""

import logging
import os
import re
import shutil
import socket
import time

import pytest
from test_playground import OPTIONS, TEMPLATE

import scorediff
from scorediff.playground import MASK_GLYPH


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
