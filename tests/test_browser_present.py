"""The dashboard on a projector: a real browser (Debian's chromium through Playwright) at 1280x720. Typed class
names pick one class, Compare priors shows each column as soon as it finished and Stop says what was kept, odd
settings block Render with a reason, and no page puts anything out of the window's width or fails."""
from __future__ import annotations

import re
import sqlite3

import pytest
from test_browser import CHROMIUM, browser_page, idle, server  # noqa: F401  (server: the module-scoped dashboard fixture)

WIDTH, HEIGHT = 1280, 720
PAGES = ["", "run", "priors", "models", "gallery", "setup", "?present=1", "run?present=1"]

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: install it with scripts/install_browser.sh")


@pytest.fixture(scope="module")
def page(server):  # noqa: F811
    with browser_page(WIDTH, HEIGHT) as pg:
        yield pg


def open_page(page, url: str) -> None:
    page.goto(url)
    idle(page)


def test_typed_class_and_enter_gives_exactly_that_class(server, page):  # noqa: F811
    from playwright.sync_api import expect

    url, _ = server
    open_page(page, f"{url}/run")
    box = page.get_by_role("textbox", name=re.compile("^Classes"))
    box.fill("espresso")
    box.press("Enter")
    expect(page).to_have_url(re.compile(r"unit=967(&|$)"))
    idle(page)
    expect(page.get_by_text("Selected: espresso (967)", exact=True)).to_be_visible()
    expect(page.get_by_text("espresso maker")).to_have_count(0)


def test_steps_zero_blocks_render_with_a_visible_reason(server, page):  # noqa: F811
    from playwright.sync_api import expect

    url, _ = server
    open_page(page, f"{url}/run")
    page.get_by_text("Advanced settings").click()
    steps = page.get_by_role("spinbutton", name="Steps", exact=True)
    steps.fill("0")
    steps.press("Enter")
    idle(page)
    expect(page.get_by_text(re.compile("Steps must be a whole number between 1 and 10000"))).to_be_visible()
    expect(page.get_by_role("button", name="Render")).to_be_disabled()


def test_compare_priors_shows_finished_columns_at_once_and_stop_says_what_was_kept(server, page):  # noqa: F811
    from playwright.sync_api import expect

    url, data = server
    open_page(page, f"{url}/priors")
    page.get_by_text("Advanced settings").click()
    steps = page.get_by_role("spinbutton", name="Steps", exact=True)
    steps.fill("60")  # a few seconds per prior on a CPU: long enough to see the columns fill one by one
    steps.press("Enter")
    idle(page)
    page.get_by_role("button", name="Render all side by side").click()
    main = page.locator('[data-testid="stMain"]')
    first = main.locator('[data-testid="stImageCaption"]', has_text=re.compile(r"^activation"))
    expect(first.first).to_be_visible()  # the first column's picture, with its activation
    stop = main.get_by_role("button", name="Stop")
    expect(stop).to_be_visible()  # ... while the other priors are still rendering
    assert first.count() < 5
    stop.click()
    notice = page.get_by_text(re.compile(r"^Stopped\. Kept what had finished: .+\. The unfinished part"))
    expect(notice).to_be_visible()
    idle(page)
    kept = re.search(r"finished: (.+)\. The", notice.inner_text()).group(1).split(", ")
    rows = sqlite3.connect(data / "results.sqlite").execute(
        "SELECT prior FROM results WHERE settings LIKE '%\"n_iters\": 60%'").fetchall()
    assert 1 <= len(rows) == len(kept) < 5, (rows, kept)  # what the notice names is what was stored
    expect(first).to_have_count(len(kept))  # and those pictures stay on the page


def test_every_page_fits_1280_wide_without_errors(server, page):  # noqa: F811
    from playwright.sync_api import expect

    url, _ = server
    for path in PAGES:
        open_page(page, f"{url}/{path}")
        expect(page.locator('[data-testid="stException"]')).to_have_count(0)
        assert not page.get_by_text("Something went wrong on this page").count(), path
        cut = page.evaluate("""w => [...document.querySelectorAll('[data-testid="stMain"] *')]
            .filter(e => { const r = e.getBoundingClientRect(), s = getComputedStyle(e);
                           return r.width > 0 && r.height > 0 && s.visibility !== 'hidden'
                                  && (r.right > w + 1 || r.left < -1); })
            .filter(e => !e.closest('[data-testid="stDataFrame"], [data-testid="stPlotlyChart"]'))
            .slice(0, 5).map(e => (e.dataset.testid || e.tagName) + ': ' + (e.innerText || '').slice(0, 40))""",
                            WIDTH)
        assert not cut, (path, cut)
        if "present=1" in path:  # presentation mode: no sidebar, no settings, the one button in the window
            expect(page.locator('[data-testid="stSidebar"]')).to_be_hidden()
            expect(page.get_by_text("Advanced settings")).to_have_count(0)
            if path.startswith("run"):
                box = page.get_by_role("button", name="Render").bounding_box()
                assert box and box["y"] + box["height"] <= HEIGHT, box
