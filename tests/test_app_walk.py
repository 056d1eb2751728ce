"""Issue 30's walk-through of the dashboard, page by page through Streamlit's AppTest (the module's own weights
cache and results folder, as in test_app_pages): a new seed is always rendered live and the Seed box says it, a
live render leaves one picture and a line that tells the truth, a unit number written with other digits than 0-9
is refused in words, and captions never print -0.0."""
from __future__ import annotations

import os
from pathlib import Path

from test_app_pages import app, env, store, texts  # noqa: F401  (env: the module-scoped fixture)


def _render(at, seed: int):
    at.number_input(key="run_seed").set_value(seed).run()
    at.button(key="run_go").click().run()
    assert not at.exception and not at.error, texts(at.error)


def test_a_new_seed_renders_live_past_stored_seeds_and_the_seed_box_says_it(env):  # noqa: F811
    """Seeds 1 and 2 stored: "Render live with a new seed" showed seed 1 at once (no run), the Seed box kept saying
    0, and Render then used seed 1 silently. Now it renders seed 3 live and the box says 3."""
    at = app("pages/run.py")
    at.text_input(key="run_classes").input("daisy").run()
    for seed in (1, 2, 0):
        _render(at, seed)
    at.run()
    assert "Shown from stored results, so it was instant" in texts(at.caption)
    at.button(key="run_newseed").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert at.status and at.status[0].state == "complete"  # it really rendered, with its progress
    assert sorted(r.seed for r in store().query(unit=985)) == [0, 1, 2, 3]
    assert at.number_input(key="run_seed").value == 3  # the box says the seed of the picture
    assert any("daisy (985) · fc6 prior · seed 3" in c for i in at.image for c in i.captions)
    at.run()  # Render now means the picture shown: seed 3, stored, so shown at once
    assert at.number_input(key="run_seed").value == 3
    assert "Shown from stored results, so it was instant" in texts(at.caption)


def test_render_live_again_leaves_one_picture_and_a_line_that_tells_the_truth(env):  # noqa: F811
    """After "Render live again" the stored picture stayed beside the new one, captioned "stored, until the new one
    is done", and the line above still said it was shown from stored results."""
    at = app("pages/run.py")
    at.text_input(key="run_classes").input("goldfish").run()
    at.number_input(key="run_steps").set_value(12).run()  # long enough for previews (one every 5 steps)
    at.button(key="run_go").click().run()
    at.run()
    at.button(key="run_again").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert at.status and at.status[0].state == "complete"
    captions = [c for i in at.image for c in i.captions]
    assert not [c for c in captions if "stored" in c], captions
    assert "Shown from stored results" not in texts(at.caption)
    assert "Rendered live just now" in texts(at.caption)


def test_a_superscript_two_in_a_link_or_the_find_box_is_not_a_unit(env):  # noqa: F811
    """"²" passes str.isdigit and int() refuses it: Browse crashed on /?unit=² and on ² typed in "Find a unit"."""
    at = app(model="efficientnet_lite0", layer="blocks.6", unit="²")
    assert not at.exception
    assert "is not a number" in texts(at.error)
    grid = app(model="efficientnet_lite0", layer="blocks.6")
    grid.text_input(key="browse_atlas_find").input("²").run()
    assert not grid.exception and not [e for e in grid.error if "went wrong" in str(e.value)], texts(grid.error)


def test_captions_never_print_minus_zero(tmp_path):
    from app import cards
    from app.figures import fixed
    from dgnam_engine.store import StoredResult

    assert [fixed(-0.04), fixed(-0.0), fixed(-0.06), fixed(0.004, 2), fixed(-0.004, 2)] == \
        ["0.0", "0.0", "-0.1", "0.00", "0.00"]
    r = StoredResult(key="k", model="efficientnet_lite0", weights_id="w", layer="classifier", unit=1,
                     label="goldfish", prior="fc6", prior_kind="original", seed=0, settings={"n_iters": 3},
                     activation_start=-0.004, activation_final=2.0, activations=[2.0], seconds=1.0, device="cpu",
                     image_path=Path(tmp_path / "x.png"), created=1.0)
    assert "activation 0.0 → 2.0" in cards.caption(r)
    assert {"setting": "activation", "value": "0.00 → 2.00"} in cards._settings_rows(r)


def test_compare_models_says_what_is_there_and_why_added_networks_are_not_compared(env, tmp_path):  # noqa: F811
    """It said "only one network" with two added networks on the machine."""
    import torch
    import torchvision

    from dgnam_engine import network_files, user_networks

    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), weights)
    try:
        for name in ("pets", "birds"):
            network_files.add(name, "torchvision:resnet18", weights)
        at = app("pages/models.py")
        line = texts(at.info)
        assert "Only one network is on this machine" not in line, line
        assert "one ImageNet network (EfficientNet-Lite0)" in line and "classes of their own" in line, line
        assert "pets" in line and "birds" in line, line
    finally:
        for name in ("pets", "birds"):
            if user_networks.get(name) is not None:
                user_networks.remove(name)


def test_paths_are_named_from_known_folders_in_a_zip_and_on_pages(env, tmp_path):  # noqa: F811
    """Setup, the real-photos block and the Gallery ZIP's results.json showed the server's absolute paths."""
    import io
    import json
    import zipfile

    from PIL import Image

    from app import paths
    from app.export import zip_of
    from dgnam_engine.store import StoredResult, default_root

    assert paths.shown(default_root() / "photos" / "a.jpg") == "<data folder>/photos/a.jpg"
    assert paths.shown(Path.home() / "Downloads" / "pets.pth") == "~/Downloads/pets.pth"
    assert paths.shown_in(f"{default_root()}/x.pt (or the Hugging Face cache)") == \
        "<data folder>/x.pt (or the Hugging Face cache)"
    coffee = Path(__import__("skimage").__file__).parent / "data" / "coffee.png"
    Image.new("RGB", (8, 8)).save(tmp_path / "r.png")
    r = StoredResult(key="abcdef0123", model="efficientnet_lite0", weights_id="w", layer="classifier", unit=1,
                     label="goldfish", prior="lite0-b3", prior_kind="trained", seed=0,
                     settings={"n_iters": 5, "init_image": str(coffee)}, activation_start=0.0, activation_final=1.0,
                     activations=[1.0], seconds=1.0, device="cpu", image_path=tmp_path / "r.png", created=1.0)
    with zipfile.ZipFile(io.BytesIO(zip_of([r]))) as z:
        text = z.read("results.json").decode()
    [meta] = json.loads(text)
    assert meta["settings"]["init_image"] == "<python packages>/skimage/data/coffee.png"
    assert str(coffee.parent) not in text
    at = app("pages/setup.py")
    table = " ".join(" ".join(map(str, t.value["file"])) for t in at.table)
    assert os.environ["TORCH_HOME"] not in table and "<torch cache>/hub/checkpoints/" in table, table
