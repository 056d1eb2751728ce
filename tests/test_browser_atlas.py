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


def first_row_on_screen(tab) -> list[dict]:
    """The grid's decoded pictures lying wholly inside the window, once the first has decoded."""
    tab.wait_for_function(f"""() => [...document.querySelectorAll('{CELLS}')]
                              .some(e => e.complete && e.naturalWidth > 0)""", polling="raf", timeout=60_000)
    return tab.locator(CELLS).evaluate_all("""els => els.map(e => [e, e.getBoundingClientRect()])
        .filter(([e, r]) => e.complete && e.naturalWidth > 0 && r.top >= 0 && r.bottom <= innerHeight
                            && r.left >= 0 && r.right <= innerWidth)
        .map(([e, r]) => ({name: e.alt, top: r.top}))""")


def test_a_fresh_server_shows_the_grid_on_the_first_screen_before_the_network_loads(server, page):  # noqa: F811
    """The first page a fresh server shows (this module's first test): at 1280x720 the grid's first row is decoded
    inside the window while the pickers above it still wait for the network; then the pickers come without moving
    the grid. In presentation mode the first rows are on the first screen too."""
    from playwright.sync_api import expect

    url, _ = server
    tab = page.context.browser.new_page(viewport={"width": 1280, "height": 720})
    tab.goto(url)
    seen = first_row_on_screen(tab)
    layer = tab.get_by_role("combobox", name="Layer")
    assert layer.input_value() == "classifier (loading the network…)"  # the grid came first: the network loads
    row = [c for c in seen if c["top"] == seen[0]["top"]]
    assert len(row) >= 5 and row[0]["name"] == "tench (0)", seen
    expect(layer).to_have_value("class scores · classifier (1000)")  # the real pickers, later
    idle(tab)
    assert first_row_on_screen(tab)[:len(row)] == row  # in the same place
    tab.close()
    tab = page.context.browser.new_page(viewport={"width": 1280, "height": 720})
    tab.goto(f"{url}/?present=1")
    seen = first_row_on_screen(tab)
    assert len(seen) >= 2 * len(row), seen  # no sidebar, no intro: two rows at least
    tab.close()


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
