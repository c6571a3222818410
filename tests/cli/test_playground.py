"""The playground: its session streams the sampler's states and keeps the given text; the Gradio page, driven
by headless Chromium, fills a template in a real browser."""

import os
import re
import shutil
import socket
import time

import pytest

import scorediff
from scorediff.errors import ScorediffError
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
    for template, message in [("no marker", "no \\[MASK:n\\] marker"), ("[MASK:99]", "the model's context is 32")]:
        with pytest.raises(ScorediffError, match=message):
            session.request(template, "", "", 0)
    ar = Session(scorediff.load(trained_ar_run))
    with pytest.raises(ScorediffError, match="left to right"):
        ar.request(TEMPLATE, "", "", 0)
    tokens, given = ar.request("", "To be", "", 6)
    frames = list(ar.stream(tokens, given, ar.options("(autoregressive)", 1, 1.0, 1.0, "none", 0.0)))
    assert frames[-1].startswith("To be") and len(frames[-1]) == 11 and len(frames) >= 6  # one token per call


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_page_fills_a_template_in_a_real_browser(trained_run, tmp_path):
    pytest.importorskip("gradio")
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        assert not os.environ.get("SCOREDIFF_REQUIRE_BROWSER"), "CI asks for the browser test; there is no Chromium"
        pytest.skip("no Chromium here (.ci/run installs the Debian package)")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from scorediff.playground import build_app

    app = build_app(scorediff.load(trained_run))
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            page.locator("#template textarea").fill(TEMPLATE)
            page.locator("#run").click()
            output = page.locator("#output textarea")
            deadline, text = time.monotonic() + 60, ""
            while time.monotonic() < deadline:
                text = output.input_value()
                if text and MASK_GLYPH not in text:
                    break
                time.sleep(0.2)
            assert re.fullmatch(r"To be, or .{9} not to be", text, re.S), text
            page.locator("#template textarea").fill("nothing to fill")
            page.locator("#run").click()
            page.get_by_text("the template has no [MASK:n] marker").first.wait_for(timeout=20_000)  # on the page
            browser.close()
    finally:
        app.close()
