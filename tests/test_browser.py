"""End to end in a real browser: the dashboard started as a user starts it (`streamlit run streamlit_app.py`),
driven through Debian's chromium by Playwright. Open the app, pick a unit, render it, see the picture really drawn,
stop a run, and compare priors side by side."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: install it with scripts/install_browser.sh")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, fc6_file):
    base = tmp_path_factory.mktemp("browser")
    ckpt = base / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    shutil.copy(fc6_file, ckpt / "upconvGAN_fc6.pt")  # fc6 "present" through the real weights cache
    data = base / "data"
    env = dict(os.environ, TORCH_HOME=str(base / "torch"), DGNAM_DATA_DIR=str(data), DGNAM_UI_STEPS="3",
               DGNAM_DEVICE="cpu", HF_HUB_OFFLINE="1")
    env.pop("DGNAM_NO_WARMUP", None)  # a server warms its runs up, as a user's does
    env.update(getattr(request.module, "DASHBOARD_ENV", {}))  # what a test module needs besides
    with run_dashboard(base, env) as url:
        yield url, data


@contextlib.contextmanager
def run_dashboard(base: Path, env: dict):
    """`streamlit run streamlit_app.py` as a user starts it, on a free port of 127.0.0.1; yields its address once
    it answers, and stops it afterwards. Its output goes to base/server.log."""
    port = _free_port()
    log = open(base / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            assert proc.poll() is None, (base / "server.log").read_text()
            assert time.time() < deadline, "the dashboard did not start within 60 s"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run",
                # several tabs at once: keep the ones in the background as lively as the front one
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows"]


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000, timeout_s: float = 90):
    """A chromium tab of this size, its waits and expectations at `timeout_s` (runs share two busy CPU cores)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=timeout_s * 1000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        pg = browser.new_page(viewport={"width": width, "height": height})
        pg.set_default_timeout(timeout_s * 1000)
        yield pg
        browser.close()


@pytest.fixture(scope="module")
def page(server):
    with browser_page() as pg:
        yield pg


def idle(page):
    page.locator(IDLE).wait_for()


IMAGES = '[data-testid="stMain"] [data-testid="stImage"] img'


def rendered_widths(page, at_least: int = 1) -> list[int]:
    """The decoded widths of the pictures in the page, once `at_least` of them have arrived and decoded."""
    try:
        page.wait_for_function(f"""n => [...document.querySelectorAll('{IMAGES}')]
                                   .filter(e => e.complete && e.naturalWidth > 0).length >= n""",
                               arg=at_least, timeout=30_000)
    except Exception:
        pass  # the assertion on the widths below says what is missing
    return page.locator(IMAGES).evaluate_all("els => els.map(e => e.complete ? e.naturalWidth : 0)")


def test_pick_a_unit_render_it_and_see_the_picture(server, page):
    from playwright.sync_api import expect

    url, data = server
    page.goto(url)
    idle(page)
    expect(page.get_by_role("heading", name="Browse neurons")).to_be_visible()
    page.get_by_role("link", name="Run").click()
    idle(page)
    # pick a unit: the class box is searchable by name
    box = page.get_by_role("textbox", name="Classes (name or number)")
    box.fill("goldfish")
    box.press("Enter")
    expect(page).to_have_url(re.compile(r"unit=1(&|$)"))  # the app has taken the pick and written the address
    idle(page)
    page.get_by_role("button", name="Render").click()
    expect(page.get_by_text("Done", exact=True)).to_be_visible()
    idle(page)
    expect(page.get_by_text("goldfish (1) · fc6 prior · seed 0").first).to_be_visible()
    widths = rendered_widths(page)
    assert widths and widths[0] > 0, widths  # the picture really arrived and decoded in the browser
    rows = sqlite3.connect(data / "results.sqlite").execute("SELECT unit, prior FROM results").fetchall()
    assert rows == [(1, "fc6")]


def test_a_unit_link_opens_its_card(server, page):
    from playwright.sync_api import expect

    url, _ = server
    page.goto(f"{url}/?model=efficientnet_lite0&layer=classifier&unit=1")  # a link from a slide
    idle(page)
    expect(page.get_by_role("heading", name="goldfish (1)")).to_be_visible()
    expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(1)
    assert rendered_widths(page)[0] > 0


def set_advanced(page, label: str, value: int) -> None:
    box = page.get_by_role("spinbutton", name=label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    idle(page)


def test_two_tabs_rendering_at_once_both_get_their_results(server, page):
    from playwright.sync_api import expect

    url, data = server
    tabs = [page.context.browser.new_page(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    for seed, tab in zip((7, 8), tabs):
        tab.goto(f"{url}/run")
        idle(tab)
        tab.get_by_text("Advanced settings").click()
        set_advanced(tab, "Seed", seed)
        set_advanced(tab, "Steps", 6)
    for tab in tabs:
        tab.get_by_role("button", name="Render").click()
    for seed, tab in zip((7, 8), tabs):
        expect(tab.get_by_text(f"bee (309) · fc6 prior · seed {seed}").first).to_be_visible()
        idle(tab)
        assert rendered_widths(tab)[0] > 0
        tab.close()
    rows = sqlite3.connect(data / "results.sqlite").execute(
        "SELECT seed FROM results WHERE unit = 309 AND seed IN (7, 8) ORDER BY seed").fetchall()
    assert rows == [(7,), (8,)]


def test_stop_a_run_saves_nothing(server, page):
    from playwright.sync_api import expect

    url, data = server
    page.goto(f"{url}/run")
    idle(page)
    page.get_by_text("Advanced settings").click()
    set_advanced(page, "Steps", 2000)
    page.get_by_role("button", name="Render").click()
    expect(page.get_by_text(re.compile(r"step \d+/2000")).first).to_be_visible()
    page.locator('[data-testid="stMain"]').get_by_role("button", name="Stop").click()
    expect(page.get_by_text("Stopped before anything finished: nothing of that run was saved.")).to_be_visible()
    idle(page)
    n = sqlite3.connect(data / "results.sqlite").execute(
        "SELECT COUNT(*) FROM results WHERE settings LIKE '%\"n_iters\": 2000%'").fetchone()[0]
    assert n == 0


def test_compare_priors_side_by_side(server, page):
    from playwright.sync_api import expect

    url, _ = server
    page.goto(url)
    idle(page)
    page.get_by_role("link", name="Compare priors").click()
    idle(page)
    expect(page.get_by_role("heading", name="Compare priors")).to_be_visible()
    page.get_by_role("button", name="Render all side by side").click()
    expect(page.get_by_text("Done", exact=True)).to_be_visible()
    idle(page)
    main = page.locator('[data-testid="stMain"]')
    expect(main.locator("strong", has_text="fc6 · original")).to_be_visible()
    expect(main.locator("strong", has_text="pixel · no prior")).to_be_visible()
    widths = rendered_widths(page, 2)
    assert len(widths) >= 2 and all(w > 0 for w in widths), widths
    expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(2)
