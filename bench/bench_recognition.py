"""Would a person recognise the pictures? Issue 26's measurement, before and after any change (not in the suite).

One picture per class per method, at default settings and seed 0, on the real EfficientNet-Lite0 through the
product's own path (runner.visualize: the request resolver, the fast CPU path a user's run takes). For each method:
EfficientNet-Lite2's top-1/top-5 at full size, after shrinking to 48 px and over random crops (Lite2 is a SIBLING
of the target: same family, same training data, so it is no independent observer), seconds per unit and the load
average. It also writes, per method, an unlabelled contact sheet for a blind reader (shuffled, numbered, the
method hidden behind a letter) and, apart, the key and a labelled sheet; `--score` scores a reader's answers.

    nice python bench/bench_recognition.py --out /work/wt/sheets --json
    python bench/bench_recognition.py --out /work/wt/sheets --score answers.json

Pictures are kept under OUT/pictures/<method>/ with the settings that made them; a rerun reuses a picture made
with the same settings (`--fresh` makes them again). docs/recognition.md describes the method.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import time
import types
from dataclasses import replace
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dgnam_engine  # noqa: E402,F401  (first: it sets OpenMP's wait before torch loads; 56-72 s a unit without)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from dgnam_engine import accel as A, class_lists, runner  # noqa: E402
from dgnam_engine.convention import from_uint8, to_uint8  # noqa: E402
from dgnam_engine.request import Settings  # noqa: E402

MODEL, PRIOR, SEED = "efficientnet_lite0", "lite0-b3", 0
CLASSES = ("goldfish", "ostrich", "bald eagle", "scorpion", "hummingbird", "flamingo", "king penguin", "lion", "bee",
           "zebra", "giant panda", "balloon", "basketball", "convertible", "golf ball", "pickup", "sports car",
           "Granny Smith", "banana", "espresso")
LUCENT_DIR = Path(os.environ.get("LUCENT_PKGS", "/work/wt/lucent-pkgs"))  # bench/README.md: the install line
LUCENT_STEPS = 256
CELL, COLS, ROWS = 160, 4, 5
CROPS, CROP_SIDE = 8, (0.6, 0.85)  # random crops per picture for the judge, side as a fraction of the picture


def _variant(name: str) -> dict:
    from dgnam_engine import variants  # only the variant methods need it
    return variants.PRESETS[name]


# method -> (what it is, Settings); lucent is not the product's and runs its own loop
METHODS = {
    "paper": "DGN-AM as the paper runs it (act_max.py's rule), demo prior lite0-b3",
    "robust": "DGN-AM + transformation robustness (variants.PRESETS['robust'])",
    "bn": "DGN-AM + batch-norm statistics term (variants.PRESETS['bn'])",
    "robust-bn": "DGN-AM + both (variants.PRESETS['robust-bn'])",
    "maco": "MACO at its default (256 steps, 6 crops)",
    "pixel": "pixel-space AM baseline (jitter, blur, decay)",
    "lucent": f"Lucent render_vis default (torch-lucent, {LUCENT_STEPS} steps, 128 px fft + decorrelated)",
}


def settings_of(method: str) -> Settings:
    if method == "maco":
        return Settings(method="maco", seed=SEED)
    if method == "pixel":
        return Settings(method="pixel", seed=SEED)
    extra = {} if method == "paper" else _variant(method)
    return Settings(method="dgnam", prior=PRIOR, seed=SEED, **extra)


def class_units() -> list[int]:
    names = class_lists.imagenet()
    return [class_lists.find(names, c) for c in CLASSES]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


# ----- rendering ----------------------------------------------------------------------------------------------

def _lucent_modules():
    """torch-lucent from its own folder, never the shared venv. Its `show` helpers import IPython at module load;
    nothing here shows anything, so an empty IPython.display stands in for it (the real one is not installed)."""
    if str(LUCENT_DIR) not in sys.path:
        sys.path.insert(0, str(LUCENT_DIR))
    if "IPython.display" not in sys.modules:
        ip = types.ModuleType("IPython")
        ip.display = types.ModuleType("IPython.display")
        sys.modules.setdefault("IPython", ip)
        sys.modules["IPython.display"] = ip.display
    from lucent.optvis import render
    return render


class _LucentView(torch.nn.Module):
    """Lite0 as Lucent drives a torchvision model: RGB in [0, 1] in, logits out at a module named `logits`. The
    target's own normalisation replaces Lucent's torchvision one (preprocess=False), so Lite0 sees what it
    expects."""

    def __init__(self, target):
        super().__init__()
        self.target = target
        self.net = target.model
        self.logits = torch.nn.Identity()

    def forward(self, rgb):
        return self.logits(self.net(self.target.preprocess(self.target.rgb_to_gen(rgb))))


def render_lucent(unit: int, target) -> tuple[np.ndarray, float, float]:
    render = _lucent_modules()
    model = _LucentView(target).eval()
    torch.set_num_threads(A.cpu_pass_threads())  # the thread count the product's passes use (a picture depends on it)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    random.seed(SEED)
    t0 = time.perf_counter()
    images = render.render_vis(model, f"logits:{unit}", thresholds=(LUCENT_STEPS,), preprocess=False,
                               progress=False, show_image=False)
    seconds = time.perf_counter() - t0
    img = (np.clip(images[-1][0], 0, 1) * 255 + 0.5).astype(np.uint8)
    with torch.no_grad():
        act = float(model(from_uint8(img))[0, unit])
    return img, seconds, act


def picture(method: str, unit: int, out: Path, fresh: bool, lucent_target, render: bool = True) -> Optional[dict]:
    """The picture of one class by one method: made, or read back when made before with the same settings (None
    when it was not made before and `render` is off)."""
    folder = out / "pictures" / method
    name = slug(class_lists.imagenet()[unit])
    png, meta_path = folder / f"{name}.png", folder / f"{name}.json"
    wanted = {"method": method, "unit": unit, "seed": SEED, "cpu_threads": A.cpu_pass_threads(),
              "settings": None if method == "lucent" else settings_of(method).to_dict()}
    if not fresh and png.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("wanted") == wanted:
            return meta
    if not render:
        return None
    load0 = os.getloadavg()[0]
    if method == "lucent":
        image, seconds, act = render_lucent(unit, lucent_target)
        a0 = None
    else:
        [r] = runner.visualize(MODEL, [unit], settings=settings_of(method))
        image, seconds, act, a0 = r.image, r.seconds, r.activation_final, r.activation_start
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(png)
    meta = {"wanted": wanted, "class": class_lists.imagenet()[unit], "seconds": round(seconds, 2),
            "activation_start": a0, "activation_final": act, "load_before": load0,
            "load_after": os.getloadavg()[0], "png": str(png)}
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


# ----- the sibling judge --------------------------------------------------------------------------------------

def _rank(probs: torch.Tensor, c: int) -> int:
    return int((probs > probs[c]).sum())


@torch.no_grad()
def judge_scores(images: list[np.ndarray], units: list[int]) -> dict:
    """Lite2's top-1 and top-5 at full size, after shrinking to 48 px, and over CROPS random crops per picture."""
    from dgnam_engine import judge

    lite2 = judge.get_judge()
    full, small, crops = [], [], []
    for j, (img, c) in enumerate(zip(images, units)):
        rgb = from_uint8(img)
        full.append(_rank(lite2.classify(rgb)[0], c))
        tiny = F.interpolate(rgb, size=(48, 48), mode="bilinear", align_corners=False, antialias=True)
        small.append(_rank(lite2.classify(tiny)[0], c))
        rng = np.random.RandomState(1000 + j)  # the same crops for every method
        h, w = img.shape[:2]
        for _ in range(CROPS):
            side = rng.uniform(*CROP_SIDE)
            ch, cw = int(round(h * side)), int(round(w * side))
            top, left = rng.randint(0, h - ch + 1), rng.randint(0, w - cw + 1)
            crops.append(_rank(lite2.classify(rgb[..., top:top + ch, left:left + cw])[0], c))

    def rate(ranks, k):
        return round(sum(r < k for r in ranks) / len(ranks), 3)
    return {"full_top1": rate(full, 1), "full_top5": rate(full, 5), "48px_top1": rate(small, 1),
            "48px_top5": rate(small, 5), "crops_top1": rate(crops, 1), "crops_top5": rate(crops, 5),
            "full_ranks": full}


