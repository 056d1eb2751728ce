"""Networks trained on scenes (MIT Places) and networks a user brings (issue 19): the scene targets by class name,
their files in each published layout, getting them (a local server standing in for the Places hosts, or a file
the user has), and `models add` / `models remove`."""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import struct
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torchvision

from dgnam_engine import class_lists, cli, user_networks
from dgnam_engine import targets as T
from dgnam_engine import weights as W
from dgnam_engine.caffenet import caffenet
from httpserver import FileServer

ROOT = Path(__file__).resolve().parent.parent
SCENES = ["caffenet_places365", "alexnet_places365", "resnet18_places365", "resnet50_places365", "caffenet_places205"]


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _last_json(out: str):
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture()
def torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture()
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


# ----- class names -----

def test_scene_class_lists_name_the_papers_units():
    p365, p205 = class_lists.places365(), class_lists.places205()
    assert len(p365) == 365 and len(p205) == 205
    # the paper's script-2 units by name, in both lists (so a recipe moves between them by name)
    for name, i205, i365 in [("alley", 2, 4), ("arch", 7, 12), ("art_gallery", 8, 19), ("auditorium", 12, 27),
                             ("doorway/outdoor", 71, 123)]:
        assert (class_lists.find(p205, name), class_lists.find(p365, name)) == (i205, i365)
    assert class_lists.find(p365, "Art Gallery") == 19  # case, spaces and underscores aside


