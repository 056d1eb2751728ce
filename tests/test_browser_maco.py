"""MACO beside the priors, in a real browser: Compare priors renders a MACO column ("no generator, today's best
pixel method") next to the pixel baseline, with its own picture drawn and its result stored with its alpha map."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_browser import CHROMIUM, idle, page, server  # noqa: F401  (module-scoped fixtures)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: install it with scripts/install_browser.sh")


def test_compare_priors_shows_the_maco_column_with_its_picture(server, page):  # noqa: F811
    from playwright.sync_api import expect

    url, data = server
    page.goto(f"{url}/priors?model=efficientnet_lite0&layer=classifier&unit=309")
    idle(page)
    page.get_by_role("button", name="Render all side by side").click()
    expect(page.get_by_text("Done", exact=True)).to_be_visible()
    idle(page)
    main = page.locator('[data-testid="stMain"]')
    column = main.locator('[data-testid="stColumn"]').filter(has=page.locator("strong", has_text="MACO · no prior"))
    expect(column).to_have_count(1)
    expect(column.get_by_text("no generator, today's best pixel method")).to_be_visible()
    # the headers sit on a row of their own (so a wrapped header pushes no picture lower): MACO's picture is the
    # one in the column under its header
    x = column.bounding_box()["x"]
    under = [c for c in main.locator('[data-testid="stColumn"]').filter(
        has=page.locator('[data-testid="stImage"]')).all() if abs(c.bounding_box()["x"] - x) < 2]
    assert len(under) == 1, len(under)
    column = under[0]
    picture = column.locator('[data-testid="stImage"] img')
    expect(picture).to_have_count(1)
    picture.scroll_into_view_if_needed()
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=picture.element_handle())
    assert picture.evaluate("el => el.naturalWidth") == 224
    expect(column.get_by_text("activation", exact=False)).to_be_visible()
    key, = sqlite3.connect(data / "results.sqlite").execute(
        "SELECT key FROM results WHERE prior = 'maco' AND unit = 309").fetchone()
    assert (data / "images" / f"{key}_alpha.png").is_file()
