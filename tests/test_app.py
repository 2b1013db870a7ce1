"""``diffcxr app``: the page logic without a browser, the served app through ``gradio_client``, and the page in
headless Chromium (Debian's ``chromium`` package, driven by Playwright; no browser download)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from diffcxr.cli.main import main
from diffcxr.errors import DiffCXRError

MODEL = Path(__file__).resolve().parent / "fixtures" / "tiny_pipeline"
CHROMIUM = os.environ.get("DIFFCXR_CHROMIUM", "/usr/bin/chromium")
REPORT = "Large left pleural effusion. No pneumothorax."
AUTO = ["auto"] * 14


def _overrides(**chosen: str) -> list[str]:
    from diffcxr.findings import CHEXPERT_FINDINGS

    return [chosen.get(f.replace(" ", "_"), "auto") for f in CHEXPERT_FINDINGS]


# -- page logic ---------------------------------------------------------------------------------------------------
def test_read_report_highlights_evidence_and_applies_overrides():
    from diffcxr.app import read_report

    spans, prompt, labels = read_report(REPORT)
    assert ("pleural effusion", "Pleural Effusion: present") in spans and ("pneumothorax", "Pneumothorax: absent") in spans
    assert "".join(piece for piece, _ in spans) == REPORT  # the whole text, cut at the evidence
    assert prompt == "There is pleural effusion." and labels["Pleural Effusion"] == 1.0
    _, prompt, labels = read_report(REPORT, {"Cardiomegaly": "present", "Pleural Effusion": "absent"})
    assert prompt == "There is cardiomegaly." and labels["Pleural Effusion"] == 0.0
    assert read_report("   ")[:2] == ([], "")
    with pytest.raises(DiffCXRError, match="override"):
        read_report(REPORT, {"Cardiomegaly": "maybe"})


def test_highlight_spans_skips_overlaps_and_keeps_all_text():
    from diffcxr.app import highlight_spans
    from diffcxr.knowledge import Evidence

    text = "left pleural effusion here"
    evidence = [Evidence("Pleural Effusion", 1.0, 5, 21, "pleural effusion"), Evidence("Other", -1.0, 13, 21, "effusion")]
    assert highlight_spans(text, evidence) == [("left ", None), ("pleural effusion", "Pleural Effusion: present"),
                                               (" here", None)]


def test_generator_writes_png_dicom_and_sidecar_per_image_with_its_seed(tmp_path):
    from diffcxr.app import AppGenerator

    generator = AppGenerator(MODEL, output_root=tmp_path)
    steps_seen = []
    result = generator.generate(REPORT, {"Cardiomegaly": "present"}, n=3, steps=2, seed=11,
                                on_step=lambda done, total: steps_seen.append((done, total)))
    assert [caption for _, caption in result.images] == ["seed 11", "seed 12", "seed 13"]
    assert sorted(Path(f).suffix for f in result.files) == [".dcm"] * 3 + [".json"] * 3 + [".png"] * 3
    assert steps_seen == [(1, 2), (2, 2)]
    sidecar = json.loads(Path(result.files[2]).read_text())
    assert sidecar["seed"] == 11 and sidecar["label_overrides"] == {"Cardiomegaly": 1.0}
    assert sidecar["knowledge_prompt"] == "There is cardiomegaly. There is pleural effusion."
    assert sidecar["files"] == ["report_00.png", "report_00.dcm"]
    for bad, message in [("", "empty"), ("x" * 100_001, "limit 100,000"), (None, "must be a string")]:
        with pytest.raises(DiffCXRError, match=message):
            generator.generate(bad, n=1, steps=1)
    with pytest.raises(DiffCXRError, match="1..8"):
        generator.generate(REPORT, n=9, steps=1)
    with pytest.raises(DiffCXRError, match="not a saved DiffCXRPipeline"):
        AppGenerator(tmp_path)


def test_cli_without_a_model_or_without_gradio_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no runs/demo here
    assert main(["app"]) == 1
    err = capsys.readouterr().err.strip()
    assert "run `diffcxr demo` first" in err and len(err.splitlines()) == 1
    assert main(["app", "--model", str(tmp_path)]) == 1  # not a pipeline: never announced as served
    out, err = capsys.readouterr()
    assert "not a saved DiffCXRPipeline" in err and "serving" not in out
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["app", "--model", str(MODEL)]) == 1
    assert "pip install 'diffcxr[app]'" in capsys.readouterr().err


# -- the served app -----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_app(tmp_path_factory):
    """``diffcxr app`` in a subprocess on a free port, as a user starts it."""
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(log.parent / "gradio")}
    with log.open("w") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "diffcxr", "app", "--model", str(MODEL), "--port", str(port)],
                                stdout=handle, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the app did not start: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_client_calls_the_generate_endpoint(served_app):
    from gradio_client import Client

    client = Client(served_app, verbose=False)
    gallery, files, spans, prompt, status = client.predict(
        REPORT, *_overrides(Cardiomegaly="present"), 3, 2, 2.0, 1.0, 7, "fp32", api_name="/generate")
    assert [item["caption"] for item in gallery] == ["seed 7", "seed 8", "seed 9"]
    assert all(Path(item["image"]).is_file() for item in gallery) and len(files) == 9
    assert {"token": "pleural effusion", "class_or_confidence": "Pleural Effusion: present"} in spans
    assert prompt == "There is cardiomegaly. There is pleural effusion." and "3 image(s)" in status
    # bad input is a message, not a crash: the next request still works
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="empty"):
        client.predict("  ", *AUTO, 1, 1, 2.0, 1.0, 0, "fp32", api_name="/generate")
    with pytest.raises(AppError, match="limit 100,000"):
        client.predict("x" * 100_001, *AUTO, 1, 1, 2.0, 1.0, 0, "fp32", api_name="/generate")
    assert len(client.predict(REPORT, *AUTO, 1, 1, 2.0, 1.0, 0, "bf16", api_name="/generate")[0]) == 1


def test_two_users_at_once_each_get_their_own_images(served_app):
    """Requests queue one at a time: two users submitting together both get their images, with their seeds."""
    from gradio_client import Client

    jobs = [Client(served_app, verbose=False).submit(REPORT, *AUTO, 2, 2, 2.0, 1.0, seed, "fp32", api_name="/generate")
            for seed in (100, 200)]
    results = [job.result(timeout=120) for job in jobs]
    assert [[item["caption"] for item in r[0]] for r in results] == [["seed 100", "seed 101"], ["seed 200", "seed 201"]]
    assert len({item["image"] for r in results for item in r[0]}) == 4  # four distinct files


@pytest.fixture
def browser():
    if not Path(CHROMIUM).is_file():
        if os.environ.get("DIFFCXR_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing (CI installs Debian's chromium package)")
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (CI does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


def test_page_in_a_real_browser(served_app, browser, tmp_path):
    """Type a report, override a finding, generate, and check the gallery, the highlighted findings, the
    knowledge prompt and the downloads; the screenshot is what docs/app.md shows."""
    from playwright.sync_api import expect  # optional: installed with the test extras

    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(served_app, wait_until="domcontentloaded")
    page.locator("#report textarea").fill(REPORT)
    # wait until the report is read: its highlighted findings grow the page above the overrides, so a click while
    # they arrive may miss the radio (once, on loaded cores, the check below did not take)
    expect(page.locator("#knowledge-prompt textarea")).to_have_value("There is pleural effusion.", timeout=60_000)
    page.get_by_text("Override findings").click()
    present = page.locator("#override-cardiomegaly").get_by_label("present")
    present.check()
    expect(present).to_be_checked()
    for elem_id, value in (("n-images", "3"), ("steps", "2")):
        box = page.locator(f"#{elem_id} input[type=number]")
        box.fill(value)
        box.press("Enter")
    page.locator("#generate").click()
    page.locator("#gallery img").nth(2).wait_for(timeout=60_000)
    assert page.locator("#gallery img").count() == 3
    findings = page.locator("#findings").inner_text().lower()  # the page shows categories in capitals
    assert "pleural effusion" in findings and "pleural effusion: present" in findings
    assert "pneumothorax: absent" in findings
    assert page.locator("#knowledge-prompt textarea").input_value() == "There is cardiomegaly. There is pleural effusion."
    downloads = page.locator("#downloads").inner_text().replace("\n", "")  # the page breaks name and suffix
    for name in ("report_00.png", "report_00.dcm", "report_00.json", "report_02.dcm"):
        assert name in downloads
    links = page.locator("#downloads a[href]").evaluate_all("links => links.map(a => a.href)")
    dicom = next(link for link in links if link.endswith(".dcm"))
    assert page.request.get(dicom).body()[128:132] == b"DICM"  # the download is a real DICOM file
    shot = tmp_path / "app.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("DIFFCXR_APP_SCREENSHOT"):
        shutil.copy(shot, os.environ["DIFFCXR_APP_SCREENSHOT"])
