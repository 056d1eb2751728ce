"""Commands for the paper's questions: `neighbours` (the memorisation check of one picture or stored result) and
`paper` (the experiments of RQ1 to RQ5 in one JSON object)."""
from __future__ import annotations

import sys
from pathlib import Path

from .cli_options import check_writable, rf_path, whole_arg
from . import json_out
from .errors import UserError
from .files import regular_file


def _picture_of(args):
    """(RGB uint8 picture, prior name, label) from --image or --key."""
    from .photos import read_photo
    from .atlas import all_atlases
    from .store import ResultsStore

    if (args.image is None) == (args.key is None):
        raise UserError("give --image PICTURE or --key RESULT_KEY (see `python -m dgnam_engine neighbours --help`)")
    if args.image is not None:
        regular_file(args.image, "picture")  # missing, or a device or pipe: said so
        return read_photo(args.image), args.prior, args.image
    import numpy as np
    from PIL import Image

    r = ResultsStore(atlases=all_atlases()).get(args.key)
    if r is None:
        raise UserError(f"no stored result with key {args.key} (a result's key is the \"key\" of `python -m "
                        "dgnam_engine visualize ... --json`)")
    return np.array(Image.open(r.image_path).convert("RGB")), args.prior or r.prior, f"{r.model} {r.layer} {r.unit}"


def cmd_neighbours(args) -> int:
    from . import neighbours as N
    from .store import default_root

    if args.k < 1:
        raise UserError(f"-k must be at least 1, not {args.k}")
    image, prior, what = _picture_of(args)

    def progress(done, total):
        print(f"indexing {args.images}: {done}/{total} photos", file=sys.stderr, flush=True)

    coll = N.collection_for(prior, args.images, default_root(), progress)
    res = N.check([image], coll, args.k)[0]
    res["picture"] = what
    if args.json:
        print(json_out.dumps(res))
        return 0
    words = {"copy": "a copy", "close": "close to a photo", "new": "a new picture"}[res["verdict"]]
    print(f"{what}: novelty {res['novelty']:.2f}, {words} (nearest {res['nearest']}, in {res['decided_by']} space; "
          f"~0 = a copy, 1 = as far as the collection's {res['photos']} photos are from each other: "
          f"{res['collection']})")
    for title, rows in (("deep features", res["deep"]), (f"pixels ({res['pixel_photos']} photos)", res["pixel"])):
        print(f"  {title}:")
        for row in rows:
            print(f"    {row['distance']:9.3f}  {row['file']}" + (f"  · {row['credit']}" if row.get("credit") else ""))
    return 0


def cmd_paper(args) -> int:
    from . import paper

    written: list[str] = []
    try:
        report = paper.run_all(units=args.units, facets=args.facets, progress=None if args.json else print,
                               steps=args.steps, written=written, fresh=args.fresh)
    except KeyboardInterrupt:
        kept = (f"{', '.join(written)} {'was' if len(written) == 1 else 'were'} written to "
                f"{paper.results_folder()} (a rerun reuses {'it' if len(written) == 1 else 'them'})"
                if written else "no answer was written (the pictures rendered so far are kept in the store)")
        print(f"\ninterrupted: {kept}", file=sys.stderr)
        return 130
    print(json_out.dumps(report))  # with or without --json: the numbers are the answer
    return 0


