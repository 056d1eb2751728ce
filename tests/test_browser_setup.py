"""Setup from the dashboard, in real chromium: the dashboard runs online against a local HTTP server on 127.0.0.1
that stands in for the Hugging Face Hub (HF_ENDPOINT) and the torch download host (DGNAM_TORCH_MIRROR), serving
the paper's files in their published layout (bare state dicts with the original key names, `upconvGAN_<name>.pt`,
`caffenet.pt`) with random but responsive weights. A download shows its progress and Cancel leaves nothing; the
Paper setup button fetches CaffeNet and the four original priors; Compare priors then renders them and the pixel
baseline side by side for CaffeNet, without restarting the server."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from httpserver import FileServer
from test_browser import CHROMIUM, browser_page, ROOT, idle, rendered_widths, run_dashboard

REPO = "binxu/DeePSim_DosovitskiyBrox2016"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: install it with scripts/install_browser.sh")


@pytest.fixture(scope="module")
def published_files(tmp_path_factory) -> dict[str, Path]:
    """The five files of the paper's setup, full size (fc6/fc7 224 MB each), as the Hub repo publishes them."""
    from dgnam_engine import generators
    from dgnam_engine.caffenet import caffenet
    from factories import responsive

    out = tmp_path_factory.mktemp("published")
    files = {}
    with torch.no_grad():
        for name, arch, shape in [("fc6", "upconv_fc", (4096,)), ("fc7", "upconv_fc", (4096,)),
                                  ("pool5", "upconv_pool5", (256, 6, 6)), ("conv3", "upconv_conv34", (384, 13, 13))]:
            torch.manual_seed(len(files))
            gen = responsive(generators.build(arch), shape, seed=len(files))
            files[name] = out / f"upconvGAN_{name}.pt"
            torch.save(gen.state_dict(), files[name])
        torch.manual_seed(5)
        files["caffenet"] = out / "caffenet.pt"
        torch.save(caffenet().state_dict(), files["caffenet"])
    return files


@pytest.fixture(scope="module")
def hub(published_files):
    with FileServer() as srv:
        for name, path in published_files.items():
            srv.serve_hub(REPO, path.name, path)
        yield srv


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, hub):
    """The dashboard started online (as `bash run.sh` now does), its caches empty."""
    base = tmp_path_factory.mktemp("setup-browser")
    env = dict(os.environ, TORCH_HOME=str(base / "torch"), HF_HOME=str(base / "hf"), DGNAM_DATA_DIR=str(base / "data"),
               XDG_CACHE_HOME=str(base / "cache"), DGNAM_UI_STEPS="2", DGNAM_DEVICE="cpu", HF_HUB_OFFLINE="0",
               HF_ENDPOINT=hub.url, DGNAM_TORCH_MIRROR=hub.url, PYTHONPATH=str(ROOT))
    with run_dashboard(base, env) as url:
        yield url, base / "hf" / "hub"


@pytest.fixture(scope="module")
def page(dashboard):
    with browser_page() as pg:
        yield pg


def weight_files(hf_cache: Path) -> list[str]:
    """Weights, whole or partial, in the Hugging Face cache (not its lock files, refs and CACHEDIR.TAG)."""
    return sorted(p.name for p in hf_cache.rglob("*")
                  if (p.is_file() or p.is_symlink()) and ("blobs" in p.parts or "snapshots" in p.parts))


def test_cancel_a_download_leaves_nothing(dashboard, page, hub, published_files):
    from playwright.sync_api import expect

    url, hf_cache = dashboard
    hub.serve_hub(REPO, "upconvGAN_fc7.pt", published_files["fc7"], pause=0.2)  # 50 pieces: ~10 s
    page.goto(f"{url}/setup")
    idle(page)
    expect(page.get_by_role("button", name=re.compile(r"^Paper setup: download caffenet, conv3, pool5, fc6, fc7"))
           ).to_be_visible()
    main = page.locator('[data-testid="stMain"]')
    expect(main.get_by_text("about 224 MB").or_(main.get_by_text(re.compile(r"^2\d\d MB$"))).first).to_be_visible()
    page.locator(".st-key-dl_fc7").get_by_role("button", name="Download").click()
    # progress: bytes of the whole, speed and time left
    expect(page.get_by_text(re.compile(r"fc7: [\d.]+ MB of 22\d\.\d MB · [\d.]+ MB/s · .* left"))).to_be_visible()
    main.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text("Download cancelled: nothing of the unfinished file was kept.")).to_be_visible()
    idle(page)
    assert weight_files(hf_cache) == []
    assert not list(hf_cache.rglob("*.incomplete"))


def test_paper_setup_then_compare_priors_for_caffenet_without_restart(dashboard, page, hub, published_files):
    from playwright.sync_api import expect

    url, hf_cache = dashboard
    hub.serve_hub(REPO, "upconvGAN_fc7.pt", published_files["fc7"])  # at full speed again
    page.goto(f"{url}/setup")
    idle(page)
    page.get_by_role("button", name=re.compile(r"^Paper setup")).click()
    expect(page.get_by_text(re.compile(r"Downloaded: caffenet, conv3, pool5, fc6, fc7\."))).to_be_visible()
    idle(page)
    snaps = {p.name for p in hf_cache.rglob("snapshots/*/*")}
    assert snaps == {"caffenet.pt", "upconvGAN_conv3.pt", "upconvGAN_pool5.pt", "upconvGAN_fc6.pt",
                     "upconvGAN_fc7.pt"}
    for name, path in published_files.items():  # the exact bytes the server holds
        got = next(hf_cache.rglob(f"snapshots/*/{path.name}"))
        assert got.stat().st_size == path.stat().st_size, name
    expect(page.get_by_role("button", name=re.compile(r"^Paper setup"))).to_have_count(0)

    page.goto(f"{url}/priors?model=caffenet&layer=fc8&unit=3")  # same server process: no restart
    idle(page)
    expect(page.get_by_role("heading", name="Compare priors")).to_be_visible()
    page.get_by_role("button", name="Render all side by side").click()
    main = page.locator('[data-testid="stMain"]')
    expect(page.get_by_text("Done", exact=True).or_(page.get_by_text("Could not render", exact=True))
           ).to_be_visible()
    idle(page)
    errors = main.locator('[data-testid="stAlert"]').all_inner_texts()
    # CaffeNet's LRN runs in fp32 on the fast path since issue 9 item 1 landed: no "BFloat16" failure may show
    assert not any("BFloat16" in e for e in errors), errors
    for title in ("conv3 · original", "pool5 · original", "fc6 · original", "fc7 · original",
                  "pixel · no prior"):
        expect(main.locator("strong", has_text=title)).to_be_visible()
    widths = rendered_widths(page, 5)
    assert len(widths) >= 5 and all(w > 0 for w in widths), widths


def test_offline_setup_says_so_in_one_line(monkeypatch):
    """HF_HUB_OFFLINE=1 (as test.sh sets): one line says downloads are off and how to turn them on."""
    import huggingface_hub.constants as hfc
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    at = AppTest.from_file(str(ROOT / "pages" / "setup.py"), default_timeout=120).run()
    offline = [i.value for i in at.info if "Offline" in i.value]
    assert len(offline) == 1 and "\n" not in offline[0] and "HF_HUB_OFFLINE=0 bash run.sh" in offline[0]
    downloads = [b for b in at.button if b.label == "Download"]
    assert downloads and all(b.disabled for b in downloads)
    assert not [b for b in at.button if b.label.startswith("Paper setup")]
