"""Browsing is instant on a fresh install: in a real browser, Browse shows the shipped atlas of the offline
default's class layer (at least 100 pictures, nothing rendered), a click opens the unit's card, and the card shows
the real photos that drive the unit beside its synthesis."""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_browser import CHROMIUM, ROOT, idle, page, server  # noqa: F401  (module-scoped fixtures)

SKIMAGE_DATA = Path(__import__("skimage").__file__).parent / "data"
CELLS = '[data-testid="stMain"] a.atlas-cell img'
DASHBOARD_ENV = {"DGNAM_ATLAS_DIR": str(ROOT / "assets" / "atlas")}  # the atlas that ships, as on a fresh install

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: install it with scripts/install_browser.sh")


def test_browse_shows_the_atlas_at_once_and_a_click_opens_the_card(server, page):  # noqa: F811
    from playwright.sync_api import expect

    url, data = server
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(f"""() => [...document.querySelectorAll('{CELLS}')]
                               .filter(e => e.complete && e.naturalWidth > 0).length >= 100""", timeout=60_000)
    print(f"first screen with 100 decoded pictures: {time.perf_counter() - t0:.2f} s")
    idle(page)
    assert page.locator(CELLS).count() >= 100
    assert not (data / "results.sqlite").exists() or sqlite3.connect(data / "results.sqlite").execute(
        "SELECT COUNT(*) FROM results").fetchone()[0] == 0  # nothing was rendered for it
    cell = page.locator('[data-testid="stMain"] a.atlas-cell').nth(3)
    name = cell.locator("span").inner_text()
    cell.click()
    idle(page)
    expect(page.get_by_role("heading", name=name)).to_be_visible()


def test_the_card_shows_real_photos_beside_the_synthesis(server, page):  # noqa: F811
    from playwright.sync_api import expect

    url, data = server
    photos = data.parent / "photos"
    photos.mkdir(exist_ok=True)
    for name in ("coffee.png", "chelsea.png", "astronaut.png"):
        shutil.copy(SKIMAGE_DATA / name, photos / name)
    env = dict(os.environ, PYTHONPATH=str(ROOT), DGNAM_DATA_DIR=str(data))
    p = subprocess.run([sys.executable, "-m", "dgnam_engine", "index", "--model", "efficientnet_lite0", "--layers",
                        "classifier", "--images", str(photos), "--quiet"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    page.goto(f"{url}/?model=efficientnet_lite0&layer=classifier&unit=1")  # goldfish: in the atlas
    idle(page)
    expect(page.get_by_text("Real photos that drive this unit most")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^coffee · \d"))).to_be_visible()  # the best real photo, with activation
    expect(page.get_by_text(re.compile("The synthesis drives this unit to"))).to_be_visible()
    expect(page.get_by_text(re.compile("Looked through 3 photos"))).to_be_visible()
    expect(page.get_by_text(re.compile("^Only 3 photos were looked through"))).to_be_visible()
    # no photo is a goldfish to the network: no ratio compares the synthesis with a photo of something else
    expect(page.get_by_text(re.compile("None of the photos that drive it most is a goldfish"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"drives this unit to .*\(\d+\.\dx\)"))).to_have_count(0)
    # the paper's checks of the picture: an independent network's opinion and the nearest training photos
    expect(page.get_by_text(re.compile("^Another network sees:"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Novelty \d+\.\d\d"))).to_be_visible()
    # espresso: the coffee photo is one to the network, so the ratio is there
    page.goto(f"{url}/?model=efficientnet_lite0&layer=classifier&unit=967")
    idle(page)
    expect(page.get_by_text(re.compile(r"drives this unit to .*\(\d+\.\dx\)"))).to_be_visible()
