"""Weight files: where they are found, how they are loaded, and how they are downloaded (against a real local
HTTP server)."""
from __future__ import annotations

import hashlib
import os
import random
import warnings
from pathlib import Path

import pytest
import torch

from dgnam_engine import generators, priors, weights as W
from dgnam_engine.errors import UserError, WeightsCorrupt, WeightsMissing
from factories import current_umask
from httpserver import FileServer

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: more than one read chunk


@pytest.fixture()
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME of this test's own (torch.hub reads the variable on every call)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def server():
    with FileServer() as s:
        yield s


def _one_line(msg: str) -> None:
    assert msg and "\n" not in msg and "Traceback" not in msg


# ----- finding -----

def test_checkpoints_dir_follows_torch_home(torch_home):
    assert W.checkpoints_dir() == torch_home


def test_explicit_file_wins_and_missing_one_is_named(tmp_path, torch_home):
    wf = W.WeightFile("thing.pt", "thing", url="https://download.pytorch.org/models/thing.pt")
    f = tmp_path / "mine.pt"
    f.write_bytes(b"x")
    torch_home.mkdir(parents=True)
    (torch_home / "thing.pt").write_bytes(b"y")
    assert W.resolve(wf, "model thing", str(f)) == f
    with pytest.raises(WeightsMissing) as e:
        W.resolve(wf, "model thing", str(tmp_path / "nope.pt"))
    assert "nope.pt" in str(e.value)
    _one_line(str(e.value))


def test_found_in_torch_hub_checkpoints(torch_home):
    wf = W.WeightFile("thing.pt", "thing", url="https://download.pytorch.org/models/thing.pt")
    assert W.find(wf) is None
    with pytest.raises(WeightsMissing) as e:
        W.resolve(wf, "model thing")
    msg = str(e.value)
    _one_line(msg)
    assert "thing.pt" in msg and str(torch_home) in msg and "fetch thing" in msg
    torch_home.mkdir(parents=True)
    (torch_home / "thing.pt").write_bytes(b"y")
    assert W.find(wf) == torch_home / "thing.pt"
    assert W.resolve(wf, "model thing") == torch_home / "thing.pt"


