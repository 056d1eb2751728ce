"""Scene networks and a network of the user's own, in real chromium (issue 19): Setup downloads a Places network
from a local HTTP server standing in for the Places host (DGNAM_PLACES_MIRROR) and shows its progress; Run renders
a unit of a network added with `models add`, picked by its class name."""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from httpserver import FileServer
from test_browser import CHROMIUM, browser_page, ROOT, idle, rendered_widths, run_dashboard

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: install it with scripts/install_browser.sh")


@pytest.fixture(scope="module")
def places_host(tmp_path_factory):
    """The official ResNet-18-Places365 file in its published container (random weights), served slowly enough
    to watch its progress."""
    import torchvision

    out = tmp_path_factory.mktemp("places")
    path = out / "resnet18_places365.pth.tar"
    sd = torchvision.models.resnet18(num_classes=365).state_dict()
    torch.save({"epoch": 90, "arch": "resnet18", "state_dict": {f"module.{k}": v for k, v in sd.items()},
                "best_prec1": 54.7}, path)
    with FileServer() as srv:
        srv.serve("/models_places365/resnet18_places365.pth.tar", path, pause=0.1)
        yield srv, path


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, places_host, fc6_file):
    """Online against the stand-in host, fc6 present, and a user's ResNet-18 of three classes added beforehand
    with the command line, as a user would."""
    import torchvision

    srv, _ = places_host
    base = tmp_path_factory.mktemp("scenes-browser")
    ckpt = base / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    shutil.copy(fc6_file, ckpt / "upconvGAN_fc6.pt")
    env = dict(os.environ, TORCH_HOME=str(base / "torch"), HF_HOME=str(base / "hf"), DGNAM_DATA_DIR=str(base / "data"),
               XDG_CACHE_HOME=str(base / "cache"), DGNAM_UI_STEPS="2", DGNAM_DEVICE="cpu", HF_HUB_OFFLINE="0",
               DGNAM_PLACES_MIRROR=srv.url, PYTHONPATH=str(ROOT))
    weights, names = base / "pets.pth", base / "names.txt"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), weights)
    names.write_text("cat\ndog\nzebra\n")
    p = subprocess.run([sys.executable, "-m", "dgnam_engine", "models", "add", "pets", "--arch",
                        "torchvision:resnet18", "--weights", str(weights), "--classes", str(names)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    with run_dashboard(base, env) as url:
        yield url, base


@pytest.fixture(scope="module")
def page(dashboard):
    with browser_page() as pg:
        yield pg


def test_setup_downloads_a_places_network_with_progress(dashboard, page, places_host):
    from playwright.sync_api import expect

    url, base = dashboard
    srv, path = places_host
    page.goto(f"{url}/setup")
    idle(page)
    page.locator(".st-key-dl_resnet18_places365").get_by_role("button", name="Download").click()
    expect(page.get_by_text(re.compile(r"resnet18_places365: [\d.]+ MB"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"Downloaded: resnet18_places365"))).to_be_visible()
    got = base / "torch" / "hub" / "checkpoints" / "resnet18_places365.pth.tar"
    assert got.read_bytes() == path.read_bytes()
    assert any(r.startswith("GET /models_places365/resnet18_places365.pth.tar") for r in srv.requests)


def test_run_renders_an_added_network_by_class_name(dashboard, page):
    from playwright.sync_api import expect

    url, base = dashboard
    page.goto(f"{url}/run?model=pets&layer=fc&unit=0")
    idle(page)
    box = page.get_by_role("textbox", name="Classes (name or number)")
    box.fill("zebra")
    box.press("Enter")
    expect(page).to_have_url(re.compile(r"unit=2(&|$)"))
    idle(page)
    page.get_by_role("button", name="Render").click()
    expect(page.get_by_text("Done", exact=True)).to_be_visible()
    idle(page)
    expect(page.get_by_text("zebra (2) · fc6 prior · seed 0").first).to_be_visible()
    widths = rendered_widths(page)
    assert widths and widths[0] > 0, widths
    rows = sqlite3.connect(base / "data" / "results.sqlite").execute("SELECT model, unit FROM results").fetchall()
    assert rows == [("pets", 2)]
