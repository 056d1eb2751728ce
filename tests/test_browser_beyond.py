"""Beyond one class unit from noise, in a real browser: upload a photo on Run, render from it, and see the photo,
its reconstruction and the result side by side on the card."""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from test_browser import CHROMIUM, idle, page, rendered_widths, server  # noqa: F401  (module-scoped fixtures)

COFFEE = Path(__import__("skimage").__file__).parent / "data" / "coffee.png"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: install it with scripts/install_browser.sh")


def test_upload_a_photo_render_from_it_and_see_photo_reconstruction_result(server, page):  # noqa: F811
    from playwright.sync_api import expect

    url, data = server
    page.goto(f"{url}/run?model=efficientnet_lite0&layer=classifier&unit=967")
    idle(page)
    page.get_by_role("combobox", name=re.compile("Prior")).click()
    page.get_by_role("option", name=re.compile("lite0-b3")).click()  # a photo is encoded by the prior's encoder
    idle(page)
    page.get_by_text("Start from a photo · hidden unit position · combine units").click()
    page.get_by_text("a photo", exact=True).click()
    idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(COFFEE))
    # the sample photo shows first: wait for the page to have received the upload, or its rerun would come after
    # the Render click and interrupt it
    expect(page.get_by_text("starting photo (your coffee.png)")).to_be_visible()
    idle(page)
    page.get_by_role("button", name="Render").click()
    expect(page.get_by_text("Done", exact=True)).to_be_visible()
    idle(page)
    page.get_by_text("Details of each picture").click()
    for caption in ("photo · activation", "reconstruction · activation", "result · activation"):
        expect(page.get_by_text(re.compile("^" + caption)).first).to_be_visible()
    assert all(w > 0 for w in rendered_widths(page, at_least=4)), "a picture did not arrive"
    rows = sqlite3.connect(data / "results.sqlite").execute(
        "SELECT settings FROM results WHERE unit = 967 AND prior = 'lite0-b3'").fetchall()
    assert any('"init_image"' in s and "uploads" in s for (s,) in rows), rows  # the upload, kept by its content
