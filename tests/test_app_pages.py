"""Every dashboard page through Streamlit's AppTest: it renders, its main action works on a tiny setting (real
EfficientNet-Lite0, a random but responsive fc6 prior in the weights cache, 3 steps), and bad input gets a message.

The module gets its own weights cache, results folder and demo-prior folder (a tiny trained "pool5" prior), so the
other test files keep the session's empty caches.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from dgnam_engine import accel, generators, priors, runner
from dgnam_engine.store import ResultsStore

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "streamlit_app.py")
TIMEOUT = 120


@pytest.fixture(scope="module")
def env(tmp_path_factory, fc6_file):
    """fc6 "present" through the real cache (TORCH_HOME/hub/checkpoints), a demo pool5 prior, 3-step defaults."""
    from factories import responsive

    base = tmp_path_factory.mktemp("app")
    ckpt = base / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    shutil.copy(fc6_file, ckpt / "upconvGAN_fc6.pt")
    demo = base / "demo_priors"
    demo.mkdir()
    torch.manual_seed(0)
    gen = responsive(generators.compact((64,), width=8, out_size=64, fc_width=64), (64,))
    card = {"name": "tiny_pool5", "title": "tiny test prior", "arch": "compact",
            "arch_kwargs": {"code_shape": [64], "width": 8, "out_size": 64, "fc_width": 64}, "code_shape": [64],
            "encoder": "efficientnet_lite0", "layer": "pooled", "depth": "pool5", "note": "test"}
    priors.save_prior_file(demo / "tiny_pool5.safetensors", gen, torch.zeros(64), torch.full((64,), 3.0), card)
    new = {"TORCH_HOME": str(base / "torch"), "DGNAM_DATA_DIR": str(base / "data"), "DGNAM_UI_STEPS": "3",
           "DGNAM_DEVICE": "cpu"}
    old = {k: os.environ.get(k) for k in new}
    old_demo = priors.DEMO_PRIORS_DIR
    os.environ.update(new)
    priors.DEMO_PRIORS_DIR = demo
    runner.clear_caches()
    yield base
    priors.DEMO_PRIORS_DIR = old_demo
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    runner.clear_caches()  # later tests must not see this module's fc6 in the cache


def app(page: str | None = None, **query):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


def store() -> ResultsStore:
    return ResultsStore()


def test_run_page_renders_a_unit_and_reuses_it(env):
    at = app("pages/run.py")
    assert at.selectbox(key="run_prior").value == "fc6"  # the default prior when fc6 is present
    assert at.text_input(key="run_classes").value == "bee (309)"
    at.button(key="run_go").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert at.status[0].state == "complete" and at.progress[0].value == 100
    [r] = store().query(model="efficientnet_lite0", unit=309)
    assert r.prior == "fc6" and r.settings["n_iters"] == 3 and r.activation_final > r.activation_start
    assert r.image_path.is_file() and r.label == "bee" and len(at.image) >= 1
    again = app("pages/run.py")  # a new session finds it at once, without pressing Render
    assert any("Shown from stored results" in c.value for c in again.caption) and len(again.image) >= 1
    assert len(store()) == 1


def test_run_page_quick_preview_runs_the_engine_preview(env, monkeypatch):
    from dgnam_engine import accel

    monkeypatch.setattr(accel, "PREVIEW_ITERS", 2)  # the preview's step count, shrunk for the test
    at = app("pages/run.py")
    at.toggle(key="run_quick").set_value(True).run()
    at.button(key="run_go").click().run()
    assert not at.exception and not at.error, texts(at.error)
    [r] = [x for x in store().query(model="efficientnet_lite0", unit=309) if x.settings["n_iters"] == 2]
    assert r.activations and len(r.activations) == 2 and r.image_path.is_file()


def test_a_rerun_with_the_previous_address_keeps_the_new_pick(env):
    """The browser sends its address with every rerun. A click that comes before the browser has taken in the
    address the last run wrote carries the old one; that must not undo the user's pick (it did: the old unit came
    back and was rendered instead)."""
    at = app("pages/run.py")
    assert at.query_params["unit"] == "309"
    at.text_input(key="run_classes").input("goldfish").run()
    assert at.query_params["unit"] == "1"
    at.query_params["unit"] = "309"  # the stale address of a quick click
    at.run()
    assert at.text_input(key="run_classes").value == "goldfish" and at.query_params["unit"] == "1"
    fresh = app("pages/run.py", model="efficientnet_lite0", layer="classifier", unit="2")  # a real link still opens
    assert fresh.text_input(key="run_classes").value.endswith("(2)") and fresh.query_params["unit"] == "2"


def test_run_page_bad_units_and_broken_prior_give_messages(env):
    at = app("pages/run.py")
    at.selectbox(key="run_layer").select("blocks.6").run()
    at.text_input(key="run_utext_blocks.6").input("12, abc").run()
    assert "is not a unit number" in texts(at.error) and not at.button  # no Render button for bad input
    at.text_input(key="run_utext_blocks.6").input("5000").run()
    assert "does not exist in this layer" in texts(at.error)
    # a damaged weights file: one friendly line, nothing stored
    ckpt = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "upconvGAN_fc7.pt"
    ckpt.write_bytes(b"not a checkpoint")
    try:
        before = len(store())
        at = app("pages/run.py")
        at.selectbox(key="run_prior").select("fc7").run()
        at.button(key="run_go").click().run()
        assert not at.exception and "not a readable weights file" in texts(at.error)
        assert at.status[0].state == "error" and len(store()) == before
    finally:
        ckpt.unlink()


def test_run_page_without_any_prior_offers_the_pixel_baseline(env, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(priors, "DEMO_PRIORS_DIR", tmp_path / "none")
    at = app("pages/run.py")
    assert "python -m dgnam_engine fetch fc6" in texts(at.warning)
    assert at.selectbox(key="run_prior").value == "pixel"
    at.button(key="run_go").click().run()
    assert not at.error and at.status[0].state == "complete"
    assert [r.prior for r in store().query(unit=309, prior="pixel")] == ["pixel"]


def test_browse_link_opens_unit_and_renders_it(env):
    at = app(model="efficientnet_lite0", layer="classifier", unit="1")
    assert "Goldfish (1) has not been rendered yet" in texts(at.info)
    at.button(key="browse_go").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert [s.value for s in at.subheader][0] == "goldfish (1)"  # the result card
    assert at.query_params["unit"] == "1"
    assert len(at.get("plotly_chart")) == 1 and at.dataframe  # activation chart, top-5 and settings tables
    top5 = at.dataframe[0].value
    assert len(top5) == 5 and "%" in top5["probability"][0]
    table = at.table[0].value
    settings = dict(zip(table["setting"], table["value"]))
    threads = accel.cpu_pass_threads()  # what the picture depends on, besides the request: precision and threads
    assert settings["computed in"] == f"cpu {accel.for_device('cpu').dtype}, {threads} thread" + \
        ("s" if threads != 1 else "") + " a pass", settings
    # the grid lists it, each picture a link to its unit; another rendered unit's link opens its card (one
    # rendered here: the test stands alone, without the Run page's tests before it)
    for go in [b for b in app(model="efficientnet_lite0", layer="classifier", unit="2").button if b.key == "browse_go"]:
        go.click().run()
    at = app(model="efficientnet_lite0", layer="classifier", unit="1")
    grid = "".join(e.proto.body for e in at.get("html"))
    links = dict(re.findall(r'href="\?model=efficientnet_lite0&amp;layer=classifier&amp;unit=(\d+)"[^>]*><img[^>]*'
                            r'alt="([^"]+)"', grid))
    assert links.get("1") == "goldfish (1)", links
    other = next(u for u in links if u != "1")
    assert [s.value for s in app(model="efficientnet_lite0", layer="classifier", unit=other).subheader][0] == \
        links[other]


def test_browse_bad_links_give_messages(env):
    at = app(model="efficientnet_lite0", layer="classifier", unit="5000")
    assert "Unit 5000 does not exist" in texts(at.error)
    at = app(model="no_such_net")
    assert "does not exist" in texts(at.error) and at.selectbox(key="browse_model").value == "efficientnet_lite0"
    at = app(model="efficientnet_lite0", layer="fc99")
    assert "has no layer" in texts(at.error)


def test_compare_priors_side_by_side(env):
    at = app("pages/priors.py")
    at.button(key="cmpp_go").click().run()
    assert not at.exception and not at.error, texts(at.error)
    heads = [m.value.split("  \n")[0] for m in at.markdown]
    assert "**fc6 · original**" in heads and "**pool5 · demo**" in heads and "**pixel · no prior**" in heads
    assert "**MACO · no prior**  \nno generator, today's best pixel method" in [m.value for m in at.markdown]
    # a missing prior links to the Setup page (its download button) instead of printing a command
    assert "No conv3 prior on this machine" in texts(at.caption)
    assert any("Setup page" in link.proto.label for link in at.get("page_link"))
    assert len(at.image) == 4 and len(at.get("plotly_chart")) == 2
    bars = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert len(bars["x"]) == 4 and "MACO · no prior" in bars["x"] and all(isinstance(v, float) for v in bars["y"])
    seeds = {r.prior: r.seed for r in store().query(unit=309, layer="classifier")}
    assert {"fc6", "tiny_pool5", "pixel", "maco"} <= set(seeds) and len(set(seeds.values())) == 1


def test_maco_card_shows_its_alpha_map_on_a_toggle(env):
    at = app("pages/run.py")
    at.selectbox(key="run_prior").set_value("maco").run()
    at.button(key="run_go").click().run()
    assert not at.exception and not at.error, texts(at.error)
    [r] = store().query(unit=309, prior="maco")
    assert r.settings["method"] == "maco" and r.settings["n_iters"] == 3 and r.alpha_path.is_file()
    toggle = at.toggle(key=f"run_card_{r.key}_alpha")
    assert toggle.value is False and not any("alpha map" in (c.value or "") for c in at.caption)
    toggle.set_value(True).run()
    assert not at.exception
    shown = [i for i in at.image if "alpha map over the picture" in str(i.proto)]
    assert len(shown) == 1


def test_compare_priors_bad_link(env):
    at = app("pages/priors.py")
    at.query_params["unit"] = "abc"
    at.run()
    assert "is not a number" in texts(at.error)


def test_compare_models(env):
    at = app("pages/models.py")
    assert not at.exception and not at.error, texts(at.error)
    # one network here: nothing to compare, no columns of commands, no Render button and no class picker that
    # would do nothing, a link to Setup instead
    assert "Only one network is on this machine" in texts(at.info) and not at.button and not at.selectbox
    assert not at.code and "fetch" not in texts(at.caption)
    assert any("Setup page" in link.proto.label for link in at.get("page_link"))


def test_gallery_filters_and_zip(env, tmp_path, monkeypatch, lite0):
    """On a results folder of its own, filled here (two pixel runs and one fc6 run of 1 step), whatever other
    tests ran before."""
    from app.export import zip_of

    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path / "gallery"))
    own = store()
    for settings, units in ((runner.Settings(method="pixel", n_iters=1), [1, 2]),
                            (runner.Settings(prior="fc6", n_iters=1), [3])):
        for r in runner.visualize("efficientnet_lite0", units, None, settings, target=lite0):
            own.put(r)
    at = app("pages/gallery.py")
    n = len(store())
    assert n == 3 and f"{n} pictures" in texts(at.caption)
    at.multiselect(key="gal_priors").select("pixel").run()
    assert len(at.image) == len(store().query(prior="pixel")) == 2
    at.checkbox(key="gal_all").check().run()
    assert not at.exception
    zip_button = at.get("download_button")[0]  # first, above the pictures
    assert "Download ZIP of" in zip_button.proto.label and not zip_button.proto.disabled
    picked = store().query(prior="pixel")
    with zipfile.ZipFile(io.BytesIO(zip_of(picked))) as z:
        meta = json.loads(z.read("results.json"))
        assert len(meta) == len(picked) and all(m["prior"] == "pixel" for m in meta)
        assert z.read(meta[0]["image"])[:8] == b"\x89PNG\r\n\x1a\n" and meta[0]["activations"]


def test_gallery_empty_store_says_what_to_do(env, tmp_path, monkeypatch):
    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path / "fresh"))
    at = app("pages/gallery.py")
    assert "Render a neuron on the **Run** page" in texts(at.info)


def test_setup_lists_weights_and_fetch_commands(env):
    at = app("pages/setup.py")
    models, prs = at.table[0].value, at.table[1].value  # tables that wrap: nothing cut at 1280 px
    lite0 = models[models["network"] == "efficientnet_lite0"].iloc[0]
    alex = models[models["network"] == "alexnet"].iloc[0]
    assert lite0["weights"] == "present" and alex["weights"] == "missing"
    assert alex["get it with"] == ".venv/bin/python -m dgnam_engine fetch alexnet" and "checkpoints" in alex["file"]
    fc6 = prs[prs["prior"] == "fc6"].iloc[0]
    assert fc6["weights"] == "present" and prs[prs["prior"] == "fc7"].iloc[0]["weights"] == "missing"
    assert "fetch conv3 pool5 fc7" in texts(at.code)
    assert "Demo priors" in texts(at.info)


def test_typed_class_names_pick_exactly_one_class(env):
    at = app("pages/run.py")
    at.text_input(key="run_classes").input("espresso").run()  # not also espresso maker (550)
    assert at.query_params["unit"] == "967" and not at.error
    at.text_input(key="run_classes").input("espresso, goldfish").run()
    assert at.query_params["unit"] == "967,1"
    at.text_input(key="run_classes").input("terrier").run()
    assert "fits" in texts(at.error) and "Border terrier (182)" in texts(at.error) and not at.button


def test_odd_settings_block_render_with_a_reason(env):
    at = app("pages/run.py")
    for steps in (0, 99999):  # the engine's range (limits.STEPS), in the engine's words
        at.number_input(key="run_steps").set_value(steps).run()
        assert "Steps must be a whole number between 1 and 10000" in texts(at.error)
        assert at.button(key="run_go").disabled and "Shown from" not in texts(at.caption)
    at.number_input(key="run_steps").set_value(3).run()
    for lr in (0.0, 1e9):
        at.number_input(key="run_lr").set_value(lr).run()
        assert "start learning rate must be" in texts(at.error) and at.button(key="run_go").disabled
    at.number_input(key="run_lr").set_value(0.004).run()
    assert not at.error and not at.button(key="run_go").disabled
    at.number_input(key="run_seed").set_value(2**32).run()  # before, the page took it and the run failed
    assert "Seed 4294967296 is out of range: use a whole number from 0 to 4294967295" in texts(at.error)
    assert at.button(key="run_go").disabled
    at.number_input(key="run_seed").set_value(2**32 - 1).run()
    assert not at.error and not at.button(key="run_go").disabled
    assert at.number_input(key="run_lr").value == 0.004 and at.number_input(key="run_lr").format == "%g"


def test_browse_unit_out_of_range_offers_no_render(env):
    at = app(model="efficientnet_lite0", layer="blocks.6", unit="500")
    assert "Unit 500 does not exist in blocks.6" in texts(at.error)
    assert not [b for b in at.button if b.key == "browse_go"]


def test_browse_shows_the_full_prior_run_over_pixel_and_preview(env, monkeypatch):
    """The best-version rule: a unit with a full fc6 run, a pixel-baseline run and a newer quick preview is shown
    (card and grid thumbnail) by its full fc6 run."""
    from dgnam_engine import accel

    from app import runs

    monkeypatch.setattr(accel, "PREVIEW_ITERS", 2)
    at = app("pages/run.py")
    at.text_input(key="run_classes").input("tench").run()
    at.button(key="run_go").click().run()  # the full run with the fc6 prior (3 steps)
    at.selectbox(key="run_prior").select("pixel").run()
    at.button(key="run_go").click().run()
    at.selectbox(key="run_prior").select("fc6").run()
    at.toggle(key="run_quick").set_value(True).run()
    at.button(key="run_go").click().run()  # the newest: a quick preview
    assert not at.exception and not at.error, texts(at.error)
    here = store().query(model="efficientnet_lite0", layer="classifier", unit=0)
    assert sorted((r.prior, r.settings["n_iters"]) for r in here) == [("fc6", 2), ("fc6", 3), ("pixel", 3)]
    assert max(here, key=lambda r: r.created).settings["n_iters"] == 2  # newest first would pick the preview
    # the grid's thumbnails are runs.best_per_unit of the layer's results
    [best] = [r for r in runs.best_per_unit(store().query(model="efficientnet_lite0", layer="classifier"))
              if r.unit == 0]
    assert (best.prior, best.settings["n_iters"]) == ("fc6", 3)
    browse = app(model="efficientnet_lite0", layer="classifier", unit="0")
    versions = browse.selectbox(key="browse_version_efficientnet_lite0_classifier_0")
    assert versions.value == best.key
    labels = versions.options
    assert sum("quick preview" in o for o in labels) == 1 and sum("full run" in o for o in labels) == 2


def test_presentation_mode_hides_settings_and_keeps_the_button(env):
    at = app("pages/run.py", present="1")
    assert [b for b in at.button if b.key == "present_exit"] and at.button(key="run_go")
    assert not at.expander and not [s for s in at.selectbox if s.key == "run_prior"]
    assert at.toggle(key="present_toggle").value
    at.text_input(key="run_classes").input("goldfish").run()
    assert at.query_params["present"] == "1" and at.query_params["unit"] == "1"  # the link keeps presenting
    at.button(key="present_exit").click().run()
    assert at.expander and at.selectbox(key="run_prior") and "present" not in at.query_params


def test_run_renders_a_stored_unit_live_again_or_with_a_new_seed(env):
    """Render on a stored unit was instant and silent; now the page says why and offers a live render: the same
    settings again (the new picture replaces the stored one under the same key once done) or the next seed."""
    at = app("pages/run.py")
    at.text_input(key="run_classes").input("daisy").run()
    at.button(key="run_go").click().run()
    [first] = store().query(unit=985)
    at.run()
    assert "Shown from stored results, so it was instant; render live to watch it form." in texts(at.caption)
    at.button(key="run_again").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert at.status[0].state == "complete"  # it really ran, with its progress
    [again] = store().query(unit=985)
    assert again.key == first.key and again.created > first.created
    at.button(key="run_newseed").click().run()
    assert sorted(r.seed for r in store().query(unit=985)) == [0, 1]
    assert any("daisy (985) · fc6 prior · seed 1" in c for i in at.image for c in i.captions)
    shown = app("pages/run.py", present="1", model="efficientnet_lite0", layer="classifier", unit="985")
    assert shown.button(key="run_newseed")  # presentation mode: no seed box, but a new seed is one click away


def test_a_units_picture_is_its_default_settings_one_and_the_atlas_stays(env, monkeypatch):
    """After Compare priors the newest render (the fc7-standing demo prior) no longer stands for the unit; among
    default-settings pictures the shipped atlas's comes first, so one visitor's render changes nothing for others;
    variants never stand for the unit and say what they are."""
    from dataclasses import replace

    from app import catalog, export, runs
    from dgnam_engine.store import StoredResult

    monkeypatch.setattr(catalog, "default_prior", lambda: "lite0-b3")
    base = StoredResult(key="k", model="efficientnet_lite0", weights_id="w", layer="classifier", unit=309,
                        label="bee", prior="lite0-b3", prior_kind="trained", seed=0, settings={"n_iters": 200},
                        activation_start=0.0, activation_final=9.0, activations=[9.0], seconds=1.0, device="cpu",
                        image_path=Path("x.png"), created=100.0)
    b3 = replace(base, key="b3")
    logits = replace(base, key="logits", prior="lite0-logits", created=200.0)
    assert runs.best_first([logits, b3])[0].key == "b3"
    atlas = replace(base, key="atlas", shipped=True, created=1.0)
    mine = replace(base, key="mine", created=300.0, device="cuda")  # the same settings, rendered by a visitor
    assert runs.best_first([mine, logits, atlas])[0].key == "atlas"
    photo = replace(base, key="photo", created=400.0, settings={"n_iters": 200, "init_image": "/x/coffee.png"})
    at_pos = replace(base, key="pos", layer="blocks.5", settings={"n_iters": 200, "position": [2, 5]})
    assert runs.best_first([photo, logits])[0].key == "logits"
    assert runs.variant_words(photo) == "from a photo (coffee.png)" and runs.variant_words(b3) == ""
    assert runs.variant_words(at_pos) == "at position 2,5"
    assert "_photo-coffee_" in export.file_name(photo) and "_at2-5_" in export.file_name(at_pos)
    assert "_atlas128_" in export.file_name(atlas) and "from a photo (coffee.png)" in runs.version_label(photo)


def test_grid_search_puts_the_exact_match_first_and_links_keep_the_search(env):
    from app import atlas_view

    names = {309: "bee", 92: "bee eater", 310: "ant"}
    ranks = {u: atlas_view.match_rank(f"{n} ({u})", u, "bee") for u, n in names.items()}
    assert ranks[309] == 0 < ranks[92]  # "bee" before "bee eater"
    at = app(model="efficientnet_lite0", layer="classifier")  # Browse opens on the grid, no card
    assert not at.subheader or "All of" not in at.subheader[0].value
    assert not [b for b in at.button if b.key == "browse_close"]
    at.text_input(key="browse_atlas_find").input("bee").run()
    grid = "".join(e.proto.body for e in at.get("html"))
    assert "q=bee" in grid  # a click on a picture reloads the page: its link carries the search
    again = app(model="efficientnet_lite0", layer="classifier", unit="309", q="bee")
    assert again.text_input(key="browse_atlas_find").value == "bee"
    hidden = app(model="efficientnet_lite0", layer="blocks.6")  # the same box opens a unit without a picture
    hidden.text_input(key="browse_atlas_find").input("17").run()
    assert "unit=17" in "".join(e.proto.body for e in hidden.get("html"))


def test_a_zip_carries_the_photo_a_picture_started_from(tmp_path):
    """results.json held a path on the server; the photo itself now travels in the ZIP, named in its entry."""
    from PIL import Image

    from app.export import zip_of
    from dgnam_engine.store import StoredResult

    coffee = Path(__import__("skimage").__file__).parent / "data" / "coffee.png"
    Image.new("RGB", (8, 8)).save(tmp_path / "r.png")
    r = StoredResult(key="abcdef0123", model="efficientnet_lite0", weights_id="w", layer="classifier", unit=1,
                     label="goldfish", prior="lite0-b3", prior_kind="trained", seed=0,
                     settings={"n_iters": 5, "init_image": str(coffee)}, activation_start=0.0, activation_final=1.0,
                     activations=[1.0], seconds=1.0, device="cpu", image_path=tmp_path / "r.png", created=1.0)
    with zipfile.ZipFile(io.BytesIO(zip_of([r]))) as z:
        [meta] = json.loads(z.read("results.json"))
        assert meta["start_photo"] == "start_coffee.png" and z.read("start_coffee.png") == coffee.read_bytes()
        assert "_photo-coffee_" in meta["image"] and z.read(meta["image"])[:4] == b"\x89PNG"


def test_setup_takes_a_file_i_have_and_adds_my_own_network_which_runs_by_class_name(env, tmp_path):
    """Issue 19 on the dashboard: Setup's "use a file I have" and "Add your own network", then Run renders the
    added network's unit by its class name."""
    import torchvision

    from dgnam_engine import user_networks
    from dgnam_engine.caffenet import caffenet

    scene = tmp_path / "places205 conversion.pth"
    torch.save(caffenet(205).state_dict(), scene)
    at = app("pages/setup.py")
    at.selectbox(key="setup_file_net").select("caffenet_places205")
    at.text_input(key="setup_file_path").input(str(scene))
    at.button[[b.label for b in at.button].index("Check and use this file")].click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert "caffenet_places205 now uses a copy of your file" in texts(at.success)
    models = at.table[0].value
    assert models[models["network"] == "caffenet_places205"].iloc[0]["weights"] == "present"

    mine = tmp_path / "pets.pth"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), mine)
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nzebra\n")
    at.text_input(key="setup_add_name").input("pets")
    at.text_input(key="setup_add_arch").input("torchvision:resnet18")
    at.text_input(key="setup_add_weights").input(str(tmp_path / "missing.pth"))
    at.button[[b.label for b in at.button].index("Check and add")].click().run()
    assert "file not found" in texts(at.error)  # one line, nothing added
    at.text_input(key="setup_add_weights").input(str(mine))
    at.text_input(key="setup_add_classes").input(str(names))
    at.button[[b.label for b in at.button].index("Check and add")].click().run()
    assert not at.error, texts(at.error)
    assert "Added pets" in texts(at.success)
    try:
        run = app("pages/run.py", model="pets", layer="fc", unit="0")
        run.text_input(key="run_classes_pets").input("zebra").run()
        assert run.query_params["unit"] == "2" and not run.error, texts(run.error)
        run.button(key="run_go").click().run()
        assert not run.exception and not run.error, texts(run.error)
        [r] = store().query(model="pets")
        assert r.label == "zebra" and r.unit == 2 and r.image_path.is_file()
    finally:
        user_networks.remove("pets")
