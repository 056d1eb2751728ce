"""Command line: `python -m dgnam_engine` or `dgnam`.

Every user mistake ends in one line on stderr and exit code 2, with nothing written.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

from . import (atlas, catalog, dataset_index, json_out, network_cli, numbers, paper_cli, places_runs, precompute,
               store_cli, variants)
from .cli_options import (Parser, add_model_options, add_output_options, add_prior_options, alpha_path,
                          check_writable, decimal_arg, parse_xy, print_table, rf_path, whole_arg)
from .errors import RunCancelled, UserError
from .files import regular_file
from .training import cli_train
from . import quiz_cli


def cmd_models(args) -> int:
    rows = []
    for e in catalog.networks():
        fetch = f"python -m dgnam_engine fetch {e.fetch}" if e.fetch else None
        if not e.available and fetch is None:  # published for another framework only: the user brings the file
            fetch = f"python -m dgnam_engine fetch {e.name} --from FILE"
        rows.append({"name": e.name, "title": e.title, "available": e.available, "weights": e.weights,
                     "source": e.source, "input_size": e.spec.input_size, "input": e.input,
                     "convention": e.spec.convention(), "dataset": e.spec.dataset,
                     "output_layer": e.spec.output_layer, "size": e.size, "fetch": fetch})
    if args.json:
        print(json_out.dumps(rows))
    else:
        print_table([[r["name"], "yes" if r["available"] else "no (" + (r["fetch"] or "") + ")", r["title"]]
                     for r in rows], ["model", "weights", "description"])
        print("any other timm model: timm/<name>")
    return 0


def cmd_layers(args) -> int:
    from . import targets as T

    tgt = T.load_target(args.model, "cpu", random_weights=True)  # shapes do not depend on the weights
    rows = [{"name": li.name, "kind": li.kind, "units": li.units, "shape": list(li.shape), "module": li.module,
             "output": li.name == tgt.spec.output_layer, "description": li.description}
            for li in tgt.layers.values()]
    if args.json:
        print(json_out.dumps({"model": tgt.name, "input": tgt.spec.convention(), "dataset": tgt.spec.dataset,
                          "classes": len(tgt.spec.classes()), "layers": rows}))
    else:
        trained = (f"a network you added ({tgt.spec.title.partition('added: ')[2].rstrip(')')}; its weights: "
                   f"{tgt.spec.weights.package_path()})" if tgt.spec.family == "user" else
                   f"trained on {tgt.spec.dataset}")
        print(f"{tgt.name} reads {tgt.spec.input_convention}; {trained}")
        print_table([[r["name"], r["kind"], r["units"], "x".join(map(str, r["shape"]))] for r in rows],
                     ["layer", "kind", "units", "shape"])
    return 0


def cmd_priors(args) -> int:
    rows = []
    for e in catalog.priors():
        spec = e.spec
        rows.append({"name": e.name, "title": e.title, "available": e.available, "default": e.default,
                     "kind": e.prior_kind, "code_shape": list(spec.code_shape), "encoder": spec.encoder,
                     "depth": e.depth, "note": spec.note, "size": e.size, "damaged": e.damaged or None,
                     "fetch": f"python -m dgnam_engine fetch {e.fetch}" if e.fetch else None})
    if args.json:
        print(json_out.dumps(rows))
    else:
        print_table([[r["name"] + (" *" if r["default"] else ""),
                      "DAMAGED" if r["damaged"] else "yes" if r["available"] else "no",
                      "x".join(map(str, r["code_shape"])), r["encoder"], r["title"]] for r in rows],
                    ["prior", "present", "code", "inverts", "description"])
        print("* default. Demo priors are trained on a small photo corpus; the original priors "
              "(`python -m dgnam_engine fetch fc6`) give paper-quality images.")
        for r in rows:
            if r["damaged"]:
                print(r["damaged"])
    return 0


def cmd_fetch(args) -> int:
    from . import weights as W

    if args.from_file is not None:
        return network_cli.fetch_from(args.names, args.from_file)
    files = []
    for name in args.names:
        wf = catalog.weight_file(name)  # raises UserError for unknown names before anything is downloaded
        files.append((name, wf))
    for name, wf in files:
        if wf is None:
            print(f"{name}: ships with an installed package, nothing to fetch")
            continue
        last = [0.0]

        def progress(got, total, _n=name):
            now = time.monotonic()
            if now - last[0] > 0.5 or (total and got == total):
                last[0] = now
                pct = f" {100 * got / total:5.1f}%" if total else ""
                print(f"\r{_n}: {got / 1e6:8.1f} MB{pct}", end="", file=sys.stderr, flush=True)

        # A progress line redrawn with \r only makes sense on a terminal; in logs it would swallow the error line.
        show = sys.stderr.isatty()
        try:
            path = W.fetch(wf, progress if show else None, force=args.force)
        finally:
            if show and last[0]:
                print(file=sys.stderr)  # end the progress line, so an error gets a line of its own
        print(f"{name}: {path}")
    return 0


def _unit_file(out: Path, model: str, layer: str, unit: int, method: str = "dgnam") -> Path:
    tail = "" if method == "dgnam" else f"_{method}"  # beside DGN-AM's pictures, not over them
    return out / f"{model.replace('/', '_')}_{layer}_{unit:04d}{tail}.png"


def _check_outputs(args, out: Path, units: list[int]) -> None:
    """Before any work: every file visualize will write is a regular file or a new path in a writable folder
    (renaming a picture over a FIFO or a device would replace it: as root, /dev/null itself)."""
    from .imaging import check_output_file
    from .targets import default_target, get_spec

    if len(units) == 1 and args.out is not None:
        files = [out]
    else:
        if out.exists() and (out.is_symlink() or not out.is_dir()):
            check_output_file(out)  # names what it is
            raise UserError(f"--out {out} is a file; give a folder for several units")
        spec = get_spec(args.model or default_target())
        files = [_unit_file(out, spec.name, args.layer or spec.output_layer, u, args.method) for u in units]
    if args.xy is not None:
        files += [rf_path(f) for f in files]
    if args.method == "maco":
        files += [alpha_path(f) for f in files]
    for f in files:
        check_output_file(f, "--out" if f == out else "output")
    check_writable(files[0])


def _variant_settings(args) -> dict:
    """views and bn_weight from --variant, with --views / --bn-weight over the preset's numbers."""
    out = dict(variants.PRESETS[args.variant]) if args.variant else {}
    if args.views is not None:
        out["views"] = args.views
    if args.bn_weight is not None:
        out["bn_weight"] = args.bn_weight
    return out


