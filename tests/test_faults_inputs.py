"""Issue 23, the input faults: numbers people type (ASCII digits only, ranges checked before they are built), link
parameters and typed text shown as plain text (never Markdown), special files and odd names in photo folders,
16-bit photos, objective weights, JSON that is JSON, and a data-damage page that says what to run.

Each test reproduces a fault the second probe found; each failed before its fix."""
from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgnam_engine import cli, json_out, numbers
from dgnam_engine.errors import UserError
from dgnam_engine.photos import read_photo

ROOT = Path(__file__).resolve().parent.parent
C = ["visualize", "--model", "caffenet", "--random-weights", "--iters", "1", "--quiet"]  # quickest model to load


def one_error(capsys, argv: list[str]) -> str:
    """Run the command line in this process; it must exit 2 with exactly one line on stderr and nothing on stdout."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    assert not out.strip(), out
    return lines[0]


# ----- 1. one parser for typed numbers ---------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["--unit", "20-10"], ["'20-10' is empty", "10-20"]),  # was "no unit given"
    (["--unit", "٣"], ["bad unit '٣'"]),  # int() reads Arabic-Indic digits; nobody means them as a unit
    (["--objective", "²"], ["'²'", "digits 0-9"]),  # was a ValueError traceback
    (["--unit", "1", "--xy", "٣"], ["bad --xy '٣'"]),  # was read as 3
    (["--unit", "1", "--seed", "٣"], ["--seed", "'٣'", "digits 0-9"]),  # was read as 3
    (["--unit", "1", "--lr", "١.٥"], ["learning rate", "'١.٥'"]),  # float() read it as 1.5
])
def test_typed_numbers_are_ascii_digits_and_answered_in_one_line(args, words, tmp_path, capsys):
    line = one_error(capsys, C + args + ["--out", str(tmp_path / "x.png")])
    assert all(w in line for w in words), line
    assert not list(tmp_path.iterdir())


def test_examples_unit_is_ascii_digits(tmp_path, capsys):
    line = one_error(capsys, ["examples", "--model", "caffenet", "--random-weights", "--unit", "٣", "--store",
                              str(tmp_path)])
    assert "bad --unit '٣'" in line  # int() read it as unit 3


def test_a_huge_unit_range_is_refused_before_it_is_built(tmp_path):
    """`--unit 0-100000000000` built the list first (MemoryError; 0-30000000 took 2.6 GB). Under an 8 GB address
    space limit (torch alone reserves a few) it must answer in one line, at once."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    env = dict(os.environ, PYTHONPATH=str(ROOT), DGNAM_DATA_DIR=str(tmp_path / "data"))
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "dgnam_engine", *C, "--unit", "0-100000000000", "--out",
                        str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                       preexec_fn=limit)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines() == ["error: unit 100000000000 is out of range: no layer has more than "
                                             f"{numbers.MAX_UNITS} units"]
    assert time.monotonic() - t0 < 60 and not (tmp_path / "out").exists()


def test_precompute_with_an_empty_range_exits_2_having_done_nothing(tmp_path, capsys):
    store = tmp_path / "store"
    line = one_error(capsys, ["precompute", "--model", "caffenet", "--random-weights", "--units", "5-3",
                              "--device", "cpu", "--store", str(store)])
    assert "'5-3' is empty" in line  # was exit 0: "0 rendered, 0 already stored"
    line = one_error(capsys, ["precompute", "--model", "caffenet", "--random-weights", "--units",
                              "0-100000000000", "--device", "cpu", "--store", str(store)])
    assert "unit 100000000000 is out of range (0-999)" in line


def test_the_number_parser():
    assert numbers.unit_list("3, 1-2;3") == [3, 1, 2]
    assert numbers.unit_list("0-999", 1000)[-1] == 999
    for text, reason in [("10-2", "reversed"), ("²", "format"), ("-1", "format"), ("1_0", "format"),
                         ("", "empty"), ("0-1000", "range")]:
        with pytest.raises(numbers.NumberError) as e:
            numbers.unit_list(text, 1000)
        assert e.value.reason == reason, text
    assert numbers.whole(" 7 ") == 7 and numbers.position("2,5") == (2, 5) and numbers.position("6") == (6, 6)
    for bad in ("٣", "²", "1e3", "+1", "0x1"):
        with pytest.raises(UserError):
            numbers.whole(bad)


# ----- 11. objective weights and JSON ----------------------------------------------------------------------------

@pytest.mark.parametrize("objective", ["0*bee", "1" + "0" * 400 + "*bee", "2000000*bee + daisy"])
def test_zero_infinite_or_huge_objective_weights_are_refused(objective, tmp_path, capsys):
    """A 400-digit weight is infinity as a float: the run went on and --json printed bare -Infinity."""
    line = one_error(capsys, C + ["--objective", objective, "--json", "--out", str(tmp_path / "x.png")])
    assert "must be above 0 and at most" in line and len(line) < 200, line
    assert not list(tmp_path.iterdir())


