"""The real command line in a subprocess: the issue's "must show" runs, downloads from a local HTTP server, and
every bad input ending in one line on stderr, exit code 2 and nothing written."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from httpserver import HUB_COMMIT, FileServer

ROOT = Path(__file__).resolve().parent.parent
HF_PREFIX = "/binxu/DeePSim_DosovitskiyBrox2016/resolve/main/"
ALEXNET = "alexnet-owt-7be5be79.pth"


def _env(base: Path, **extra) -> dict:
    """Empty caches of this test's own, offline unless a test points a mirror at the local server."""
    env = dict(os.environ)
    for k in ("HF_ENDPOINT", "DGNAM_TORCH_MIRROR"):
        env.pop(k, None)
    env.update(TORCH_HOME=str(base / "torch"), HF_HOME=str(base / "hf"), XDG_CACHE_HOME=str(base / "cache"),
               DGNAM_DATA_DIR=str(base / "data"), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def cli(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dgnam_engine", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def cli_many(jobs: dict[str, tuple[list[str], dict]]) -> dict[str, subprocess.CompletedProcess]:
    """Run independent commands side by side: each spends most of its time importing torch."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {k: pool.submit(cli, args, env) for k, (args, env) in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


def _one_error_line(p: subprocess.CompletedProcess) -> str:
    lines = p.stderr.strip().splitlines()
    assert "Traceback" not in p.stderr, p.stderr
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _last_json(p: subprocess.CompletedProcess):
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def _check_png(path: Path, size: int = 224) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (size, size) and im.mode == "RGB"
        px = np.asarray(im, dtype=np.float32)
    assert float(px.std()) > 2  # an image, not a flat colour


# ----- the "must show" -----

@pytest.fixture(scope="module")
def shows(tmp_path_factory, fc6_file):
    """The issue's three "must show" commands, run side by side."""
    base = tmp_path_factory.mktemp("show")
    env = _env(base)
    out, folder = base / "x.png", base / "out"
    runs = cli_many({
        "models": (["models", "--json"], env),
        "visualize": (["visualize", "--model", "efficientnet_lite0", "--unit", "967", "--prior", "fc6",
                       "--prior-file", str(fc6_file), "--iters", "40", "--out", str(out), "--json"], env),
        "pixel": (["visualize", "--model", "efficientnet_lite0", "--unit", "967,285", "--method", "pixel",
                   "--iters", "3", "--out", str(folder), "--json", "--quiet"], env)})
    return runs, base


def test_models_json_lists_the_targets(shows):
    by = {r["name"]: r for r in _last_json(shows[0]["models"])}
    assert {"caffenet", "alexnet", "googlenet", "resnet50", "efficientnet_lite0"} <= set(by)
    assert by["efficientnet_lite0"]["available"] is True
    assert by["alexnet"]["available"] is False and by["alexnet"]["fetch"] == "python -m dgnam_engine fetch alexnet"


def test_visualize_lite0_through_fc6(shows):
    runs, base = shows
    d = _last_json(runs["visualize"])
    assert {"model", "layer", "unit", "prior", "activation_start", "activation_final", "activations", "image",
            "seconds"} <= set(d)
    assert (d["model"], d["layer"], d["unit"], d["prior"]) == ("efficientnet_lite0", "classifier", 967, "fc6")
    assert len(d["activations"]) == 40 and d["activations"][0] == d["activation_start"]
    assert d["activations"][-1] == d["activation_final"]
    assert d["activation_final"] > d["activation_start"] + 2.0, d["activations"]
    assert d["seconds"] > 0 and Path(d["image"]) == base / "x.png"
    _check_png(base / "x.png")
    assert [f for f in os.listdir(base) if f.startswith("x")] == ["x.png"]  # no partial file left


def test_several_units_write_one_png_each_with_the_pixel_method(shows):
    runs, base = shows
    rows = _last_json(runs["pixel"])
    assert [r["unit"] for r in rows] == [967, 285] and all(r["prior"] == "pixel" for r in rows)
    assert sorted(os.listdir(base / "out")) == sorted(Path(r["image"]).name for r in rows)
    for r in rows:
        assert len(r["activations"]) == 3 and r["activation_final"] > r["activation_start"], r["activations"]
        _check_png(Path(r["image"]))


def test_unwritable_out_is_one_line_and_leaves_no_partial_file(tmp_path, capsys):
    """In process, on the quickest target: the run succeeds, writing the PNG does not."""
    from dgnam_engine.cli import main
    from dgnam_engine.errors import UserError
    from dgnam_engine.imaging import save_png

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code = main(["visualize", "--model", "caffenet", "--random-weights", "--layer", "conv1", "--method", "pixel",
                 "--iters", "1", "--unit", "1", "--quiet",
                 "--out", str(blocker / "x.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: cannot write") and "x.png" in err[0]
    (tmp_path / "taken.png").mkdir()  # a folder in the way is refused before anything is written
    with pytest.raises(UserError, match="taken.png is a folder, not a regular file"):
        save_png(np.zeros((4, 4, 3), np.uint8), tmp_path / "taken.png")
    assert sorted(os.listdir(tmp_path)) == ["a_file", "taken.png"]


# ----- fetch against a real HTTP server -----

FC6_BYTES = b"fake upconvGAN fc6 weights\n" * 1000
ALEX_BYTES = os.urandom(300_000)


def _hub_file(hf_home: Path, name: str) -> Path:
    return hf_home / "hub" / "models--binxu--DeePSim_DosovitskiyBrox2016" / "snapshots" / HUB_COMMIT / name


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """`fetch fc6 alexnet` from the local server, then the listings and two failing fetches side by side."""
    base = tmp_path_factory.mktemp("fetch")
    with FileServer() as srv:
        srv.serve(HF_PREFIX + "upconvGAN_fc6.pt", FC6_BYTES)
        # served under alexnet's real name: torch.hub finds the sha256 does not match the prefix in the name
        srv.serve("/models/" + ALEXNET, ALEX_BYTES)
        srv.serve(HF_PREFIX + "upconvGAN_fc7.pt", FC6_BYTES + b"7", truncated=True)  # own blob
        # fetch goes online unless the user set HF_HUB_OFFLINE=1 (the CLI sets it for every other command)
        env = _env(base, HF_ENDPOINT=srv.url, DGNAM_TORCH_MIRROR=srv.url)
        online = {k: v for k, v in env.items() if k != "HF_HUB_OFFLINE"}
        first = cli(["fetch", "fc6"], online)
        rest = cli_many({"priors": (["priors", "--json"], env), "models": (["models", "--json"], env),
                         "truncated": (["fetch", "fc7"], online), "404": (["fetch", "pool5"], online),
                         "bad-hash": (["fetch", "alexnet"], online), "offline": (["fetch", "conv3"], env)})
        requests = list(srv.requests)
    return dict(rest, fetch=first, checkpoints=base / "torch" / "hub" / "checkpoints", requests=requests,
                hf=base / "hf")


def test_fetch_places_the_exact_bytes(fetched):
    p = fetched["fetch"]
    assert p.returncode == 0, p.stderr
    path = _hub_file(fetched["hf"], "upconvGAN_fc6.pt")  # the standard Hugging Face cache
    assert path.read_bytes() == FC6_BYTES
    assert p.stdout.splitlines() == [f"fc6: {path}"]
    assert "GET " + HF_PREFIX + "upconvGAN_fc6.pt" in fetched["requests"]


def test_hash_mismatch_is_one_line_and_leaves_nothing(fetched):
    p = fetched["bad-hash"]
    assert p.returncode == 2
    line = _one_error_line(p)
    assert ALEXNET in line and "7be5be79" in line and "damaged" in line
    assert not [f for f in os.listdir(fetched["checkpoints"]) if "alexnet" in f]


def test_fetch_refuses_when_the_user_is_offline(fetched):
    p = fetched["offline"]
    assert p.returncode == 2
    assert "HF_HUB_OFFLINE" in _one_error_line(p)
    assert not any("conv3" in r for r in fetched["requests"])


def test_fetched_files_are_found_by_the_listings(fetched):
    priors = {r["name"]: r for r in _last_json(fetched["priors"])}
    assert priors["fc6"]["available"] is True and priors["fc6"]["default"] is True
    assert priors["fc7"]["available"] is False
    models = {r["name"]: r for r in _last_json(fetched["models"])}
    assert models["alexnet"]["available"] is False  # its download failed the hash check


def test_truncated_download_leaves_nothing(fetched):
    p = fetched["truncated"]
    assert p.returncode == 2
    line = _one_error_line(p)
    assert "upconvGAN_fc7.pt" in line and "cut short" in line
    assert not _hub_file(fetched["hf"], "upconvGAN_fc7.pt").exists()
    assert not list(fetched["hf"].rglob("*.incomplete"))


def test_404_is_one_clear_line(fetched):
    p = fetched["404"]
    assert p.returncode == 2
    line = _one_error_line(p)
    assert "upconvGAN_pool5.pt" in line and "404" in line
    assert not _hub_file(fetched["hf"], "upconvGAN_pool5.pt").exists()


# ----- bad input -----

def _bad_files(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    (d / "random.pth").write_bytes(b"\x80\x9a" + random.Random(3).randbytes(50_000))  # a pickle header torch warns about
    torch.save({f"w{i}": torch.randn(64, 64) for i in range(4)}, d / "good.pt")
    good = (d / "good.pt").read_bytes()
    (d / "truncated.pt").write_bytes(good[:len(good) // 2])
    return {"random": d / "random.pth", "truncated": d / "truncated.pt"}


V = ["visualize", "--model", "efficientnet_lite0", "--method", "pixel", "--iters", "2"]
C = ["visualize", "--model", "caffenet", "--random-weights"]  # pure torch: the quickest target to load
# case -> (arguments; the out file is appended, words the error line must contain)
BAD = {
    "unknown model": (["visualize", "--model", "vgg99", "--unit", "1"], ["unknown model", "vgg99"]),
    "unknown layer": (C + ["--layer", "fc9", "--unit", "1"], ["no layer", "fc9", "conv5"]),
    "unknown prior": (C + ["--prior", "fc9", "--unit", "1"], ["unknown prior", "fc9"]),
    "unit out of range": (C + ["--unit", "1000"], ["unit 1000", "out of range", "0-999"]),
    "missing weights file": (V + ["--unit", "1", "--weights", "{tmp}/nope.pth"], ["not found", "nope.pth"]),
    "weights not downloaded": (["visualize", "--model", "alexnet", "--unit", "1"], ["alexnet", "fetch alexnet"]),
    "random-bytes weights": (V + ["--unit", "1", "--weights", "{random}"], ["random.pth", "not a readable"]),
    "truncated weights": (V + ["--unit", "1", "--weights", "{truncated}"], ["truncated.pt", "not a readable"]),
    "prior not downloaded": (C + ["--unit", "1", "--prior", "fc7"], ["upconvGAN_fc7.pt", "fetch fc7"]),
    "missing --unit": (["visualize"], ["--unit"]),
    "bad --iters": (V + ["--unit", "1", "--iters", "abc"], ["--iters", "abc"]),
    "out is a folder": (V + ["--unit", "1", "--out", "{tmp}"], ["folder"]),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    files = _bad_files(base / "files")
    env = _env(base)
    jobs, outs = {}, {}
    for i, (case, (args, _)) in enumerate(BAD.items()):
        d = base / f"case{i}"
        d.mkdir()
        subs = {"tmp": str(d), "random": str(files["random"]), "truncated": str(files["truncated"])}
        argv = [a.format(**subs) for a in args]
        if "--out" not in argv and argv[0] == "visualize":
            argv += ["--out", str(d / "x.png")]
        jobs[case], outs[case] = (argv, env), d
    jobs["fetch unknown name"] = (["fetch", "vgg99"], env)
    return cli_many(jobs), outs


EXTRA = {"fetch unknown name": ["unknown model", "vgg99"]}


@pytest.mark.parametrize("case", list(BAD) + list(EXTRA))
def test_bad_input_is_one_line_exit_2_nothing_written(bad_runs, case):
    runs, outs = bad_runs
    p = runs[case]
    assert p.returncode == 2, (p.returncode, p.stderr)
    line = _one_error_line(p)
    for word in (BAD[case][1] if case in BAD else EXTRA[case]):
        assert word in line, line
    assert p.stdout == ""
    if case in outs:
        assert list(outs[case].iterdir()) == [], "wrote output"