def _hf_cache(root: Path, repo: str, filename: str, source: Path, rev: str = "0123456789abcdef") -> Path:
    """The layout huggingface_hub writes: blobs/<etag>, snapshots/<rev>/<file> -> blob (symlink), refs/main."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    (repo_dir / "blobs").mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "snapshots" / rev).mkdir(parents=True)
    blob = repo_dir / "blobs" / "e3b0c44298fc1c149afbf4c8996fb924"
    os.link(source, blob)  # same bytes without copying 224 MB
    (repo_dir / "snapshots" / rev / filename).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    (repo_dir / "refs" / "main").write_text(rev)  # no newline, like huggingface_hub
    return repo_dir / "snapshots" / rev / filename


def test_original_prior_found_in_hugging_face_cache(tmp_path, torch_home, monkeypatch, fc6_file):
    import huggingface_hub.constants as hfc

    # huggingface_hub fixes its cache folder when first imported, so point it at this test's folder directly.
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(cache))
    spec = priors.ORIGINAL_PRIORS["fc6"]
    assert not priors.is_available(spec)
    snap = _hf_cache(cache, priors.HF_DEEPSIM, "upconvGAN_fc6.pt", fc6_file)
    assert priors.is_available(spec)
    assert W.find(spec.weights) == snap
    assert priors.default_prior_name() == "fc6"
    pr = priors.load_prior("fc6")
    assert pr.path == str(snap)
    saved = torch.load(fc6_file, weights_only=True)
    assert torch.equal(pr.generator.state_dict()["defc7.weight"], saved["defc7.weight"])
    assert pr.upper.shape == (4096,) and float(pr.lower.abs().max()) == 0.0


# ----- loading -----

def _small_state_dict() -> dict:
    torch.manual_seed(0)
    return {"a.weight": torch.randn(4, 3), "a.bias": torch.randn(4)}


def test_load_state_dict_pt_safetensors_and_wrapped(tmp_path):
    from safetensors.torch import save_file

    sd = _small_state_dict()
    torch.save(sd, tmp_path / "w.pt")
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "wrapped.pth")
    for name in ("w.pt", "w.safetensors", "wrapped.pth"):
        got = W.load_state_dict(tmp_path / name)
        assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)


class _Payload:
    """Unpickling this would create a file: loading must never get that far."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _corrupt_files(tmp_path: Path) -> dict[str, Path]:
    torch.save(_small_state_dict(), tmp_path / "good.pt")
    good = (tmp_path / "good.pt").read_bytes()
    files = {
        "random.pt": random.Random(1).randbytes(4096),
        # a pickle header naming protocol 154: torch warns on stderr before failing (a CI run caught this)
        "pickle-header.pth": b"\x80\x9a" + random.Random(7).randbytes(4096),
        "truncated.pt": good[:len(good) // 2],
        "empty.pth": b"",
        "random.safetensors": random.Random(2).randbytes(4096),
    }
    out = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        out[name] = tmp_path / name
    torch.save({"w": _Payload(str(tmp_path / "pwned"))}, tmp_path / "code.pt")
    out["code.pt"] = tmp_path / "code.pt"
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    out["tensor.pt"] = tmp_path / "tensor.pt"
    return out


def test_bad_files_give_one_line_and_run_no_code(tmp_path):
    reasons = {}
    for name, path in _corrupt_files(tmp_path).items():
        with pytest.raises(WeightsCorrupt) as e, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            W.load_state_dict(path)
        assert not caught, (name, [str(w.message) for w in caught])
        _one_line(str(e.value))
        assert name in str(e.value), name
        reasons[name] = str(e.value).partition(" is not a readable weights file: ")[2]
    assert not (tmp_path / "pwned").exists()
    # the reason in words a user can act on, not torch's paragraph about pickle options
    assert reasons["empty.pth"] == "the file is empty"
    assert reasons["code.pt"].startswith("it stores Python objects, not only tensors")
    for name in ("random.pt", "pickle-header.pth", "truncated.pt"):
        assert reasons[name] == "not a PyTorch (.pt/.pth) checkpoint, or the file is damaged or cut short", name
    assert reasons["random.safetensors"].startswith("not a safetensors checkpoint")
    assert reasons["tensor.pt"] == ""  # it parses: the next check says it "does not hold a state dict of tensors"


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(WeightsCorrupt) as e:
        W.load_state_dict(tmp_path / "gone.pth")
    assert str(e.value) == f"{tmp_path / 'gone.pth'} is not a readable weights file: no such file"


def _respell(sd: dict, how: str) -> dict:
    if how == "plain":
        return dict(sd)
    if how == "G.":
        return {"G." + k: v for k, v in sd.items()}
    layer, _, param = zip(*(k.rpartition(".") for k in sd))
    return {f"{lay}.1.{p}": v for lay, p, v in zip(layer, param, sd.values())}  # e.g. Rconv6.1.weight


@pytest.fixture(scope="module")
def conv3_state_dict() -> dict:
    torch.manual_seed(1)
    return generators.upconv_conv34().state_dict()


@pytest.mark.parametrize("how", ["plain", "G.", ".1."])
def test_generator_key_spellings_load(tmp_path, conv3_state_dict, how):
    f = tmp_path / f"upconvGAN_conv3_{how.strip('.')}.pt"
    torch.save(_respell(conv3_state_dict, how), f)
    pr = priors.load_prior("conv3", str(f))
    got = pr.generator.state_dict()
    assert set(got) == set(conv3_state_dict)
    assert all(torch.equal(got[k], conv3_state_dict[k]) for k in got)
    assert pr.upper.shape == (384, 13, 13) and pr.path == str(f)


def test_wrong_architecture_is_one_line(tmp_path, conv3_state_dict):
    f = tmp_path / "conv3_as_fc7.pt"
    torch.save(conv3_state_dict, f)
    with pytest.raises(WeightsCorrupt) as e:
        priors.load_prior("fc7", str(f))
    _one_line(str(e.value))
    assert "conv3_as_fc7.pt" in str(e.value)


# ----- downloading -----

def test_download_urls_follow_the_mirrors(monkeypatch):
    hf = priors.ORIGINAL_PRIORS["fc6"].weights
    tv = W.WeightFile("alexnet-owt-7be5be79.pth", "alexnet",
                      url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth")
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("DGNAM_TORCH_MIRROR", raising=False)
    assert hf.download_url() == ("https://huggingface.co/binxu/DeePSim_DosovitskiyBrox2016/resolve/main/"
                                 "upconvGAN_fc6.pt")
    assert tv.download_url() == tv.url
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/")
    monkeypatch.setenv("DGNAM_TORCH_MIRROR", "http://127.0.0.1:9/mirror/")
    assert hf.download_url() == "http://127.0.0.1:9/binxu/DeePSim_DosovitskiyBrox2016/resolve/main/upconvGAN_fc6.pt"
    assert tv.download_url() == "http://127.0.0.1:9/mirror/models/alexnet-owt-7be5be79.pth"


@pytest.fixture()
def online(tmp_path, monkeypatch, server):
    """Downloads allowed, the Hub and the torch host served by the local server, and an empty HF cache of this
    test's own. huggingface_hub reads HF_HUB_OFFLINE and its cache folder once, at import (test.sh sets
    HF_HUB_OFFLINE=1), so the test sets its constants directly."""
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("DGNAM_TORCH_MIRROR", server.url)
    return tmp_path / "hf" / "hub"


def _files_under(folder: Path) -> list[str]:
    """Every file of weights, whole or partial, left under `folder`: not the Hub client's bookkeeping (lock
    files, CACHEDIR.TAG, refs/main naming the commit it asked about), which it keeps by design."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and not p.name.endswith(".lock")
                  and p.name != "CACHEDIR.TAG" and "refs" not in p.relative_to(folder).parts)


def _tv_file(server, name: str, body: bytes = PAYLOAD, **kw) -> W.WeightFile:
    """A torch-host file whose name carries the sha256 prefix of `body`, as torchvision's do."""
    fname = f"{name}-{hashlib.sha256(body).hexdigest()[:8]}.pth"
    server.serve(f"/models/{fname}", body, **kw)
    return W.WeightFile(fname, name, url=f"https://download.pytorch.org/models/{fname}")


def _hub_file(server, name: str, body: bytes = PAYLOAD, **kw) -> W.WeightFile:
    server.serve_hub("someone/weights", f"{name}.pt", body, **kw)
    return W.WeightFile(f"{name}.pt", name, hf_repo="someone/weights", hf_filename=f"{name}.pt")


def test_hub_file_lands_in_the_hugging_face_cache_where_find_looks(server, online, torch_home):
    wf = _hub_file(server, "hubok")
    seen = []
    path = W.fetch(wf, progress=lambda got, total: seen.append((got, total)))
    assert path.read_bytes() == PAYLOAD
    assert online in path.parents and "snapshots" in path.parts  # the standard cache every tool reads
    assert W.find(wf) == path
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert "GET /someone/weights/resolve/main/hubok.pt" in server.requests
    n = len(server.requests)
    assert W.fetch(wf) == path and len(server.requests) == n  # already there: no second download
    assert not torch_home.exists() or _files_under(torch_home) == []


def test_torch_file_is_hash_checked_into_the_checkpoints_folder(server, online, torch_home):
    wf = _tv_file(server, "tvok")
    seen = []
    path = W.fetch(wf, progress=lambda got, total: seen.append((got, total)))
    assert path == torch_home / wf.filename and path.read_bytes() == PAYLOAD
    assert W.find(wf) == path
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert _files_under(torch_home) == [wf.filename]
    assert path.stat().st_mode & 0o777 == 0o666 & ~current_umask()  # readable by the machine's other users
    n = len(server.requests)
    assert W.fetch(wf) == path and len(server.requests) == n


def test_published_files_follow_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        tmp = tmp_path / "x.part"
        tmp.write_bytes(b"w")
        os.chmod(tmp, 0o644)  # wider than the umask allows: publish must narrow it, not keep it
        W.publish(tmp, tmp_path / "x.bin")
        assert (tmp_path / "x.bin").stat().st_mode & 0o777 == 0o600 and not tmp.exists()
    finally:
        os.umask(old)


FAILURES = {  # case -> what the one line must say
    "hub-404": "404", "hub-truncated": "cut short", "hub-no-network": "cannot reach",
    "torch-404": "404", "torch-truncated": "cut short", "torch-wrong-hash": "does not match",
    "torch-no-network": "cannot reach", "offline": "HF_HUB_OFFLINE",
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_failed_download_is_one_line_and_leaves_nothing(server, online, torch_home, monkeypatch, case):
    import huggingface_hub.constants as hfc

    if case == "hub-404":
        wf = W.WeightFile("nothere.pt", "nothere", hf_repo="someone/weights", hf_filename="nothere.pt")
    elif case == "hub-truncated":
        wf = _hub_file(server, "hubtrunc", truncated=True)
    elif case in ("hub-no-network", "offline"):
        wf = _hub_file(server, "hubnonet")
    elif case == "torch-404":
        wf = W.WeightFile("gone-12345678.pth", "gone", url="https://download.pytorch.org/models/gone-12345678.pth")
    elif case == "torch-truncated":
        wf = _tv_file(server, "tvtrunc", truncated=True)
    elif case == "torch-wrong-hash":
        server.serve("/models/tvbad-00000000.pth", PAYLOAD)
        wf = W.WeightFile("tvbad-00000000.pth", "tvbad", url="https://download.pytorch.org/models/tvbad-00000000.pth")
    else:
        wf = _tv_file(server, "tvnonet")
    if case.endswith("no-network"):  # nothing listens on port 9 of this machine
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setenv("DGNAM_TORCH_MIRROR", "http://127.0.0.1:9")
    if case == "offline":
        monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    n = len(server.requests)
    with pytest.raises(UserError) as e:
        W.fetch(wf)
    msg = str(e.value)
    _one_line(msg)
    assert FAILURES[case] in msg
    if case != "offline":
        assert wf.download_url() in msg
    else:
        assert len(server.requests) == n  # offline means no request at all
    assert _files_under(online) == [] and _files_under(torch_home) == []
    assert W.find(wf) is None


@pytest.mark.parametrize("where", ["hub", "torch"])
def test_cancel_stops_the_download_and_leaves_nothing(server, online, torch_home, where):
    import threading

    # 24 MiB in 50 pieces, 20 ms apart: about a second
    body = bytes(range(256)) * (24 << 12)
    wf = (_hub_file(server, "hubslow", body, pause=0.02) if where == "hub"
          else _tv_file(server, "tvslow", body, pause=0.02))
    cancel = threading.Event()
    seen = []

    def progress(got, total):
        seen.append(got)
        if got >= total // 4:
            cancel.set()

    with pytest.raises(W.DownloadCancelled) as e:
        W.fetch(wf, progress, cancel)
    _one_line(str(e.value))
    assert seen and max(seen) < len(body)  # stopped part way
    assert _files_under(online) == [] and _files_under(torch_home) == []
    assert W.find(wf) is None


# ----- the published layouts, where other tools keep them -----

def _converter_keys(sd: dict, layers=None) -> dict:
    """Keys as the Caffe-to-PyTorch converter writes them: each fully connected layer (or each layer in `layers`) is
    Sequential(view, Linear), so `fc6.weight` reads `fc6.1.weight`."""
    out = {}
    for k, v in sd.items():
        layer, _, param = k.rpartition(".")
        out[f"{layer}.1.{param}" if layers is None or layer in layers else k] = v
    return out


def _hf_home(tmp_path, monkeypatch) -> Path:
    import huggingface_hub.constants as hfc

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(cache))
    return cache


def _place(layout: str, torch_home: Path, hf_cache: Path, filename: str, source: Path, repo: str) -> Path:
    """Put `source` where `layout` keeps it: torch hub's checkpoints folder under another tool's name, Lucent's
    TORCH_HOME/checkpoints, or the Hugging Face cache as huggingface_hub lays it out."""
    if layout == "hf-cache":
        return _hf_cache(hf_cache, repo, filename, source)
    folder = torch_home if layout == "hub-checkpoints" else torch_home.parent.parent / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    os.link(source, folder / filename)
    return folder / filename


PRIOR_LAYOUTS = [  # (where, the file's name there, how it is written)
    ("hub-checkpoints", "upconvGAN_conv3.pt", "converter keys"),
    ("lucent", "upconvGAN_conv3.pt", "converter keys"),
    ("hf-cache", "upconvGAN_conv3.pt", "converter keys"),
    ("explicit", "conv3.pth", "state_dict wrapper, module. prefix"),
    ("explicit", "conv3.ckpt", "model wrapper, G. prefix, converter keys"),
]


@pytest.mark.parametrize("where,filename,how", PRIOR_LAYOUTS, ids=[f"{w}-{h}" for w, _, h in PRIOR_LAYOUTS])
def test_published_prior_layouts_give_the_same_generator(tmp_path, torch_home, monkeypatch, conv3_state_dict,
                                                         where, filename, how):
    hf_cache = _hf_home(tmp_path, monkeypatch)
    ours = tmp_path / "ours" / "upconvGAN_conv3.pt"  # what the project writes: a bare state dict, its own keys
    ours.parent.mkdir()
    torch.save(conv3_state_dict, ours)
    code = torch.rand(1, 384, 13, 13) * 5
    expected = priors.load_prior("conv3", str(ours)).generator(code)

    sd = _converter_keys(conv3_state_dict) if "converter" in how else dict(conv3_state_dict)
    if "module." in how:
        sd = {"module." + k: v for k, v in sd.items()}
    if "G." in how:
        sd = {"G." + k: v for k, v in sd.items()}
    obj = {"state_dict": sd, "epoch": 7} if "state_dict" in how else {"model": sd} if "model" in how else sd
    made = tmp_path / "made" / filename
    made.parent.mkdir()
    torch.save(obj, made)
    assert not priors.is_available(priors.ORIGINAL_PRIORS["conv3"])
    if where == "explicit":
        pr = priors.load_prior("conv3", str(made))
    else:
        placed = _place(where, torch_home, hf_cache, filename, made, priors.HF_DEEPSIM)
        assert priors.is_available(priors.ORIGINAL_PRIORS["conv3"])
        pr = priors.load_prior("conv3")
        assert Path(pr.path) == placed
    assert torch.equal(pr.generator(code), expected)


@pytest.fixture(scope="module")
def caffenet_files(tmp_path_factory):
    """CaffeNet with random weights (stored in fp16: half the bytes, the same numbers on loading) in the project's
    layout and in the published converter's."""
    from dgnam_engine.caffenet import caffenet

    torch.manual_seed(5)
    sd = {k: v.half() for k, v in caffenet().state_dict().items()}
    folder = tmp_path_factory.mktemp("caffenet")
    torch.save(sd, folder / "ours.pt")
    fc = ("fc6", "fc7", "fc8")
    torch.save(_converter_keys(sd, fc), folder / "published.pt")
    torch.save({"state_dict": {"module." + k: v for k, v in _converter_keys(sd, fc).items()}},
               folder / "wrapped.pth")
    return folder


@pytest.mark.parametrize("where", ["hub-checkpoints", "hf-cache", "explicit"])
def test_published_caffenet_layouts_give_the_same_network(tmp_path, torch_home, monkeypatch, caffenet_files, where):
    from dgnam_engine import targets as T

    hf_cache = _hf_home(tmp_path, monkeypatch)
    x = torch.randn(1, 3, 227, 227) * 50
    expected = T.load_target("caffenet", weights=str(caffenet_files / "ours.pt")).model(x)
    spec = T.get_spec("caffenet")
    assert not T.weights_available(spec)
    if where == "explicit":
        tgt = T.load_target("caffenet", weights=str(caffenet_files / "wrapped.pth"))
    else:
        # the encoder under the name some tools give it, or the Hub's own name in the Hugging Face cache
        name = "upconvGAN_caffenet.pt" if where == "hub-checkpoints" else "caffenet.pt"
        placed = _place(where, torch_home, hf_cache, name, caffenet_files / "published.pt", priors.HF_DEEPSIM)
        assert T.weights_available(spec)
        tgt = T.load_target("caffenet")
        assert tgt.weights_path == str(placed)
    assert torch.equal(tgt.model(x), expected)


def test_key_rule_only_renames_into_the_models_own_names():
    """torchvision's `classifier.1.weight` is a real name and stays; `fc6.1.weight` becomes `fc6.weight` only where
    the model has `fc6.weight`."""
    expected = {"classifier.1.weight", "fc6.weight", "fc6.bias"}
    sd = {"module.classifier.1.weight": 1, "fc6.1.weight": 2, "G.fc6.1.bias": 3, "extra.1.weight": 4}
    assert W.normalise_keys(sd, expected) == {"classifier.1.weight": 1, "fc6.weight": 2, "fc6.bias": 3,
                                              "extra.1.weight": 4}
    assert W.unwrap({"model": {"state_dict": {"a": 1}}}) == {"a": 1}
