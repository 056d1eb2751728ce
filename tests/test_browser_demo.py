"""A live demo at 1280x720, in a real browser, on the atlas that ships (no original priors, so the offline default
prior lite0-b3 and the shipped pictures are what a fresh install shows): Browse opens on the grid, a stored class
can be watched forming on Run (also in presentation mode), Compare priors keeps its pictures in the window while
it renders, Setup cuts nothing at the sides, and a photo-start variant says so on its card and in the Gallery.

With DGNAM_SCREENSHOTS=docs the Browse, Run and Compare priors screenshots of the README are written there."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from test_browser import CHROMIUM, browser_page, ROOT, idle, server  # noqa: F401  (server: the module-scoped dashboard fixture)

WIDTH, HEIGHT = 1280, 720
CELLS = '[data-testid="stMain"] a.atlas-cell'
FORMING = re.compile(r"· preview · step \d+$")
DASHBOARD_ENV = {"DGNAM_ATLAS_DIR": str(ROOT / "assets" / "atlas"),
                 # no fc6 in this weights cache: the default prior is the atlas's, as on a fresh install
                 "TORCH_HOME": os.environ["TORCH_HOME"] + "-none",
                 "DGNAM_UI_STEPS": ""}  # the model's own 200 steps, as the atlas was made (runs are stopped early)
SHOTS = os.environ.get("DGNAM_SCREENSHOTS")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: install it with scripts/install_browser.sh")


@pytest.fixture(scope="module")
def page(server):  # noqa: F811
    with browser_page(WIDTH, HEIGHT) as pg:
        yield pg


def shot(page, name: str, wait_for: str | None = None) -> None:
    """A screenshot for the docs (only with DGNAM_SCREENSHOTS), once `wait_for` (a text pattern) shows."""
    if SHOTS:
        page.mouse.move(0, HEIGHT - 1)  # no tooltip in the picture
        if wait_for:
            page.get_by_text(re.compile(wait_for)).first.wait_for()
        page.wait_for_timeout(500)
        page.screenshot(path=str(Path(SHOTS) / name))


def in_window(locator) -> bool:
    box = locator.bounding_box()
    return bool(box) and box["y"] >= 0 and box["y"] + box["height"] <= HEIGHT and box["x"] + box["width"] <= WIDTH


def test_browse_opens_on_the_grid_and_a_click_keeps_the_search(server, page):  # noqa: F811
    from playwright.sync_api import expect

    url, _ = server
    page.goto(url)
    page.wait_for_function(f"""() => [...document.querySelectorAll('{CELLS} img')]
        .filter(e => e.complete && e.naturalWidth > 0 && e.getBoundingClientRect().bottom <= {HEIGHT}).length >= 7""")
    idle(page)
    shot(page, "browse.png")
    expect(page.get_by_role("button", name="Back to the grid")).to_have_count(0)  # no card: the grid first
    search = page.get_by_role("textbox", name=re.compile("^Find a class"))
    expect(search).to_have_count(1)  # one search box
    search.fill("bee")
    search.press("Enter")
    idle(page)
    first = page.locator(CELLS).first
    expect(first.locator("span")).to_have_text("bee (309)")  # the exact match first, before bee eater
    first.click()
    idle(page)
    expect(page.get_by_role("heading", name="bee (309)")).to_be_visible()
    expect(page.get_by_role("textbox", name=re.compile("^Find a class"))).to_have_value("bee")  # kept
    expect(page.locator(CELLS).first.locator("span")).to_have_text("bee (309)")
    # the atlas's picture is small and says so where it is downloaded; one click renders it at full size
    expect(page.get_by_role("button", name=re.compile(r"Download PNG \(128 px atlas picture\)"))).to_be_visible()
    expect(page.get_by_role("button", name="Full size, rendered live")).to_be_visible()
    # on a projector the card's picture is whole inside the window
    page.goto(f"{url}/?model=efficientnet_lite0&layer=classifier&unit=309&present=1")
    idle(page)
    card = page.locator('[data-testid="stMain"] [data-testid="stImage"] img').first
    expect(card).to_be_visible()
    assert in_window(card), card.bounding_box()
    page.goto(f"{url}/nonexistent")  # an address naming no page says so
    idle(page)
    expect(page.get_by_text("Page not found: /nonexistent.", exact=False)).to_be_visible()


def _watch_it_form(page, button: str):
    """On a stored class: the line saying why it was instant, then a live render whose preview forms inside the
    window next to the stored picture; the toolbar's own Stop is not offered; the page's Stop ends it."""
    from playwright.sync_api import expect

    expect(page.get_by_text("Shown from the shipped atlas, so it was instant; render live to watch it form."))\
        .to_be_visible()
    page.get_by_role("button", name=button).click()
    forming = page.get_by_text(FORMING).first
    expect(forming).to_be_visible()
    picture = page.locator('[data-testid="stMain"] [data-testid="stImage"]').first
    assert in_window(picture), picture.bounding_box()  # above the fold, beside the controls
    stop = page.locator('[data-testid="stMain"]').get_by_role("button", name="Stop")
    assert in_window(stop)
    if "present=1" not in page.url:  # (presentation mode hides the whole toolbar)
        expect(page.locator('[data-testid="stStatusWidget"]')).to_be_visible()  # the page runs: the toolbar says
    expect(page.locator('[data-testid="stStatusWidget"] button:visible')).to_have_count(0)  # so, without a Stop
    return stop


def test_render_on_a_stored_class_offers_a_live_render_with_previews(server, page):  # noqa: F811
    from playwright.sync_api import expect

    url, data = server
    page.goto(f"{url}/run?model=efficientnet_lite0&layer=classifier&unit=1")  # goldfish: in the atlas
    idle(page)
    stop = _watch_it_form(page, "Render live again")
    # one picture: the forming one in the stored one's place (issue 30: the stored one stayed beside it, captioned
    # "stored, until the new one is done", and stayed after the render)
    expect(page.get_by_text("stored, until the new one is done")).to_have_count(0)
    shot(page, "run.png", r"preview · step ([4-9]\d|1\d\d)$")  # far enough to see a picture forming
    stop.click()
    expect(page.get_by_text("Stopped before anything finished: nothing of that run was saved.")).to_be_visible()
    idle(page)
    atlas = page.get_by_text(re.compile(r"^goldfish \(1\) · lite0-b3 prior · seed 0 .*atlas picture, 128 px$"))
    expect(atlas.first).to_be_visible()  # the stored picture is still there, and says how big it is
    # presentation mode: no seed box, but a new seed is one button away
    page.goto(f"{url}/run?model=efficientnet_lite0&layer=classifier&unit=1&present=1")
    idle(page)
    stop = _watch_it_form(page, "Render live with a new seed")
    expect(page.get_by_text(re.compile(r"^goldfish \(1\) · preview · step"))).to_be_visible()
    stop.click()
    idle(page)
    assert not (data / "results.sqlite").exists() or not __import__("sqlite3").connect(
        data / "results.sqlite").execute("SELECT COUNT(*) FROM results").fetchone()[0]  # stopped: nothing kept


def test_compare_priors_keeps_its_pictures_in_the_window_while_rendering(server, page):  # noqa: F811
    from playwright.sync_api import expect

    url, _ = server
    page.goto(f"{url}/priors")
    idle(page)
    main = page.locator('[data-testid="stMain"]')
    head = main.locator("strong", has_text="conv3 · demo")
    before = head.bounding_box()["y"]
    expect(main.get_by_role("link", name=re.compile("Get the original priors"))).to_be_visible()
    page.get_by_role("button", name="Render all side by side").click()
    forming = main.get_by_text(re.compile(r"^preview · step \d+$")).first
    expect(forming).to_be_visible()  # a column shows its own picture forming
    shot(page, "priors.png", r"^preview · step ([4-9]\d|1\d\d)$")
    assert abs(head.bounding_box()["y"] - before) < 40  # the progress did not push the columns down
    pictures = main.locator('[data-testid="stImage"]')
    assert pictures.count() >= 2 and all(in_window(pictures.nth(i)) for i in range(pictures.count()))
    main.get_by_role("button", name="Stop").click()
    idle(page)
    page.goto(f"{url}/priors?present=1")  # on a projector: the way to the originals, and no terminal command
    idle(page)
    expect(main.get_by_role("link", name=re.compile("Get the original priors"))).to_be_visible()
    expect(main.get_by_text(re.compile(r"dgnam_engine fetch"))).to_have_count(0)


def test_setup_has_no_horizontal_cut_off(server, page):  # noqa: F811
    url, _ = server
    page.goto(f"{url}/setup")
    idle(page)
    page.wait_for_selector('[data-testid="stMain"] [data-testid="stTable"]')
    widest = page.evaluate("""() => Math.max(document.documentElement.scrollWidth,
        ...[...document.querySelectorAll('[data-testid="stMain"] *')].map(e => e.scrollWidth))""")
    assert widest <= WIDTH, widest


def test_a_photo_start_is_labelled_as_one_on_its_card_and_in_the_gallery(server, page):  # noqa: F811
    from playwright.sync_api import expect

    url, _ = server
    page.goto(f"{url}/run?model=efficientnet_lite0&layer=classifier&unit=1")
    idle(page)
    page.get_by_text("Advanced settings").click()
    steps = page.get_by_role("spinbutton", name="Steps", exact=True)
    steps.fill("5")
    steps.press("Enter")
    idle(page)
    page.get_by_text("Start from a photo · hidden unit position · combine units").click()
    page.get_by_text("a photo", exact=True).click()  # the sample photo: a cup of coffee
    idle(page)
    page.get_by_role("button", name="Render", exact=True).click()
    expect(page.get_by_text(re.compile(r"^goldfish \(1\) · from a photo \(coffee\.png\) · lite0-b3")).first)\
        .to_be_visible()  # the picture's caption
    idle(page)
    page.get_by_text("Details of each picture").click()
    expect(page.get_by_role("heading", name="goldfish (1) · from a photo (coffee.png)")).to_be_visible()
    expect(page.get_by_text("A variant, not the unit's own picture")).to_be_visible()
    page.goto(f"{url}/gallery")
    idle(page)
    expect(page.get_by_text(re.compile(r"^goldfish \(1\) · from a photo \(coffee\.png\) · lite0-b3 prior")))\
        .to_be_visible()
    expect(page.get_by_text("1 picture", exact=True)).to_be_visible()
    zip_first = page.locator('[data-testid="stDownloadButton"]').first
    expect(zip_first).to_contain_text("Download ZIP")  # above the pictures, not after them