def test_json_output_is_always_json():
    text = json_out.dumps({"a": float("-inf"), "b": [1.5, float("nan")], "c": (float("inf"),)})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}")) == {"a": None, "b": [1.5, None],
                                                                                    "c": [None]}


# ----- 7 and 11. photos: special files and 16-bit greyscale ------------------------------------------------------

def test_a_link_to_a_device_or_a_fifo_is_not_a_regular_file_and_is_not_read(tmp_path, capsys):
    zero = tmp_path / "zero.png"
    zero.symlink_to("/dev/zero")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for path in (zero, fifo):
        t0 = time.monotonic()
        with pytest.raises(UserError, match="is not a regular file"):  # was "photo not found"
            read_photo(path)
        assert time.monotonic() - t0 < 5  # neither read forever nor waited for a writer
        line = one_error(capsys, C + ["--unit", "1", "--init-image", str(path), "--out", str(tmp_path / "x.png")])
        assert f"{path} is not a regular file" in line
    with pytest.raises(UserError, match="photo not found"):
        read_photo(tmp_path / "nope.png")


def test_a_16_bit_greyscale_photo_is_scaled_not_clipped_to_white(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"
    rgb = read_photo(path)
    assert rgb.shape == (64, 64, 3)
    assert (rgb == 255).mean() < 0.05  # was 99.6 % white
    np.testing.assert_allclose(rgb[..., 0].astype(float), ramp / 257.0, atol=1)
    # a 32-bit integer photo with values beyond 16 bits: stretched over its range
    wide = Image.fromarray((np.tile(np.arange(64), (64, 1)) * 100_000).astype(np.int32), mode="I")
    wide.save(tmp_path / "wide.tif")
    grey = read_photo(tmp_path / "wide.tif")[..., 0]
    assert grey.min() == 0 and grey.max() == 255 and 120 < grey.mean() < 135


# ----- 9. photo folders: odd names and link loops ----------------------------------------------------------------

def _photo(path) -> None:
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(path, "PNG")


def test_a_non_utf8_name_does_not_block_the_folder(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    _photo(folder / "good.png")
    _photo(os.path.join(os.fsencode(folder), b"bad-\xff.png"))  # a name from an old Latin-1 disk
    (folder / "device.png").symlink_to("/dev/zero")  # not a photo: skipped, not read
    code = cli.main(["index", "--model", "caffenet", "--random-weights", "--images", str(folder), "--store",
                     str(tmp_path / "store"), "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err  # was a UnicodeEncodeError traceback
    assert "skipped 1 photo(s) whose names are not valid UTF-8" in err and "bad-\\xff.png" in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["images"] == 1 and summary["indexed"] == 1 and summary["unreadable"] == 0


def test_a_photo_folder_that_is_a_link_loop_is_one_line(tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    line = one_error(capsys, ["index", "--model", "caffenet", "--random-weights", "--images", str(loop),
                              "--store", str(tmp_path / "store")])
    assert "symbolic link loop" in line and str(loop) in line  # was a RuntimeError traceback


# ----- dashboard: typed numbers, plain text, data damage ---------------------------------------------------------

APP = str(ROOT / "streamlit_app.py")


def app(page: str | None = None, **query):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def errors(at) -> str:
    """The Markdown of the page's error boxes, without the invisible word joiners that stop bare-URL links."""
    return " ".join(str(e.value) for e in at.error).replace("\u2060", "")


@pytest.fixture
def dashboard_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DGNAM_UI_STEPS", "3")


def test_a_class_link_with_a_non_ascii_digit_is_answered(dashboard_env):
    at = app("pages/models.py")
    at.query_params["class"] = "²"
    at.run()  # was "Something went wrong on this page"
    assert "not an ImageNet class number" in errors(at) and "Something went wrong" not in errors(at)


def test_classes_and_combine_boxes_answer_non_ascii_digits(dashboard_env):
    at = app("pages/run.py")
    at.text_input(key="run_classes").input("²").run()  # was "invalid literal for int() with base 10: '²'"
    assert "No ImageNet class is called" in errors(at), errors(at)
    at.text_input(key="run_classes").input("bee").run()
    at.text_input(key="run_objective").input("bee + ²").run()  # Combine units: was a crashed page
    assert not at.exception and "digits 0\\-9" in errors(at), errors(at)


def test_units_box_reads_ascii_digits_and_checks_ranges_before_building_them(dashboard_env):
    at = app("pages/run.py")
    at.selectbox(key="run_layer").select("blocks.6").run()
    at.text_input(key="run_utext_blocks.6").input("²").run()  # was "invalid literal for int()..."
    assert "is not a unit number" in errors(at), errors(at)
    at.text_input(key="run_utext_blocks.6").input("5-2").run()  # was "Enter at least one unit number"
    assert "is an empty range" in errors(at), errors(at)
    t0 = time.monotonic()
    at.text_input(key="run_utext_blocks.6").input("0-30000000").run()  # was 2.6 GB built before the check
    assert "does not exist in this layer" in errors(at) and time.monotonic() - t0 < 60


def test_link_and_typed_text_reach_the_page_as_plain_text(dashboard_env):
    """What a link or a box holds is escaped before it reaches Markdown: a link text cannot become a link."""
    at = app(model="[Click here to fix](https://evil.example/)")
    body = errors(at)
    assert "\\[Click here to fix\\]\\(https\\:\\/\\/evil\\.example\\/\\)" in body, body
    at = app("pages/run.py")
    at.selectbox(key="run_layer").select("blocks.6").run()
    at.text_input(key="run_utext_blocks.6").input("![x](http://evil.example/x.png)").run()
    assert "\\!\\[x\\]\\(http\\:\\/\\/evil\\.example\\/x\\.png\\)" in errors(at), errors(at)


def test_plain_and_message_helpers():
    from app.plain import message, plain

    assert plain("a\n# b [c](d) :red[e] $f$") == "a \\# b \\[c\\]\\(d\\) \\:red\\[e\\] \\$f\\$"
    assert plain("see https://x.y, www.a.b or a@b.c") == \
        "see https\u2060\\:\\/\\/x\\.y\\, www\u2060\\.a\\.b or a\u2060\\@b\\.c"
    assert message("run `store check --repair` on [x](y)") == "run `store check --repair` on \\[x\\]\\(y\\)"


def _damage_script():
    import sqlite3 as _sqlite3

    import streamlit as _st

    from app import layout as _layout

    with _layout.friendly_errors():
        _sqlite3.connect(_st.session_state["db"]).execute("SELECT * FROM results").fetchall()


def test_damaged_data_page_says_what_to_run_not_restart(tmp_path):
    from streamlit.testing.v1 import AppTest

    db = tmp_path / "results.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE results (id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO results (v) VALUES (?)", [("x" * 500,)] * 200)
    con.commit()
    con.close()
    data = bytearray(db.read_bytes())
    data[4096:8192] = os.urandom(4096)  # a damaged page, as a bit-flipping disk leaves it
    db.write_bytes(bytes(data))
    at = AppTest.from_function(_damage_script, default_timeout=60)
    at.session_state["db"] = str(db)
    at.run()
    assert not at.exception
    text = errors(at)
    assert "python -m dgnam_engine store check --repair" in text and "restart" not in text.replace(
        "restarting will not help", ""), text


# ----- 8. in a real browser: a link's text draws no link and fetches nothing -------------------------------------

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: scripts/install_browser.sh")
def test_link_parameters_draw_no_outside_link_or_picture_in_the_browser(tmp_path):
    """`/?model=[Click here to fix](...)` drew a live link in the red box and `![x](...)` made the browser fetch
    that address. A stand-in outside server on 127.0.0.1 counts what the browser asks of it."""
    from urllib.parse import quote

    from httpserver import FileServer
    from playwright.sync_api import expect
    from test_browser import browser_page, idle, run_dashboard

    env = dict(os.environ, DGNAM_DATA_DIR=str(tmp_path / "data"), DGNAM_DEVICE="cpu", HF_HUB_OFFLINE="1")
    with FileServer() as outside, run_dashboard(tmp_path, env) as url:
        pixel = outside.serve("/pixel.png", b"\x89PNG\r\n\x1a\n")
        links = {"[Click here to fix](%s/fix)" % outside.url: "Click here to fix",
                 "![x](%s)" % pixel: "![x](",
                 "see www.evil.example or mail me@evil.example": "www.evil.example"}
        with browser_page() as page:
            for text, shown in links.items():
                page.goto(f"{url}/?model={quote(text, safe='')}")
                idle(page)
                alert = page.locator('[data-testid="stAlertContentError"]').filter(has_text="does not exist")
                expect(alert).to_have_count(1, timeout=90_000)
                seen = alert.inner_text().replace("\u2060", "")  # word joiners: invisible, they stop autolinks
                assert text in seen and shown in seen  # shown exactly as it was written
                assert alert.locator("a, img").count() == 0, alert.inner_html()
                page.wait_for_timeout(500)  # time for a picture the page would fetch
                outside_refs = page.evaluate("""origin => [...document.querySelectorAll('a[href], img[src]')]
                    .map(e => e.href || e.src).filter(u => u.startsWith(origin))""", outside.url)
                assert outside_refs == [], outside_refs
        assert outside.requests == []
