"""Take the playground screenshot in docs/images/ with headless Chromium (Playwright on the Debian package).

python docs/make_screenshot.py --checkpoint runs/RUN [--template "..."] [--out docs/images/playground.png]
"""

import argparse
import shutil
import socket
import time

from playwright.sync_api import sync_playwright

import scorediff
from scorediff.playground import MASK_GLYPH, build_app

parser = argparse.ArgumentParser()
parser.add_argument("--checkpoint", required=True)
parser.add_argument("--template", default="ROMEO. [MASK:40] love, [MASK:30] night.")
parser.add_argument("--out", default="docs/images/playground.png")
args = parser.parse_args()

with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
app = build_app(scorediff.load(args.checkpoint))
app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
with sync_playwright() as driver:
    browser = driver.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1200, "height": 820})
    page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
    page.locator("#template textarea").fill(args.template)
    page.locator("#run").click()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = page.locator("#output textarea").input_value()
        if text and MASK_GLYPH not in text:
            break
        time.sleep(0.2)
    page.screenshot(path=args.out, full_page=True)
    browser.close()
app.close()
print(f"wrote {args.out}")
