"""The offline photo corpus is built from installed packages' real photos."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

from dgnam_engine.training import corpus

SIZE = 64  # small keeps the test fast; the resize path is the same

# The wheel-only sources are quick; the Debian ones add a few hundred photos
# and seconds, so only the small ones are built here (each is skipped by
# build_corpus itself when its package is missing).
FAST_SOURCES = ["skimage", "matplotlib", "sklearn", "palapeli", "lomiri"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], dict]:
    if importlib.util.find_spec("skimage") is None:
        pytest.skip("scikit-image not installed")
    out = tmp_path_factory.mktemp("corpus")
    files = corpus.build_corpus(out, size=SIZE, sources=FAST_SOURCES)
    manifest = json.loads((out / "SOURCES.json").read_text(encoding="utf-8"))
    return out, files, manifest


def test_writes_rgb_jpegs_with_short_side_equal_size(built):
    out, files, _ = built
    assert len(files) >= 5
    on_disk = sorted(out.glob("*.jpg"))
    assert sorted(files) == on_disk
    for f in on_disk:
        source, sep, name = f.stem.partition("__")
        assert sep and source in corpus.SOURCES and name
        with Image.open(f) as im:
            assert im.format == "JPEG"
            assert im.mode == "RGB"
            assert min(im.size) == SIZE
            im.load()  # decodes fully: no truncated file


def test_scikit_image_photos_come_from_the_wheel(built):
    _, files, manifest = built
    names = {f.name for f in files}
    # these ship in the wheel itself, so no download is involved
    for expected in ("skimage__astronaut.jpg", "skimage__chelsea.jpg", "skimage__coffee.jpg"):
        assert expected in names
    recs = [r for r in manifest["files"] if r["source"] == "skimage"]
    assert all(Path(r["original_path"]).is_file() for r in recs)
    assert all(r["package"] == "scikit-image" for r in recs)


def test_manifest_lists_every_file_with_a_licence(built):
    out, files, manifest = built
    listed = [r["file"] for r in manifest["files"]]
    assert len(listed) == len(set(listed))
    assert set(listed) == {f.name for f in files}
    assert manifest["count"] == len(files)
    assert manifest["size"] == SIZE
    for r in manifest["files"]:
        assert r["licence"].strip(), r["file"]
        assert r["licence_from"].strip(), r["file"]
        assert r["package"] and r["package_version"]
        assert min(r["width"], r["height"]) == SIZE
        # the aspect ratio of the original is kept
        assert abs(r["width"] / r["height"] - r["orig_width"] / r["orig_height"]) < 0.02


def test_photos_are_distinct_pictures(built):
    _, files, _ = built
    # a flat or repeated image would make a useless prior sample
    seen = set()
    for f in files:
        with Image.open(f) as im:
            lo, hi = im.convert("L").getextrema()
            assert hi - lo > 40, f.name
            seen.add(im.convert("L").resize((16, 16)).tobytes())
    assert len(seen) == len(files)


def test_rebuild_replaces_old_files_and_missing_sources_are_skipped(tmp_path, monkeypatch):
    def not_installed():
        raise corpus.SourceUnavailable("pretend package is missing")
        yield  # pragma: no cover

    monkeypatch.setitem(corpus.SOURCES, "palapeli", not_installed)
    stale = tmp_path / "skimage__stale.jpg"
    Image.new("RGB", (10, 10)).save(stale)
    files = corpus.build_corpus(tmp_path, size=32, sources=["skimage", "palapeli"])
    assert not stale.exists()
    manifest = json.loads((tmp_path / "SOURCES.json").read_text(encoding="utf-8"))
    assert "palapeli" in manifest["skipped_sources"]
    assert files and all(f.name.startswith("skimage__") for f in files)


def test_cli_prints_a_summary(tmp_path, capsys):
    assert corpus.main([str(tmp_path / "c"), "--size", "40", "--sources", "skimage"]) == 0
    out = capsys.readouterr().out
    assert "skimage" in out and "photos" in out
    with Image.open(next((tmp_path / "c").glob("skimage__*.jpg"))) as im:
        assert min(im.size) == 40