def test_models_lists_the_scene_targets_with_their_input_convention(capsys):
    code, out, _ = _cli(capsys, "models", "--json")
    by = {r["name"]: r for r in _last_json(out)}
    assert code == 0 and set(SCENES) <= set(by)
    assert by["caffenet_places365"]["convention"] == {
        "size": 227, "colour_order": "RGB", "scale": "0-1", "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225], "text": by["caffenet_places365"]["input"]}
    assert by["caffenet_places205"]["convention"]["colour_order"] == "BGR"
    assert by["caffenet_places205"]["convention"]["mean"] == [104.0, 117.0, 123.0]
    assert by["resnet18_places365"]["convention"]["size"] == 224 and by["resnet18_places365"]["dataset"] == "Places365"
    assert not by["caffenet_places205"]["available"]
    assert by["caffenet_places205"]["fetch"] == "python -m dgnam_engine fetch caffenet_places205 --from FILE"
    assert by["resnet18_places365"]["fetch"] == "python -m dgnam_engine fetch resnet18_places365"


def test_layers_shows_the_input_convention_and_classes(capsys):
    code, out, _ = _cli(capsys, "layers", "caffenet_places205", "--json")
    d = _last_json(out)
    assert code == 0 and d["classes"] == 205 and d["input"]["colour_order"] == "BGR" and d["input"]["size"] == 227
    assert [r["units"] for r in d["layers"] if r["output"]] == [205]


@pytest.mark.parametrize("model,unit,label", [("caffenet_places365", "alley", "alley"),
                                              ("alexnet_places365", "art_gallery", "art_gallery"),
                                              ("resnet18_places365", "doorway/outdoor", "doorway/outdoor"),
                                              ("resnet50_places365", "arch", "arch"),
                                              ("caffenet_places205", "auditorium", "auditorium")])
def test_visualize_a_scene_unit_by_name(capsys, tmp_path, model, unit, label):
    out = tmp_path / "x.png"
    code, stdout, err = _cli(capsys, "visualize", "--model", model, "--random-weights", "--unit", unit, "--iters", 3,
                             "--prior", "lite0-b3", "--out", out, "--json", "--quiet")
    assert code == 0, err
    d = _last_json(stdout)
    want = class_lists.find(class_lists.places205() if model.endswith("205") else class_lists.places365(), unit)
    assert (d["label"], d["unit"], d["model"]) == (label, want, model) and out.is_file()


def test_visualize_alley_from_the_command_line(tmp_path):
    """The issue's own command, as a separate process."""
    out = tmp_path / "alley.png"
    p = subprocess.run([sys.executable, "-m", "dgnam_engine", "visualize", "--model", "caffenet_places365",
                        "--random-weights", "--unit", "alley", "--iters", "3", "--out", str(out), "--json",
                        "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert _last_json(p.stdout)["label"] == "alley" and out.is_file()


def test_an_unknown_class_name_is_one_line(capsys, tmp_path):
    code, _, err = _cli(capsys, "visualize", "--model", "caffenet_places365", "--random-weights", "--unit",
                        "allee", "--out", tmp_path / "x.png")
    assert code == 2 and err.count("\n") == 1 and "no class named 'allee'" in err
    assert not (tmp_path / "x.png").exists()


def test_an_objective_names_scene_classes(tmp_path):
    from dgnam_engine.request import Request, Settings, resolve

    r = resolve(Request("caffenet_places205", [0], settings=Settings(objective="alley + 0.5*doorway/outdoor",
                                                                        n_iters=3), random_weights=True))
    assert [(t.unit, t.weight) for t in r.terms] == [(2, 1.0), (71, 0.5)]


# ----- the published layouts -----

class _Py2Pickler(pickle._Pickler):
    """Writes each str as Python 2 wrote its str: raw bytes (SHORT_BINSTRING), here latin1."""

    def save_str(self, obj):
        b = obj.encode("latin1")
        self.write(pickle.SHORT_BINSTRING + bytes([len(b)]) + b if len(b) < 256 else
                   pickle.BINSTRING + struct.pack("<i", len(b)) + b)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[str] = save_str


def _save_py2(obj, path: Path) -> None:
    mod = types.SimpleNamespace(Pickler=_Py2Pickler, dump=lambda o, f, protocol=2: _Py2Pickler(f, protocol).dump(o),
                                __name__="py2pickle")
    torch.save(obj, str(path), pickle_module=mod, pickle_protocol=2, _use_new_zipfile_serialization=False)


def _official(sd: dict, arch: str) -> dict:
    return {"epoch": 90, "arch": arch, "state_dict": sd, "best_prec1": 53.2}


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights with batch-norm statistics that are not the defaults, so a lost buffer shows."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t) * 0.05)
    return model.eval()


def _layouts():
    """(case, target, build the network, write the file from its state dict)."""
    def dissect(sd, path):  # the GAN-dissection conversion: a bare state dict of the named Sequential
        torch.save(sd, path)

    def official_alexnet(sd, path):  # DataParallel around `features` only
        torch.save(_official({(k.replace("features.", "features.module.", 1)): v for k, v in sd.items()},
                             "alexnet"), path)

    def official_resnet_legacy(sd, path):  # DataParallel around the whole model, the legacy (non-zip) format
        torch.save(_official({f"module.{k}": v for k, v in sd.items()}, "resnet18"), path,
                   _use_new_zipfile_serialization=False)

    def official_resnet_py2(sd, path):  # ... saved by Python 2.7, with a str that is not UTF-8
        obj = _official({f"module.{k}": v for k, v in sd.items()}, "resnet18")
        obj["note"] = "trained on Places365 \xe9t\xe9"
        _save_py2(obj, path)

    tv = torchvision.models
    return [("dissect", "caffenet_places365", lambda: caffenet(365), dissect),
            ("official-alexnet", "alexnet_places365", lambda: tv.alexnet(num_classes=365), official_alexnet),
            ("official-legacy", "resnet18_places365", lambda: tv.resnet18(num_classes=365), official_resnet_legacy),
            ("official-python2", "resnet18_places365", lambda: tv.resnet18(num_classes=365), official_resnet_py2)]


@pytest.mark.parametrize("case,model,build,write", _layouts(), ids=[c[0] for c in _layouts()])
def test_published_layouts_give_the_same_network(tmp_path, torch_home, case, model, build, write):
    direct = _randomised(build())
    name = T.get_spec(model).weights.filename
    torch_home.mkdir(parents=True)
    write(direct.state_dict(), torch_home / name)  # where a download puts it, under the published name
    if case == "official-python2":
        with pytest.raises(UnicodeDecodeError):  # what a plain torch.load says of such a file
            torch.load(torch_home / name, weights_only=True)
    tgt = T.load_target(model, "cpu")
    assert tgt.weights_path == str(torch_home / name)
    x = torch.randn(2, 3, tgt.spec.input_size, tgt.spec.input_size)
    with torch.no_grad():
        assert torch.equal(tgt.model(x), direct(x))


def test_module_prefix_rule_only_renames_into_the_models_names():
    own = ["features.0.weight", "classifier.1.weight"]
    sd = {"features.module.0.weight": 1, "classifier.1.weight": 2, "module.extra.weight": 3}
    assert W.normalise_keys(sd, own) == {"features.0.weight": 1, "classifier.1.weight": 2, "module.extra.weight": 3}


# ----- getting them: a stand-in for the Places hosts, or a file the user has -----

@pytest.fixture()
def places_server(monkeypatch):
    import huggingface_hub.constants as hfc

    with FileServer() as s:
        monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", False)  # downloads allowed (read once at import otherwise)
        monkeypatch.setenv("DGNAM_PLACES_MIRROR", s.url)
        yield s


def _resnet18_official_bytes(tmp_path) -> tuple[bytes, torch.nn.Module]:
    direct = _randomised(torchvision.models.resnet18(num_classes=365))
    p = tmp_path / "official.pth.tar"
    torch.save(_official({f"module.{k}": v for k, v in direct.state_dict().items()}, "resnet18"), p)
    return p.read_bytes(), direct


def test_fetch_downloads_from_the_places_host(capsys, tmp_path, torch_home, places_server):
    body, direct = _resnet18_official_bytes(tmp_path)
    places_server.serve("/models_places365/resnet18_places365.pth.tar", body)
    code, out, err = _cli(capsys, "fetch", "resnet18_places365")
    assert code == 0, err
    assert "GET /models_places365/resnet18_places365.pth.tar" in places_server.requests
    assert (torch_home / "resnet18_places365.pth.tar").read_bytes() == body
    code, out, _ = _cli(capsys, "models", "--json")
    assert {r["name"]: r for r in _last_json(out)}["resnet18_places365"]["available"]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(T.load_target("resnet18_places365").model(x), direct(x))


def test_fetch_checks_the_hash_prefix_in_the_name(capsys, torch_home, places_server):
    """The dissect file's name carries its sha256 prefix: a file that does not match it is refused, nothing kept."""
    places_server.serve("/models/alexnet_places365-92864cf6.pth", b"not the published file" * 1000)
    code, _, err = _cli(capsys, "fetch", "caffenet_places365")
    assert code == 2 and err.count("\n") == 1 and "92864cf6" in err and "damaged" in err
    assert not torch_home.exists() or list(torch_home.iterdir()) == []


def test_fetch_when_the_host_is_down_is_one_line(capsys, torch_home, places_server):
    code, _, err = _cli(capsys, "fetch", "alexnet_places365")  # nothing served: 404
    assert code == 2 and err.count("\n") == 1 and "HTTP 404" in err


def test_fetch_offline_says_so_in_one_line(capsys, torch_home):
    code, _, err = _cli(capsys, "fetch", "resnet18_places365")
    assert code == 2 and err.count("\n") == 1 and "downloads are off" in err


def test_fetch_from_a_file_checks_it_and_copies_it(capsys, tmp_path, torch_home):
    direct = _randomised(caffenet(205))
    mine = tmp_path / "my conversion.pth"
    torch.save({"state_dict": direct.state_dict()}, mine)
    before = (mine.read_bytes(), mine.stat().st_mtime_ns)
    code, out, err = _cli(capsys, "fetch", "caffenet_places205", "--from", mine)
    assert code == 0, err
    placed = torch_home / "caffenet_places205.pth"
    assert out.strip() == f"caffenet_places205: {placed}" and placed.read_bytes() == before[0]
    assert (mine.read_bytes(), mine.stat().st_mtime_ns) == before  # the user's file: still there, untouched
    x = torch.randn(1, 3, 227, 227)
    with torch.no_grad():
        assert torch.equal(T.load_target("caffenet_places205").model(x), direct(x))


def test_fetch_from_a_file_that_does_not_fit_is_refused(capsys, tmp_path, torch_home):
    wrong = tmp_path / "imagenet_caffenet.pth"
    torch.save(caffenet(1000).state_dict(), wrong)
    code, _, err = _cli(capsys, "fetch", "caffenet_places365", "--from", wrong)
    assert code == 2 and err.count("\n") == 1
    assert "the file has 1000 classes, the network 365" in err
    assert not torch_home.exists() or list(torch_home.iterdir()) == []


# ----- a network of the user's own -----

@pytest.fixture()
def ten_classes(tmp_path) -> tuple[Path, Path, torch.nn.Module]:
    model = _randomised(torchvision.models.resnet18(num_classes=10))
    weights = tmp_path / "mine.pth"
    torch.save(model.state_dict(), weights)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(["cat", "dog", "tabby cat", "horse", "zebra", "ship", "truck", "bird", "frog",
                                "deer"]) + "\n")
    return weights, names, model


def test_models_add_then_visualize_by_class_name_then_remove(capsys, tmp_path, data_dir, ten_classes):
    weights, names, model = ten_classes
    before = weights.read_bytes()
    code, out, err = _cli(capsys, "models", "add", "pets", "--arch", "torchvision:resnet18", "--weights", weights,
                          "--classes", names, "--json")
    assert code == 0, err
    assert weights.read_bytes() == before  # copied, not moved
    code, out, _ = _cli(capsys, "models", "--json")
    row = {r["name"]: r for r in _last_json(out)}["pets"]
    assert row["available"] and row["convention"]["size"] == 224 and row["dataset"] == "added"
    png = tmp_path / "zebra.png"
    code, out, err = _cli(capsys, "visualize", "--model", "pets", "--unit", "zebra", "--iters", 3, "--prior",
                          "lite0-b3", "--out", png, "--json", "--quiet")
    assert code == 0, err
    d = _last_json(out)
    assert (d["label"], d["unit"], d["layer"]) == ("zebra", 4, "fc") and png.is_file()
    assert d["weights"] == str(data_dir / "networks" / "pets" / "weights.pth")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(T.load_target("pets").model(x), model(x))  # the weights of the user's file
    # the pixel baseline and the layer list work on it too
    code, out, _ = _cli(capsys, "layers", "pets", "--json")
    assert [r["name"] for r in _last_json(out)["layers"]][-1] == "fc" and _last_json(out)["classes"] == 10
    code, out, err = _cli(capsys, "models", "remove", "pets")
    assert code == 0 and not (data_dir / "networks" / "pets").exists() and weights.read_bytes() == before
    code, out, _ = _cli(capsys, "models", "--json")
    assert "pets" not in {r["name"] for r in _last_json(out)}


@pytest.mark.parametrize("case", ["classes", "shape", "missing", "keys", "names"])
def test_models_add_refuses_a_file_that_does_not_fit_in_one_line(capsys, tmp_path, data_dir, ten_classes, case):
    weights, names, _ = ten_classes
    args = ["models", "add", "pets", "--arch", "torchvision:resnet18", "--weights", weights]
    if case == "classes":  # names of 10, a file of 1000 classes
        big = tmp_path / "big.pth"
        torch.save(torchvision.models.resnet18().state_dict(), big)
        args[-1], want = big, "the file has 1000 classes, the network 10 (fc.weight)"
        args += ["--classes", names]
    elif case == "shape":
        sd = torch.load(weights)
        sd["conv1.weight"] = torch.zeros(64, 3, 5, 5)
        odd = tmp_path / "odd.pth"
        torch.save(sd, odd)
        args[-1], want = odd, "conv1.weight has shape 64x3x5x5 in the file, 64x3x7x7 in the network"
    elif case == "missing":
        args[4], want = "torchvision:resnet34", "the file lacks layer1.2.conv1.weight (and"
    elif case == "keys":
        sd = torch.load(weights)
        sd["extra.weight"] = torch.zeros(1)
        odd = tmp_path / "odd.pth"
        torch.save(sd, odd)
        args[-1], want = odd, "unexpected key extra.weight"
    else:
        short = tmp_path / "short.txt"
        short.write_text("cat\ndog\n")
        args += ["--classes", short, "--num-classes", "10"]
        want = "the class names file has 2 names, the network 10 classes"
    code, _, err = _cli(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and want in err, err
    assert not (data_dir / "networks" / "pets").exists()


def test_a_damaged_entry_is_skipped_with_a_warning(capsys, caplog, data_dir, ten_classes):
    weights, names, _ = ten_classes
    assert _cli(capsys, "models", "add", "pets", "--arch", "torchvision:resnet18", "--weights", weights)[0] == 0
    bad = data_dir / "networks" / "broken"
    bad.mkdir()
    (bad / "network.json").write_text('{"name": "broken", "arch": "torchvision:resnet18", "num_cl')
    code, out, _ = _cli(capsys, "models", "--json")
    names_listed = {r["name"] for r in _last_json(out)}
    assert code == 0 and "pets" in names_listed and "broken" not in names_listed
    assert any("skipping the added network" in r.getMessage() and "broken" in r.getMessage() for r in caplog.records)


# ----- the paper's Places runs -----

def test_places_runs_on_whichever_scene_network_is_here(capsys, tmp_path, torch_home):
    """Only ResNet-18-Places365 is here: the paper's Places205 scene units run on it by name (its own numbers);
    it has no conv5, so that run is the CaffeNet family's."""
    from dgnam_engine import places_runs

    torch_home.mkdir(parents=True)
    torch.save(_randomised(torchvision.models.resnet18(num_classes=365)).state_dict(),
               torch_home / "resnet18_places365.pth.tar")
    code, out, err = _cli(capsys, "places", "--iters", 2, "--prior", "lite0-b3", "--out", tmp_path / "p", "--json")
    assert code == 0, err
    rows = _last_json(out)
    assert [(r["model"], r["unit"], r["label"]) for r in rows] == [
        ("resnet18_places365", 4, "alley"), ("resnet18_places365", 12, "arch"),
        ("resnet18_places365", 19, "art_gallery"), ("resnet18_places365", 27, "auditorium"),
        ("resnet18_places365", 123, "doorway/outdoor")]
    assert all(Path(r["image"]).is_file() for r in rows)
    scenes, conv5 = places_runs.runs_for("caffenet_places205")
    assert scenes.units == (2, 7, 8, 12, 71)  # the paper's own numbers on the paper's own network
    assert (conv5.layer, conv5.units, conv5.position) == ("conv5", (8, 55, 154, 181, 45), (6, 6))


def test_places_runs_without_a_scene_network_say_how_to_get_one(capsys, tmp_path, torch_home):
    code, _, err = _cli(capsys, "places", "--out", tmp_path / "p")
    assert code == 2 and err.count("\n") == 1 and "fetch resnet18_places365" in err
    assert not (tmp_path / "p").exists()


def test_a_conversion_of_my_own_never_passes_for_the_hash_named_file(capsys, tmp_path, torch_home):
    """The dissect file's name carries its sha256 prefix; a user's own conversion is kept under the network's name,
    so the cache's hash check stays true and `fetch` finds it sound."""
    direct = _randomised(caffenet(365))
    mine = tmp_path / "converted.pth"
    torch.save(direct.state_dict(), mine)
    code, out, err = _cli(capsys, "fetch", "caffenet_places365", "--from", mine)
    assert code == 0, err
    assert sorted(p.name for p in torch_home.iterdir()) == ["caffenet_places365.pth"]
    code, out, err = _cli(capsys, "fetch", "caffenet_places365")  # offline: nothing to download, found sound
    assert code == 0 and out.strip() == f"caffenet_places365: {torch_home / 'caffenet_places365.pth'}", err
    x = torch.randn(1, 3, 227, 227)
    with torch.no_grad():
        assert torch.equal(T.load_target("caffenet_places365").model(x), direct(x))


def test_the_papers_places_recipe_runs_on_the_scene_network_here(torch_home):
    """recipes.py's script 2: on the paper's own network when it is here, else a Places365 network with the same
    scenes found by name; script 4's conv5 units on a CaffeNet-layout scene network."""
    from dgnam_engine import recipes as R

    torch_home.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(num_classes=365).state_dict(), torch_home / "resnet18_places365.pth.tar")
    p = R.plan("places-scenes", materialise=False)
    assert (p.model, p.layer, p.units) == ("resnet18_places365", "fc", [4, 12, 19, 27, 123])
    assert "the same scenes by name in Places365" in p.note()
    torch.save(caffenet(205).state_dict(), torch_home / "caffenet_places205.pth")
    p = R.plan("places-scenes", materialise=False)
    assert (p.model, p.layer, p.units) == ("caffenet_places205", "fc8", [2, 7, 8, 12, 71])
    assert not any("target" in d for d in p.differs)
    hidden = R.plan("conv5-hidden", materialise=False)
    assert (hidden.model, hidden.layer, hidden.xy) == ("caffenet_places205", "conv5", (6, 6))


def test_the_paper_page_rq2_runs_on_a_scene_network_once_its_weights_are_here(capsys, tmp_path, torch_home,
                                                                                 data_dir):
    """RQ2 renders the original script's five scene units by name on the scene network present, with the prior."""
    from dgnam_engine import paper

    direct = _randomised(torchvision.models.resnet18(num_classes=365))
    mine = tmp_path / "resnet18_places365.pth"
    torch.save(direct.state_dict(), mine)
    code, _, err = _cli(capsys, "fetch", "resnet18_places365", "--from", mine)
    assert code == 0, err
    out, pics = paper.rq2(paper.Context([1, 2], steps=2, model="efficientnet_lite0", prior="lite0-b3"))
    names = T.get_spec("resnet18_places365").classes()
    assert out["ran"] is True and out["target"] == "resnet18_places365"
    assert [names[u] for u in out["units"].values()][:2] == ["alley", "arch"] and len(pics) == 5
    assert len(out["activation_final"]) == 5 and all(im.shape[2] == 3 for _, im in pics)
