"""Offline corpus of real photographs for training small image priors.

This machine reaches no image hosts, only package registries, so every photo
here comes from a file that a PyPI wheel or a Debian package installs.  Each
source below knows where its package puts the photos, which of the files are
real photographs (drawings, test patterns and icons were left out by eye),
and where the package states each photo's licence.

``build_corpus`` writes every photo it finds as ``<source>__<name>.jpg``
(RGB, short side == ``size``, Lanczos, JPEG quality 95) plus ``SOURCES.json``.
A source whose package is not installed is skipped with a message.

Install the sources with ``bash scripts/install_corpus_sources.sh``.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.metadata
import importlib.util
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from PIL import Image, ImageOps

JPEG_QUALITY = 95
# Thumbnails this small would only be blown up into blur; no curated photo is
# below it, so it only guards against a package changing its files.
MIN_SHORT_SIDE = 160
# Hamming distance (of 256 bits) under which two photos count as copies.
DUP_BITS = 12


class SourceUnavailable(Exception):
    """The package behind a source is not installed (or unreadable)."""


@dataclass
class Photo:
    source: str  # short id used in the output file name
    name: str
    package: str
    manager: str  # "pypi" or "debian"
    version: str
    original_path: str
    licence: str  # licence name exactly as the package states it
    licence_from: str  # where that statement was read
    load: Callable[[], Image.Image]
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------
# helpers


def _open_file(path: Path) -> Callable[[], Image.Image]:
    return lambda: Image.open(path)


def _open_bytes(data: bytes) -> Callable[[], Image.Image]:
    return lambda: Image.open(io.BytesIO(data))


def _pypi_root(module: str, dist: str) -> tuple[Path, str]:
    # find_spec locates the package without importing it (sklearn and
    # matplotlib imports are slow and not needed to read a data file).
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SourceUnavailable(f"PyPI package {dist!r} is not installed")
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return Path(list(spec.submodule_search_locations)[0]), version


def _deb_version(pkg: str) -> str:
    if shutil.which("dpkg-query") is None:
        return "unknown"
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", pkg],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def _deb_dir(pkg: str, directory: str) -> tuple[Path, str]:
    # The data directory is the real test of "installed": dpkg may be absent
    # (e.g. a container that copied the files) and that is fine.
    d = Path(directory)
    if not d.is_dir():
        raise SourceUnavailable(f"Debian package {pkg!r} is not installed ({d} missing)")
    return d, _deb_version(pkg)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")


# --------------------------------------------------------------------------
# Debian machine-readable copyright files (DEP-5)


def _parse_dep5(path: Path) -> list[dict[str, str]]:
    """Return the stanzas of a DEP-5 file as {field: value} dicts."""
    stanzas: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    key = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            if cur:
                stanzas.append(cur)
            cur, key = {}, None
        elif line[0] in " \t" and key:
            cur[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            cur[key] = value.strip()
    if cur:
        stanzas.append(cur)
    return stanzas


def _dep5_licence(stanzas: list[dict[str, str]], rel: str) -> tuple[str, str, str]:
    """(licence short name, copyright, pattern) for ``rel``, DEP-5 style:
    the last stanza whose Files pattern matches wins."""
    best = ("", "", "")
    for st in stanzas:
        if "Files" not in st:
            continue
        for pat in st["Files"].split():
            if fnmatch.fnmatchcase(rel, pat):
                lic = st.get("License", "").splitlines()[0] if st.get("License") else ""
                best = (lic, " ".join(st.get("Copyright", "").split()), pat)
    return best


# --------------------------------------------------------------------------
# PyPI sources

# scikit-image: only the photos that ship inside the wheel (no pooch
# download) and whose docstring states a licence.  Microscopy/fundus images,
# the scanned page, drawings and the tiny LFW crops are not natural photos;
# the motorcycle stereo pair and moon carry no licence statement.
_SKIMAGE = {
    # file: (skimage.data function whose docstring states the licence, licence)
    "astronaut.png": ("astronaut", "No known copyright restrictions, released into the public domain."),
    "chelsea.png": ("chelsea", "No copyright restrictions.  CC0 by the photographer (Stefan van der Walt)."),
    "coffee.png": ("coffee", "No copyright restrictions.  CC0 by the photographer (Rachel Michetti)."),
    "rocket.jpg": ("rocket", "The image was captured by SpaceX and released in the public domain."),
    "camera.png": ("camera", "No copyright restrictions. CC0 by the photographer (Lav Varshney)."),
    "coins.png": ("coins", "No known copyright restrictions."),
    "clock_motion.png": ("clock", "Released into the public domain by the photographer (Stefan van der Walt)."),
    "brick.png": ("brick", "licensed under the Creative Commons CC0 License."),
    "grass.png": ("grass", "licensed under the Creative Commons CC0 License."),
    "gravel.png": ("gravel", "licensed under the Creative Commons CC0 License."),
    "hubble_deep_field.jpg": ("hubble_deep_field", "The image was captured by NASA and may be freely used in the public domain."),
}


def iter_skimage() -> Iterator[Photo]:
    root, version = _pypi_root("skimage", "scikit-image")
    for fname, (func, lic) in _SKIMAGE.items():
        p = root / "data" / fname
        if not p.is_file():
            continue  # a future wheel may move it to the pooch download set
        yield Photo(
            "skimage", Path(fname).stem, "scikit-image", "pypi", version, str(p),
            lic, f"docstring of skimage.data.{func}", _open_file(p),
        )


def iter_matplotlib() -> Iterator[Photo]:
    root, version = _pypi_root("matplotlib", "matplotlib")
    p = root / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    if not p.is_file():
        raise SourceUnavailable("matplotlib has no sample_data/grace_hopper.jpg")
    # The wheel has no per-image notice (matplotlib issue #4930); the JPEG
    # comment names its Wikimedia Commons source, and matplotlib PR #1599
    # added it as a public-domain image.
    yield Photo(
        "matplotlib", "grace_hopper", "matplotlib", "pypi", version, str(p),
        "public domain",
        "matplotlib PR #1599 (no notice in the wheel; JPEG comment: "
        "'File source: http://commons.wikimedia.org/wiki/File:Grace_Hopper.jpg')",
        _open_file(p),
    )


def _sklearn_readme(path: Path) -> dict[str, tuple[str, dict]]:
    """Map image name -> (licence statement, extra fields) from the README."""
    out: dict[str, tuple[str, dict]] = {}
    for block in re.split(r"\n\s*\n(?=Image:)", path.read_text(encoding="utf-8")):
        m = re.search(r"Image:\s*(\S+)", block)
        lic = re.search(r"(Released under [^.\n]*)", block)
        if not m or not lic:
            continue
        refs = dict(re.findall(r"\[(\d)\]\s*(\S+)", block))
        attr = re.search(r"Attribution:\s*(.+?)\s*(\[\d\])?\s*$", block, re.M)
        # the README's [1] reference is the licence deed; keep it next to
        # the wording so the exact licence is unambiguous
        text = lic.group(1).strip() + (f" [1] {refs['1']}" if "1" in refs else "")
        out[m.group(1)] = (text, {
            "attribution": attr.group(1) if attr else "",
            "author_page": refs.get("2", ""),
            "url": refs.get("3", ""),
        })
    return out


def iter_sklearn() -> Iterator[Photo]:
    root, version = _pypi_root("sklearn", "scikit-learn")
    d = root / "datasets" / "images"
    readme = d / "README.txt"
    lic = _sklearn_readme(readme) if readme.is_file() else {}
    for fname in ("china.jpg", "flower.jpg"):
        p = d / fname
        if p.is_file() and fname in lic:
            yield Photo(
                "sklearn", p.stem, "scikit-learn", "pypi", version, str(p),
                lic[fname][0], str(readme), _open_file(p), lic[fname][1],
            )


# --------------------------------------------------------------------------
# Debian sources

_MATE_NATURE = [
    "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow",
    "LadyBird", "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower",
]  # abstract/ and desktop/ hold drawn or rendered art


def iter_mate_backgrounds() -> Iterator[Photo]:
    pkg = "mate-backgrounds"
    root, version = _deb_dir(pkg, "/usr/share/backgrounds/mate")
    cpath = Path(f"/usr/share/doc/{pkg}/copyright")
    stanzas = _parse_dep5(cpath) if cpath.is_file() else []
    for name in _MATE_NATURE:
        p = root / "nature" / f"{name}.jpg"
        if not p.is_file():
            continue
        lic, holder, pat = _dep5_licence(stanzas, f"nature/{name}.jpg")
        if not lic:
            continue
        yield Photo(
            "mate", name, pkg, "debian", version, str(p), lic,
            f"{cpath} (Files: {pat})", _open_file(p), {"copyright": holder},
        )


_LOMIRI_1604 = [
    "aitzgorri_by_Aitzol_Berasategi", "analogpattern_by_Peter_Nerlich",
    "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "free_by_Peter_Nerlich",
    "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
    "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
    "Picture_0B_by_freespace", "Picture_1A_by_freespace",
    "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi",
    "Wine_by_Jakkub_Mede",
]  # umang_by_Abhishek_Mudgal is a plain gradient


def iter_lomiri_wallpapers() -> Iterator[Photo]:
    pkg = "lomiri-wallpapers-16.04"
    root, version = _deb_dir(pkg, "/usr/share/backgrounds")
    cpath = Path(f"/usr/share/doc/{pkg}/copyright")
    if not cpath.is_file():
        raise SourceUnavailable(f"Debian package {pkg!r} is not installed ({cpath} missing)")
    stanzas = _parse_dep5(cpath)
    for name in _LOMIRI_1604:
        p = root / f"{name}.jpg"
        if not p.is_file():
            continue
        # upstream keeps them in 16.04/, Debian installs them flat
        lic, holder, pat = _dep5_licence(stanzas, f"16.04/{name}.jpg")
        if not lic:
            continue
        yield Photo(
            "lomiri", name, pkg, "debian", version, str(p), lic,
            f"{cpath} (Files: {pat})", _open_file(p), {"copyright": holder},
        )


def _desktop_fields(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        k, sep, v = line.partition("=")
        if sep and "[" not in k:  # skip translated keys such as Name[de]
            out.setdefault(k.strip(), v.strip())
    return out


def iter_palapeli() -> Iterator[Photo]:
    pkg = "palapeli-data"
    root, version = _deb_dir(pkg, "/usr/share/palapeli/collection")
    for desk in sorted(root.glob("*.desktop")):
        f = _desktop_fields(desk)
        img = root / f.get("Icon", desk.stem + ".jpg")
        lic = f.get("X-KDE-PluginInfo-License", "")
        if not img.is_file() or not lic:
            continue
        yield Photo(
            "palapeli", desk.stem, pkg, "debian", version, str(img), lic,
            f"{desk} (X-KDE-PluginInfo-License)", _open_file(img),
            {"author": f.get("X-KDE-PluginInfo-Author", ""),
             "url": f.get("X-KDE-PluginInfo-Website", "")},
        )


_PLASMA_PHOTOS = [
    "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
    "FallenLeaf", "Grey", "OneStandsOut", "Path", "summer_1am",
]  # the other Plasma wallpapers are vector or painted art


def iter_plasma_wallpapers() -> Iterator[Photo]:
    pkg = "plasma-workspace-wallpapers"
    root, version = _deb_dir(pkg, "/usr/share/wallpapers")
    for name in _PLASMA_PHOTOS:
        meta = root / name / "metadata.json"
        imgs = root / name / "contents" / "images"
        if not meta.is_file() or not imgs.is_dir():
            continue
        kp = json.loads(meta.read_text(encoding="utf-8")).get("KPlugin", {})
        lic = kp.get("License", "")

        # biggest rendition: the resize below only ever shrinks
        def area(p: Path) -> int:
            m = re.match(r"(\d+)x(\d+)", p.stem)
            return int(m.group(1)) * int(m.group(2)) if m else 0

        files = sorted(imgs.iterdir(), key=area)
        if not files or not lic:
            continue
        authors = ", ".join(a.get("Name", "") for a in kp.get("Authors", []))
        yield Photo(
            "plasma", name, pkg, "debian", version, str(files[-1]), lic,
            f"{meta} (KPlugin.License)", _open_file(files[-1]), {"author": authors},
        )


# GCompris packs its activity data into Qt resource (.rcc) files, so the
# photos are read straight out of them.  Upstream puts a README with
# Copyright/Source/License/Files blocks next to the images; only images named
# in one of those blocks are used.  Debian's copyright file for this package
# lists older file names whose content no longer matches.
_GCOMPRIS_ACTIVITIES = [
    "categorization", "erase", "explore_farm_animals", "explore_monuments",
    "explore_world_animals", "explore_world_music",
]  # other activities use drawings, paintings or sprite sheets


def _rcc_entries(buf: bytes) -> Iterator[tuple[str, bytes]]:
    """Yield (path, data) for every file in a Qt binary resource (.rcc)."""
    magic, ver, tree, data, names = struct.unpack(">4sIIII", buf[:20])
    if magic != b"qres":
        raise ValueError("not a Qt resource file")
    node = 14 if ver == 1 else 22  # format 2+ adds an 8-byte mtime per node

    def name_at(off: int) -> str:
        (n,) = struct.unpack(">H", buf[names + off:names + off + 2])
        return buf[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        i, parent = stack.pop()
        base = tree + i * node
        noff, flags = struct.unpack(">IH", buf[base:base + 6])
        path = f"{parent}/{name_at(noff)}" if i else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", buf[base + 6:base + 14])
            stack.extend((c, path) for c in range(first, first + count))
            continue
        (doff,) = struct.unpack(">I", buf[base + 10:base + 14])
        (size,) = struct.unpack(">I", buf[data + doff:data + doff + 4])
        raw = buf[data + doff + 4:data + doff + 4 + size]
        if flags & 1:  # qCompress: 4-byte length, then zlib
            raw = zlib.decompress(raw[4:])
        elif flags & 4:  # zstd; none of the files used here
            continue
        yield path, raw


def _gcompris_credits(readme: str) -> list[dict[str, object]]:
    blocks = []
    for block in re.split(r"\n\s*\n", readme):
        info: dict[str, object] = {"files": []}
        in_files = False
        for line in block.splitlines():
            m = re.match(r"(Copyright|Source|License|Comments|Files):\s*(.*)", line.strip())
            if m:
                key, val = m.group(1), m.group(2).strip()
                in_files = key == "Files"
                if in_files:
                    if val:
                        info["files"].append(val)  # type: ignore[union-attr]
                else:
                    info[key] = val
            elif in_files and line.strip():
                info["files"].append(line.strip())  # type: ignore[union-attr]
        if info["files"] and info.get("License"):
            blocks.append(info)
    return blocks


def iter_gcompris() -> Iterator[Photo]:
    pkg = "gcompris-qt-data"
    root, version = _deb_dir(pkg, "/usr/share/gcompris-qt/rcc")
    found = False
    for act in _GCOMPRIS_ACTIVITIES:
        rcc = root / f"{act}.rcc"
        if not rcc.is_file():
            continue
        found = True
        try:
            entries = dict(_rcc_entries(rcc.read_bytes()))
        except (ValueError, struct.error, zlib.error) as e:
            print(f"[corpus] gcompris: cannot read {rcc}: {e}", file=sys.stderr)
            continue
        for rpath, raw in sorted(entries.items()):
            if not rpath.endswith("/README"):
                continue
            rdir = rpath.rsplit("/", 1)[0]
            for credit in _gcompris_credits(raw.decode("utf-8", errors="replace")):
                for pat in credit["files"]:  # type: ignore[union-attr]
                    for ipath in sorted(entries):
                        rel = ipath[len(rdir) + 1:] if ipath.startswith(rdir + "/") else None
                        if rel is None or not rel.lower().endswith((".webp", ".jpg", ".jpeg", ".png")):
                            continue
                        if not fnmatch.fnmatchcase(rel, pat):
                            continue
                        sub = rdir.split("/resource", 1)[-1].strip("/")
                        name = "_".join(x for x in (act, sub, Path(rel).with_suffix("").as_posix()) if x)
                        yield Photo(
                            "gcompris", _safe(name.replace("/", "_")), pkg, "debian", version,
                            f"{rcc}!{ipath}", str(credit["License"]),
                            f"{rcc}!{rpath}", _open_bytes(entries[ipath]),
                            {"copyright": credit.get("Copyright", ""),
                             "url": credit.get("Source", "")},
                        )
    if not found:
        raise SourceUnavailable(f"{pkg}: none of the expected .rcc files in {root}")


# Keys double as the file-name prefix (each iterator uses its key as
# Photo.source); order matters only for the output listing.
SOURCES: dict[str, Callable[[], Iterator[Photo]]] = {
    "skimage": iter_skimage,
    "matplotlib": iter_matplotlib,
    "sklearn": iter_sklearn,
    "mate": iter_mate_backgrounds,
    "lomiri": iter_lomiri_wallpapers,
    "palapeli": iter_palapeli,
    "plasma": iter_plasma_wallpapers,
    "gcompris": iter_gcompris,
}


# --------------------------------------------------------------------------
# conversion


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        # photos cut out of their background: put them on white, not black
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 256).convert("L")
    return im.convert("RGB")


def _resize_short_side(im: Image.Image, size: int) -> Image.Image:
    w, h = im.size
    if w <= h:
        nw, nh = size, max(1, round(h * size / w))
    else:
        nw, nh = max(1, round(w * size / h)), size
    return im.resize((nw, nh), Image.Resampling.LANCZOS)


def _dhash(im: Image.Image, n: int = 16) -> int:
    # 16x16 gradient hash: copies re-encoded at another size differ by a few
    # bits, distinct photos here by 36+ (an 8x8 hash confused dark scenes)
    g = im.convert("L").resize((n + 1, n), Image.Resampling.BILINEAR).tobytes()
    bits = 0
    for r in range(n):
        for c in range(n):
            bits = (bits << 1) | (g[r * (n + 1) + c] > g[r * (n + 1) + c + 1])
    return bits


def _convert(photo: Photo, size: int) -> tuple[Image.Image, dict]:
    with photo.load() as src:
        w0, h0 = src.size
        gray = src.mode in ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L")
        if src.format == "JPEG":
            # decode big wallpapers at reduced scale, never below the target
            scale = size / min(w0, h0)
            src.draft("RGB", (max(1, int(w0 * scale)), max(1, int(h0 * scale))))
        im = ImageOps.exif_transpose(src)
        im = _to_rgb(im)
    return _resize_short_side(im, size), {"orig_width": w0, "orig_height": h0, "grayscale": gray}


# --------------------------------------------------------------------------
# public API


def build_corpus(
    out_dir: Path,
    size: int = 256,
    *,
    sources: Iterable[str] | None = None,
    dedupe: bool = True,
) -> list[Path]:
    """Write every available photo into ``out_dir``; return the JPEG paths.

    ``sources`` picks a subset of :data:`SOURCES` (all by default).  Sources
    that are not installed are skipped with a message, never an error.
    With ``dedupe``, a photo that is a near-copy of one already written (two
    GCompris activities share some monument photos) is left out.
    """
    if size < 8:
        raise ValueError("size must be at least 8")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = list(SOURCES) if sources is None else list(sources)
    unknown = [s for s in wanted if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown sources {unknown}; known: {list(SOURCES)}")

    # A rebuild (other size, other sources) must not leave photos behind that
    # SOURCES.json no longer lists; only files named like ours are removed.
    for old in out_dir.glob("*__*.jpg"):
        if old.name.split("__", 1)[0] in SOURCES:
            old.unlink()

    written: list[Path] = []
    records: list[dict] = []
    skipped: dict[str, str] = {}
    hashes: list[tuple[int, str]] = []
    used_names: set[str] = set()
    for sid in wanted:
        n_before = len(written)
        try:
            for photo in SOURCES[sid]():
                try:
                    im, info = _convert(photo, size)
                except (OSError, ValueError, Image.DecompressionBombError) as e:
                    print(f"[corpus] {sid}: cannot read {photo.original_path}: {e}", file=sys.stderr)
                    continue
                if min(info["orig_width"], info["orig_height"]) < MIN_SHORT_SIDE:
                    continue
                if dedupe:
                    h = _dhash(im)
                    dup = next((f for hh, f in hashes if bin(hh ^ h).count("1") <= DUP_BITS), None)
                    if dup:
                        print(f"[corpus] {sid}: {photo.name} is a near-copy of {dup}; skipped")
                        continue
                fname = f"{photo.source}__{_safe(photo.name)}.jpg"
                if fname in used_names:
                    continue
                used_names.add(fname)
                dest = out_dir / fname
                im.save(dest, "JPEG", quality=JPEG_QUALITY)
                if dedupe:
                    hashes.append((h, fname))
                written.append(dest)
                records.append({
                    "file": fname,
                    "source": photo.source,
                    "package": photo.package,
                    "package_manager": photo.manager,
                    "package_version": photo.version,
                    "original_path": photo.original_path,
                    "licence": photo.licence,
                    "licence_from": photo.licence_from,
                    **{k: v for k, v in photo.extra.items() if v},
                    **info,
                    "width": im.width,
                    "height": im.height,
                })
        except SourceUnavailable as e:
            skipped[sid] = str(e)
            print(f"[corpus] skipping {sid}: {e}")
            continue
        if len(written) == n_before and sid not in skipped:
            skipped[sid] = "installed, but no photo found"
            print(f"[corpus] {sid}: installed, but no photo found")

    manifest = {
        "size": size,
        "count": len(records),
        "files": records,
        "skipped_sources": skipped,
    }
    (out_dir / "SOURCES.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return written


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dgnam_engine.training.corpus",
        description="Build the offline photo corpus from installed packages.",
    )
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--size", type=int, default=256, help="short side in pixels (default 256)")
    ap.add_argument("--sources", nargs="+", choices=list(SOURCES), help="only these sources")
    ap.add_argument("--no-dedupe", action="store_true", help="keep near-duplicate photos")
    args = ap.parse_args(argv)

    files = build_corpus(args.out_dir, args.size, sources=args.sources, dedupe=not args.no_dedupe)
    manifest = json.loads((args.out_dir / "SOURCES.json").read_text(encoding="utf-8"))
    counts: dict[str, int] = {}
    for rec in manifest["files"]:
        counts[rec["source"]] = counts.get(rec["source"], 0) + 1
    print(f"{len(files)} photos in {args.out_dir} (short side {args.size}px):")
    for sid in args.sources or SOURCES:
        if sid in counts:
            print(f"  {sid:<11} {counts[sid]:4d}")
        else:
            print(f"  {sid:<11}    0  ({manifest['skipped_sources'].get(sid, 'none')})")
    return 0 if files else 1


if __name__ == "__main__":
    sys.exit(main())