def cmd_visualize(args) -> int:
    from .imaging import save_png
    from .runner import Settings, visualize

    if args.recipe is not None:
        from .paper_cli import visualize_recipe

        return visualize_recipe(args)
    if (args.unit is None) == (args.objective is None):
        raise UserError("give --unit or --objective (see `python -m dgnam_engine visualize --help`)")
    if args.facets is not None:
        from .paper_cli import visualize_facets

        return visualize_facets(args, numbers.unit_list(args.unit) if args.unit else [])
    units = network_cli.units_of(args.unit, args.model, args.layer) if args.unit is not None else [0]
    if args.objective is not None and args.xy is not None:
        raise UserError("with --objective, give each term's position in it: blocks.5:7@2,5")
    if args.prior_file:
        regular_file(args.prior_file, "prior file")  # missing, or a device or pipe: one line before any work
    if args.init_image:
        from .photos import check_photo_file

        check_photo_file(Path(args.init_image))
    out = Path(args.out or ".")  # no --out: named pictures in the current folder
    one_file = len(units) == 1 and args.out is not None
    if len(units) > 1 and out.suffix.lower() == ".png":
        raise UserError("with several units --out must be a folder, not a .png file")
    if one_file and out.is_dir():
        raise UserError(f"--out {out} is a folder; give a .png file for one unit")
    _check_outputs(args, out, units)
    settings = Settings(method=args.method, prior=args.prior, n_iters=args.iters, lr_start=args.lr,
                        lr_end=args.lr_end, seed=args.seed, position=parse_xy(args.xy),
                        init_image=str(Path(args.init_image).resolve()) if args.init_image else None,
                        objective=args.objective, **_variant_settings(args))

    def progress(info):
        if not args.quiet and (info.step % 10 == 0 or info.step == info.n_iters - 1):
            acts = ", ".join(f"{a:.2f}" for a in info.activations[:4].tolist())
            print(f"step {info.step + 1}/{info.n_iters}  activation {acts}", file=sys.stderr, flush=True)

    results = visualize(args.model, units, args.layer, settings, device=args.device, model_weights=args.weights,
                        prior_file=args.prior_file, random_weights=args.random_weights, callback=progress)
    # Everything ran; only now is anything written.
    paths = [out] if one_file else [_unit_file(out, r.model, r.layer, r.unit, args.method) for r in results]
    summaries = []
    from . import judge

    opinions = judge.annotate(results) if args.judge and not args.random_weights else [{}] * len(results)
    for r, p, op in zip(results, paths, opinions):
        d = r.summary()
        d.update(op)
        writes = [(r.image, p, "image")]
        if args.xy is not None and "receptive_field" in r.extra:
            top, left, bottom, right = r.extra["receptive_field"]
            writes.append((r.image[top:bottom, left:right], rf_path(p), "rf_image"))
        if r.alpha is not None:
            writes.append((r.alpha, alpha_path(p), "alpha_image"))
        for image, path, key in writes:
            try:
                save_png(image, path)
            except OSError as exc:
                raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
            d[key] = str(path)
        summaries.append(d)
        if not args.json:
            print(f"{r.model} {r.layer} unit {r.unit} ({r.label}), prior {r.prior}: activation "
                  f"{r.activation_start:.2f} -> {r.activation_final:.2f} in {r.seconds:.1f} s -> {p}")
            if op.get("second_opinion"):
                print("  " + judge.describe(op["second_opinion"]))
    if args.json:
        print(json_out.dumps(summaries[0] if len(summaries) == 1 else summaries))
    return 0


