"""'Guess the neuron' in real browsers at 1280x720: a teacher opens a class code, two students answer questions from
the same link in their own browser contexts (one by the keyboard's 1, one by clicking), the teacher's tally counts
both without a reload, and `quiz export --csv` has their rows."""
from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import subprocess
import sys

import pytest
from test_browser import BROWSER_ARGS, CHROMIUM, ROOT, idle, server  # noqa: F401  (server: the dashboard fixture)

from dgnam_engine.atlas import ATLAS_DIR

WIDTH, HEIGHT = 1280, 720
DASHBOARD_ENV = {"DGNAM_ATLAS_DIR": str(ATLAS_DIR)}  # DGN-AM references from the shipped atlas
SHOTS = os.environ.get("DGNAM_QUIZ_SHOTS")  # a folder for screenshots (to look at them), else none taken

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: install it with scripts/install_browser.sh")


@contextlib.contextmanager
def contexts(n: int):
    """n browser contexts of one chromium (separate cookies and sessions: separate people), one tab each."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=120_000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        pages = []
        for _ in range(n):
            pg = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}).new_page()
            pg.set_default_timeout(120_000)
            pages.append(pg)
        yield pages
        browser.close()


def shot(page, name):
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"))


def answer(page, how: str) -> None:
    """Answer the question on screen (by key 1 or by clicking photo 2) and go on to the next one."""
    from playwright.sync_api import expect

    pick = page.get_by_role("button", name=re.compile(r"^Photo 1 drives it more"))
    expect(pick).to_be_visible()
    box = page.get_by_role("button", name=re.compile(r"^Photo 2 drives it more")).bounding_box()
    assert box and box["y"] + box["height"] <= HEIGHT, box  # both choices in the window
    if how == "key":
        page.keyboard.press("1")
    else:
        page.get_by_role("button", name=re.compile(r"^Photo 2 drives it more")).click()
    expect(page.get_by_text(re.compile(r"^(Right!|Not this time\.)$"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^The unit is class"))).to_be_visible()
    page.get_by_role("button", name=re.compile("^Next question")).click()
    idle(page)


def test_two_students_answer_from_one_link_and_the_teachers_tally_counts_both(server):
    from playwright.sync_api import expect

    url, data = server
    with contexts(3) as (teacher, ann, bob):
        teacher.goto(f"{url}/quiz?room=TEST42&teacher=1&present=1")
        idle(teacher)
        expect(teacher.get_by_text("Class code TEST42")).to_be_visible()
        expect(teacher.get_by_text("0 people, 0 answers")).to_be_visible()
        for pg in (ann, bob):
            pg.goto(f"{url}/quiz?room=TEST42")
            idle(pg)
            expect(pg.get_by_text(re.compile(r"^Question 1 of 10"))).to_be_visible()
        shot(ann, "student_question")
        answer(ann, "key")
        answer(bob, "click")
        answer(ann, "key")
        expect(ann.get_by_text(re.compile(r"^Question 3 of 10"))).to_be_visible()
        # the teacher's screen was not reloaded: its tally updates by itself
        expect(teacher.get_by_text("2 people, 3 answers")).to_be_visible()
        shot(teacher, "teacher_tally_present")
        assert not teacher.get_by_text("Something went wrong").count()

    out = subprocess.run([sys.executable, "-m", "dgnam_engine", "quiz", "export", "--csv", "--room", "TEST42",
                          "--store", str(data)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 3 and len({r["session"] for r in rows}) == 2, rows
    assert sorted((r["question"]) for r in rows) == ["1", "1", "2"]
    assert all(r["room"] == "TEST42" and r["layer"] == "classifier" for r in rows)
    # the same questions for everyone in the room: both students' question 1 had the same photos
    q1 = [r for r in rows if r["question"] == "1"]
    assert q1[0]["strong_photo"] == q1[1]["strong_photo"] and q1[0]["weak_photo"] == q1[1]["weak_photo"]