def add_parsers(sub) -> None:
    s = sub.add_parser("neighbours", help="the nearest real photos of a picture (the memorisation check)")
    s.add_argument("--image", default=None, help="a picture (PNG/JPEG)")
    s.add_argument("--key", default=None, help="or a stored result's key")
    s.add_argument("--prior", default=None, help="the prior the picture was made with (picks the feature space; "
                   "default: the result's prior, else the demo priors' Lite0 pooled features)")
    s.add_argument("--images", default=None, help="a folder of photos to compare with (indexed once, reused; "
                   "default: the demo priors' training photos, shipped)")
    s.add_argument("-k", type=whole_arg("-k"), default=5, help="how many nearest photos (default 5)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_neighbours)

    s = sub.add_parser("paper", help="the paper's questions RQ1-RQ5 answered on this machine's setup")
    s.add_argument("--units", type=whole_arg("--units"), default=50,
                   help="class units for RQ1/RQ3/RQ4 (evenly spread; default 50, for rates with a useful 95%% "
                   "interval; a few for a quick look)")
    s.add_argument("--facets", type=whole_arg("--facets"), default=3, help="K for RQ5 (default 3)")
    s.add_argument("--steps", type=whole_arg("--steps"), default=None,
                   help="steps per picture for a quick look (default: the "
                   "method's own, 200; facets 30)")
    s.add_argument("--fresh", action="store_true", help="compute every answer again (pictures still come from "
                   "the store)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_paper)



def visualize_facets(args, units: list[int]) -> int:
    """`visualize --facets K`: K pictures of one unit, <out>_facet1.png ...; one JSON object with their diversity."""
    from . import facets as F
    from .imaging import save_png
    from .targets import default_target

    if len(units) != 1 or args.objective or args.method != "dgnam" or args.init_image or args.xy:
        raise UserError("--facets takes one --unit, with the dgnam method and no --objective, --init-image or --xy")
    if args.weights or args.random_weights or args.prior_file or args.lr is not None or args.lr_end is not None:
        raise UserError("--facets uses the network's and the prior's own weights and the photo-start schedule: "
                        "leave out --weights, --random-weights, --prior-file, --lr and --lr-end")
    if args.seed:
        raise UserError("--facets starts each picture from its cluster's code, not a random one: leave out --seed")
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a .png file (facets are written as <name>_facet1.png, ...)")
    check_writable(out)
    f = F.render(args.model or default_target(), units[0], args.facets, args.layer, args.prior,
                 progress=None if args.quiet else F.print_progress, steps=args.iters, device=args.device)
    rows = []
    for j, (image, members, act) in enumerate(zip(f.images, f.clusters, f.activations), 1):
        p = out.with_name(f"{out.stem}_facet{j}{out.suffix or '.png'}")
        try:
            save_png(image, p)
        except OSError as exc:
            raise UserError(f"cannot write {p}: {exc.strerror or exc}") from None
        rows.append({"image": str(p), "photos": members, "activation": round(act, 3)})
    summary = {"unit": f.unit, "label": f.label, "facets": rows, "diversity": round(f.diversity, 3),
               "space": ":".join(f.space), "steps": f.extra.get("steps")}
    if args.json:
        print(json_out.dumps(summary))
    else:
        for r in rows:
            print(f"facet from {len(r['photos'])} photos ({', '.join(r['photos'][:3])}): activation "
                  f"{r['activation']:.2f} -> {r['image']}")
        print(f"diversity {f.diversity:.2f} (mean distance between the facets in {summary['space']} features)")
    return 0


def cmd_recipes(args) -> int:
    from . import recipes as R

    rows = R.listing()
    if args.json:
        print(json_out.dumps(rows))
        return 0
    for r in rows:
        print(f"{r['name']:20s} {r['script']:32s} {r['title']}")
        print(f"{'':20s} here: {r['here']}")
    print("run one: python -m dgnam_engine visualize --recipe NAME --out FOLDER/")
    return 0


def _recipe_results(p, settings, device: str) -> list:
    """The recipe's stored results (the results store and the shipped atlas), rendering and storing only the
    units it lacks."""
    from .atlas import all_atlases
    from .request import Request
    from .runner import visualize
    from .store import ResultsStore

    store = ResultsStore(atlases=all_atlases())
    ids = Request(p.model, list(p.units), p.layer, settings, [settings.seed] * len(p.units),
                  device=device).identities()
    have = {i.key: store.get(i.key) for i in ids}
    missing = [u for u, i in zip(p.units, ids) if have[i.key] is None]
    if missing:
        for r in visualize(p.model, missing, p.layer, settings, device=device):
            have[r.identity.key] = store.put(r)
    return [have[i.key] for i in ids]


def visualize_recipe(args) -> int:
    """`visualize --recipe NAME --out FOLDER`: one of the paper's runs, on the closest setup present; units the
    results store (or the shipped atlas) holds are read from it, not rendered again."""
    import numpy as np
    from PIL import Image

    from . import recipes as R
    from .imaging import save_png
    from .runner import Settings

    if args.unit is not None or args.objective is not None or args.facets is not None:
        raise UserError("--recipe chooses its own units: leave out --unit, --objective and --facets")
    p = R.plan(args.recipe)
    out = Path(args.out)
    if out.suffix.lower() == ".png":
        raise UserError("with --recipe, --out is a folder (a recipe draws several units)")
    check_writable(out / "x.png")
    if not args.quiet:
        print(f"{p.recipe.script}: {p.recipe.title}; {p.note()}", file=sys.stderr, flush=True)
    settings = Settings(prior=p.prior, n_iters=args.iters or p.iters, lr_start=p.lr, position=p.xy,
                        init_image=p.photo, seed=args.seed)
    rows = []
    for r in _recipe_results(p, settings, args.device):
        path = out / f"{p.recipe.name}_{r.unit:04d}.png"
        d = r.summary()
        image = np.array(Image.open(r.image_path).convert("RGB"))
        try:
            save_png(image, path)
            d["image"] = str(path)
            if "receptive_field" in r.extra:
                top, left, bottom, right = r.extra["receptive_field"]
                save_png(image[top:bottom, left:right], rf_path(path))
                d["rf_image"] = str(rf_path(path))
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
        rows.append(d)
        if not args.json:
            print(f"{r.model} {r.layer} unit {r.unit} ({r.label}), prior {r.prior}: activation "
                  f"{r.activation_start:.2f} -> {r.activation_final:.2f} -> {path}")
    if args.json:
        print(json_out.dumps({"recipe": p.recipe.name, "script": p.recipe.script, "exact": p.exact,
                          "note": p.note(), "differs": p.differs, "results": rows}))
    else:
        print(p.note())
    return 0


def add_recipes_parser(sub) -> None:
    s = sub.add_parser("recipes", help="the paper's five runs, what each needs and how it runs here")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_recipes)