def add_core_commands(sub) -> None:
    s = sub.add_parser("models", help="list target networks and whether their weights are present; add or "
                       "remove a network of your own")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_models)
    network_cli.add_models_subcommands(s)

    s = sub.add_parser("layers", help="list the layers of a model")
    s.add_argument("model")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_layers)

    s = sub.add_parser("priors", help="list the generator priors")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_priors)

    s = sub.add_parser("fetch", help="download weights into the standard caches (needs internet)")
    s.add_argument("names", nargs="+", metavar="NAME", help="a model (alexnet, ...) or a prior (fc6, ...)")
    s.add_argument("--force", action="store_true",
                   help="download again even if a copy is present (replaces the cache's copy, e.g. a damaged one)")
    s.add_argument("--from", dest="from_file", default=None, metavar="FILE",
                   help="take the network's weights from a file you have (checked, then copied where lookups find "
                   "it; your file is left as it is)")
    s.set_defaults(func=cmd_fetch)

    s = sub.add_parser("visualize", help="synthesize the preferred input of one or more units")
    add_model_options(s, device="cpu")
    s.add_argument("--layer", default=None, help="default: the output layer")
    s.add_argument("--unit", default=None, help="unit index, or a list: 1,2,3 or 10-20")
    s.add_argument("--objective", default=None, metavar="TEXT",
                   help="several units in one picture, weighted: 'bee + 0.5*daisy', '309 - 985' (a minus between "
                   "terms has a space before it), 'blocks.5:7@2,5 + blocks.5:9' (layer:unit@row,col)")
    add_prior_options(s)
    s.add_argument("--method", choices=["dgnam", "pixel", "maco"], default="dgnam",
                   help="pixel: the pixel-space baseline, no prior; maco: the phase of a natural spectrum (Fel et "
                   "al. 2023), 256 NAdam steps, also writes its alpha map (<out>_alpha.png)")
    s.add_argument("--variant", choices=sorted(variants.PRESETS), default=None,
                   help="a named DGN-AM variant (paper: the paper's objective; robust: random views of the picture "
                   "each step; bn: the target's batch-norm statistics as a natural-image term; robust-bn: both); "
                   "--views and --bn-weight set its numbers")
    s.add_argument("--views", type=whole_arg("--views", variants.MAX_VIEWS), default=None,
                   help="DGN-AM: random crops with noise of the picture the target sees each step (0: the paper's)")
    s.add_argument("--bn-weight", type=decimal_arg("--bn-weight"), default=None,
                   help="DGN-AM: weight of the batch-norm statistics term (DeepInversion; 0: none)")
    s.add_argument("--iters", type=whole_arg("--iters"), default=None)
    s.add_argument("--lr", type=decimal_arg("learning rate"), default=None, help="start learning rate")
    s.add_argument("--lr-end", type=decimal_arg("end learning rate"), default=None)
    s.add_argument("--seed", type=whole_arg("--seed", numbers.MAX_SEED), default=0,
                   help="the random start code: a whole number from 0 to 2^32-1")
    s.add_argument("--xy", default=None, metavar="ROW,COL",
                   help="conv units: the position to maximise, e.g. 2,5 (N alone: N,N; default: the centre); "
                   "also writes the picture cut to that position's receptive field (<out>_rf.png)")
    s.add_argument("--init-image", default=None, metavar="PHOTO",
                   help="start from this photo's code instead of a random one (30 steps, smaller steps)")
    s.add_argument("--out", default=None, help="PNG file, or a folder for several units (default: the current "
                   "folder, as MODEL_LAYER_UNIT[_METHOD].png)")
    add_output_options(s, quiet="no progress lines")
    s.add_argument("--recipe", default=None, metavar="NAME",
                   help="one of the paper's five runs (python -m dgnam_engine recipes); --out is a folder")
    s.add_argument("--facets", type=whole_arg("--facets"), default=None, metavar="K",
                   help="K pictures of the unit, each started from one cluster of its top real photos")
    s.add_argument("--no-judge", dest="judge", action="store_false",
                   help="skip the second opinion (an independent network's top-5 for class units)")
    s.set_defaults(func=cmd_visualize)


# Every command, in the order `--help` lists them: each entry adds its parsers (with set_defaults(func=...)). A new
# command is one function here; its module imports cli_options, never this module.
COMMANDS = (add_core_commands, atlas.add_parser, dataset_index.add_parsers, paper_cli.add_parsers,
            paper_cli.add_recipes_parser, precompute.add_parser, store_cli.add_parser, cli_train.add_parser,
            places_runs.add_parser, quiz_cli.add_parser)


def build_parser() -> Parser:
    p = Parser(prog="dgnam", description="DGN-AM Studio: see what a neuron has learned.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in COMMANDS:
        add(sub)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.func is not cmd_fetch:  # nothing but `fetch` may wait on the network (read before any Hub import)
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunCancelled:
        print("cancelled: nothing was written", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted: nothing was written", file=sys.stderr)
        return 130
