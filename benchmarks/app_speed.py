"""Benchmark: the web app as a user meets it: time to first image and images/s, clicked in a real browser.

Starts ``diffcxr app`` in this process on a free port, drives the page in headless Chromium (Playwright, Debian's
``/usr/bin/chromium``): picks an example report, sets the image count, clicks Generate and waits for the gallery.
Time to first image = click → the image shown, for 1 image; images/s = N images ÷ (click → all N shown). The
same generation called directly on the pipeline is timed too, so the page's own overhead is visible. Writes a
screenshot of the finished page (the one docs/app.md shows) when ``--screenshot`` is given.

    nice .venv/bin/python benchmarks/app_speed.py --model runs/cpu-mini/pipeline --screenshot docs/images/app.png
"""

from __future__ import annotations

import argparse
import os
import socket
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="saved DiffCXRPipeline folder")
    ap.add_argument("--n", type=int, default=4, help="images for the images/s run (default 4)")
    ap.add_argument("--steps", type=int, default=50, help="solver steps (default 50, the app's default)")
    ap.add_argument("--example", type=int, default=1, help="which example report to click (default 1: effusion)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--screenshot", help="write a PNG of the finished page here")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import torch
    from playwright.sync_api import sync_playwright

    from diffcxr.app import EXAMPLE_REPORTS, AppGenerator, launch

    if args.threads:
        torch.set_num_threads(args.threads)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(args.model, port=port, block=False)
    url = f"http://127.0.0.1:{port}/"

    def run_in_page(page, n: int, seed: int) -> float:
        """Seconds from the click to all ``n`` images of this run shown (the status line names its seeds)."""
        for elem_id, value in (("n-images", n), ("steps", args.steps)):
            box = page.locator(f"#{elem_id} input[type=number]")
            box.fill(str(value))
            box.press("Enter")
        page.locator("#seed input").fill(str(seed))
        t0 = time.perf_counter()
        page.locator("#generate").click()
        page.locator("#status").get_by_text(f"seeds {seed}–{seed + n - 1}").wait_for(timeout=600_000)
        page.locator("#gallery img").nth(n - 1).wait_for(timeout=600_000)
        return time.perf_counter() - t0

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1240})  # the screenshot: report to gallery
        page.goto(url, wait_until="domcontentloaded")
        page.locator("#report textarea").fill(EXAMPLE_REPORTS[args.example])
        run_in_page(page, 1, seed=100)  # warm-up: the first call pays for lazy imports and allocator growth
        first = run_in_page(page, 1, seed=200)
        total = run_in_page(page, args.n, seed=300)
        if args.screenshot:
            page.screenshot(path=args.screenshot)
        browser.close()

    generator = AppGenerator(args.model)
    t0 = time.perf_counter()
    generator.generate(EXAMPLE_REPORTS[args.example], n=args.n, steps=args.steps)
    direct = time.perf_counter() - t0
    print(f"model {args.model}, {args.steps} steps, guidance 2, fp32, {torch.get_num_threads()} threads")
    print(f"time to first image (1 image, click -> shown): {first:.2f} s")
    print(f"{args.n} images in the page: {total:.2f} s = {args.n / total:.2f} images/s "
          f"(the same call without the page: {args.n / direct:.2f} images/s)")


if __name__ == "__main__":
    main()