# ----- sheets -------------------------------------------------------------------------------------------------

def letters() -> dict[str, str]:
    """method -> sheet letter, fixed whatever subset runs: the methods ordered by a hash of their names, so the
    letters say nothing about the methods (A is not the paper's)."""
    order = sorted(METHODS, key=lambda m: hashlib.sha256(f"issue26:{m}".encode()).hexdigest())
    return {m: chr(ord("A") + i) for i, m in enumerate(order)}


def _font(size: int):
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
                 "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf"):
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default()


def _cell(img: np.ndarray) -> Image.Image:
    return Image.fromarray(img).convert("RGB").resize((CELL, CELL), Image.LANCZOS)


def sheet(images: list[np.ndarray], captions: list[str], path: Path) -> None:
    """COLS x ROWS cells of CELL px, each caption in a box in the top-left corner."""
    pad = 4
    canvas = Image.new("RGB", (COLS * (CELL + pad) + pad, ROWS * (CELL + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(15)
    for i, (img, cap) in enumerate(zip(images, captions)):
        x, y = pad + (i % COLS) * (CELL + pad), pad + (i // COLS) * (CELL + pad)
        canvas.paste(_cell(img), (x, y))
        box = draw.textbbox((x + 3, y + 2), cap, font=font)
        draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill="white")
        draw.text((x + 3, y + 2), cap, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def write_sheets(out: Path, done: dict[str, list[dict]]) -> dict:
    """Blind sheets in OUT/blind (sheet-<letter>.png), the key and labelled sheets in OUT/key."""
    key = {"letters": {}, "sheets": {}}
    for method, metas in done.items():
        letter = letters()[method]
        images = [np.asarray(Image.open(m["png"]).convert("RGB")) for m in metas]
        order = list(range(len(metas)))
        random.Random(f"sheet-{letter}").shuffle(order)  # a fixed shuffle per sheet
        sheet([images[i] for i in order], [str(n + 1) for n in range(len(order))], out / "blind" / f"sheet-{letter}.png")
        sheet(images, [m["class"] for m in metas], out / "key" / f"labelled-{method}.png")
        key["letters"][letter] = method
        key["sheets"][f"sheet-{letter}"] = {str(n + 1): metas[i]["class"] for n, i in enumerate(order)}
    (out / "key").mkdir(parents=True, exist_ok=True)
    old = out / "key" / "key.json"
    if old.is_file():  # sheets written by an earlier run of other methods stay in the key
        prev = json.loads(old.read_text())
        prev["letters"].update(key["letters"])
        prev["sheets"].update(key["sheets"])
        key = prev
    old.write_text(json.dumps(key, indent=1))
    return key


# ----- scoring a blind reader ---------------------------------------------------------------------------------

# What counts as naming each class. "strict": the class or a synonym; "close": a close class or the generic word a
# reader uses for it. Rules stated in docs/recognition.md: "car" / "automobile" is close for convertible and sports
# car (both passenger cars), never for pickup; "sports car", "race car", "racing car" name the sports car and are
# close for the convertible (and "convertible" / "roadster" close for the sports car); a bare "ball" names neither
# ball; "fish" and "bird" alone name nothing.
SYNONYMS = {
    "goldfish": (["goldfish", "gold fish"], ["koi", "carp"]),
    "ostrich": (["ostrich"], ["emu", "rhea", "cassowary"]),
    "bald eagle": (["bald eagle", "eagle"], ["raptor", "bird of prey", "hawk", "falcon"]),
    "scorpion": (["scorpion"], []),
    "hummingbird": (["hummingbird", "humming bird"], []),
    "flamingo": (["flamingo", "flamingos", "flamingoes"], []),
    "king penguin": (["king penguin", "penguin", "penguins"], []),
    "lion": (["lion", "lions", "lioness"], []),
    "bee": (["bee", "bees", "honeybee", "honey bee", "bumblebee", "bumble bee"], ["wasp", "hornet"]),
    "zebra": (["zebra", "zebras"], []),
    "giant panda": (["giant panda", "panda", "pandas"], []),
    "balloon": (["balloon", "balloons", "hot air balloon", "hot-air balloon"], []),
    "basketball": (["basketball"], []),
    "convertible": (["convertible", "cabriolet"], ["car", "cars", "automobile", "roadster", "sports car",
                                                    "race car", "racing car"]),
    "golf ball": (["golf ball", "golfball", "golf balls"], []),
    "pickup": (["pickup", "pick-up", "pickup truck", "pick up truck"], ["truck", "ute"]),
    "sports car": (["sports car", "sportscar", "race car", "racing car", "supercar"],
                   ["car", "cars", "automobile", "convertible", "roadster"]),
    "Granny Smith": (["granny smith", "apple", "apples", "green apple"], []),
    "banana": (["banana", "bananas", "plantain"], []),
    "espresso": (["espresso", "coffee", "cappuccino", "latte", "coffee cup", "cup of coffee"], []),
}
NOT = {"lion": ["sea lion"], "giant panda": ["red panda"], "bee": ["bee eater", "bee-eater"]}


def _has(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![a-z]){re.escape(phrase)}(?![a-z])", text) is not None


def matches(answer: str, cls: str) -> Optional[str]:
    """"strict", "close" or None: whether a reader's name for a picture names class `cls`."""
    text = " ".join(re.sub(r"[^a-z\- ]+", " ", answer.lower()).split())
    for bad in NOT.get(cls, []):
        text = text.replace(bad, " ")
    strict, close = SYNONYMS[cls]
    if any(_has(text, p) for p in strict):
        return "strict"
    if any(_has(text, p) for p in close):
        return "close"
    return None


def score(answers: dict, key: dict) -> list[dict]:
    rows = []
    for sheet_name, truth in sorted(key["sheets"].items()):
        given = answers.get(sheet_name) or answers.get(sheet_name.replace("sheet-", "")) or {}
        letter = sheet_name.replace("sheet-", "")
        row = {"sheet": sheet_name, "method": key["letters"].get(letter), "answered": 0, "confident": 0,
               "confident_strict": 0, "guessed": 0, "confident_wrong": 0, "per_picture": {}}
        for num, cls in truth.items():
            a = given.get(num) or given.get(int(num)) if isinstance(given, dict) else None
            if not a or not str(a.get("name", "")).strip():
                continue
            row["answered"] += 1
            sure = str(a.get("confidence", "low")).lower() in ("medium", "high")
            m = matches(str(a["name"]), cls)
            row["per_picture"][num] = {"class": cls, "name": a["name"], "confidence": a.get("confidence"),
                                       "match": m}
            if m and sure:
                row["confident"] += 1
                row["confident_strict"] += m == "strict"
            elif m:
                row["guessed"] += 1
            elif sure:
                row["confident_wrong"] += 1
        rows.append(row)
    return rows


def time_ratios(methods: list[str], steps: int, rounds: int = 3) -> dict:
    """Seconds per unit (scaled to the default 200 steps) of each DGN-AM method, the methods run in turn for
    `steps` steps, `rounds` times, medians: side by side, so every method sees the same load."""
    dg = [m for m in methods if m not in ("maco", "pixel", "lucent")]
    unit = class_units()[0]
    times: dict[str, list[float]] = {m: [] for m in dg}
    for m in dg:  # a warm-up each: conversions, caches
        runner.visualize(MODEL, [unit], settings=replace(settings_of(m), n_iters=2))
    for _ in range(rounds):
        for m in dg:
            [r] = runner.visualize(MODEL, [unit], settings=replace(settings_of(m), n_iters=steps))
            times[m].append(r.seconds * 200 / steps)
    med = {m: float(np.median(t)) for m, t in times.items()}
    base = med.get("paper")
    return {m: {"seconds_per_unit": round(v, 2), "x_paper": round(v / base, 2) if base else None}
            for m, v in med.items()}


# ----- main ---------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="folder for pictures/, blind/ and key/")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    ap.add_argument("--classes", default=None, help="comma list of class names (default: the issue's 20)")
    ap.add_argument("--fresh", action="store_true", help="make every picture again")
    ap.add_argument("--no-render", action="store_true",
                    help="only the pictures made before: score them and write the sheets of the complete methods")
    ap.add_argument("--ratio-steps", type=int, default=10,
                    help="steps of the side-by-side timing of the DGN-AM methods (0: none)")
    ap.add_argument("--score", type=Path, default=None, help="a blind reader's answers (JSON) to score")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object, last line")
    a = ap.parse_args(argv)
    if a.score is not None:
        key = json.loads((a.out / "key" / "key.json").read_text())
        rows = score(json.loads(a.score.read_text()), key)
        print(f"{'sheet':9} {'method':10} {'named (med/high)':>16} {'of which strict':>15} {'guessed (low)':>13} "
              f"{'wrong but sure':>14}")
        for r in rows:
            print(f"{r['sheet']:9} {str(r['method']):10} {r['confident']:>16} {r['confident_strict']:>15} "
                  f"{r['guessed']:>13} {r['confident_wrong']:>14}")
        if a.json:
            print(json.dumps(rows))
        return 0
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        print(f"unknown method {bad[0]!r}; use {', '.join(METHODS)}", file=sys.stderr)
        return 2
    names = class_lists.imagenet()
    wanted = [c.strip() for c in a.classes.split(",")] if a.classes else list(CLASSES)
    units = [class_lists.find(names, c) for c in wanted]
    if None in units:
        print(f"no ImageNet class named {wanted[units.index(None)]!r}", file=sys.stderr)
        return 2
    lucent_target = None
    if "lucent" in methods:  # its own copy: Lucent hooks every module of the model it is given
        from dgnam_engine import targets as T
        lucent_target = T.load_target(MODEL, "cpu")
    load_start = os.getloadavg()
    report = {"model": MODEL, "prior": PRIOR, "seed": SEED, "classes": [names[u] for u in units],
              "judge": "efficientnet_lite2 (a SIBLING of the target: same family and training data)",
              "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_before": load_start,
              "methods": {}}
    done = {}
    for method in methods:
        t0, l0 = time.perf_counter(), os.getloadavg()
        metas = []
        for u in units:
            m = picture(method, u, a.out, a.fresh, lucent_target, render=not a.no_render)
            if m is None:
                continue
            metas.append(m)
            print(f"{method:10} {m['class']:14} {m['seconds']:7.1f} s  act {m['activation_final']:.2f}",
                  file=sys.stderr, flush=True)
        if not metas:
            continue
        got = [u for u in units if any(m["wanted"]["unit"] == u for m in metas)]
        images = [np.asarray(Image.open(m["png"]).convert("RGB")) for m in metas]
        js = judge_scores(images, got)
        secs = [m["seconds"] for m in metas]
        report["methods"][method] = {
            "what": METHODS[method], "letter": letters()[method], "pictures": len(metas),
            "seconds_per_unit": round(float(np.mean(secs)), 2), "seconds_per_unit_median": float(np.median(secs)),
            "activation_final_mean": round(float(np.mean([m["activation_final"] for m in metas])), 3),
            "load_before": l0, "load_after": os.getloadavg(), "wall_seconds": round(time.perf_counter() - t0, 1),
            "render_load_before": [m["load_before"] for m in metas], **js}
        if len(metas) == COLS * ROWS:  # a sheet only for a method with every picture
            done[method] = metas
    if a.ratio_steps > 0 and any(m not in ("maco", "pixel", "lucent") for m in methods):
        l0 = os.getloadavg()
        report["time_side_by_side"] = {"steps": a.ratio_steps, "load_before": l0,
                                       "methods": time_ratios(methods, a.ratio_steps), "load_after": os.getloadavg()}
    report["load_after"] = os.getloadavg()
    if done:
        write_sheets(a.out, done)
    print(f"load average before {load_start}, after {report['load_after']}; judge: Lite2, a SIBLING of Lite0")
    print(f"{'method':10} {'sheet':5} {'n':>3} {'full t1/t5':>11} {'48px t1/t5':>11} {'crops t1/t5':>12} "
          f"{'s/unit':>7} {'load':>5} {'act':>6}")
    for m, r in report["methods"].items():
        print(f"{m:10} {r['letter']:5} {r['pictures']:3} {r['full_top1']:5.2f}/{r['full_top5']:.2f} {r['48px_top1']:5.2f}/"
              f"{r['48px_top5']:.2f} {r['crops_top1']:6.2f}/{r['crops_top5']:.2f} "
              f"{r['seconds_per_unit_median']:7.1f} {np.mean(r['render_load_before']):5.1f} "
              f"{r['activation_final_mean']:6.2f}")
    if "time_side_by_side" in report:
        t = report["time_side_by_side"]
        print(f"side by side ({t['steps']} steps x 3, load {t['load_before'][0]:.1f} -> {t['load_after'][0]:.1f}): "
              + ", ".join(f"{m} {v['seconds_per_unit']:.1f} s/unit ({v['x_paper']}x paper)"
                          for m, v in t["methods"].items()))
    (a.out / "key").mkdir(parents=True, exist_ok=True)
    (a.out / "key" / "bench.json").write_text(json.dumps(report, indent=1))
    if a.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
