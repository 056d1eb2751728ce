"""`python -m dgnam_engine quiz auto` (the machine's score) and `quiz export --csv` (people's answers)."""
from __future__ import annotations

import sys
from pathlib import Path

from . import json_out, numbers
from . import quiz as Q
from .cli_options import Parser, add_output_options, add_store_option, check_writable, whole_arg
from .errors import UserError


def _root(args) -> Path:
    from .store import default_root

    return Path(args.store).expanduser() if args.store else default_root()


def cmd_auto(args) -> int:
    from . import quiz_auto as A
    from .atlas import all_atlases
    from .store import ResultsStore

    if args.layer not in Q.LAYERS:
        raise UserError(f"the quiz knows layers {', '.join(Q.LAYERS)} of {Q.MODEL}, not {args.layer!r}")
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    bad = [c for c in conditions if c not in Q.CONDITIONS]
    if bad or not conditions:
        raise UserError(f"unknown condition {bad[0] if bad else args.conditions!r}; conditions: "
                        f"{', '.join(Q.CONDITIONS)}")
    root = _root(args)
    store = ResultsStore(root, all_atlases())
    pool = Q.folder_pool(args.images, root) if args.images else Q.shipped_pool()
    n_units = pool.activations(args.layer).shape[1]
    if args.units:
        try:
            units = numbers.unit_list(args.units, n_units)
        except numbers.NumberError as exc:
            raise UserError(str(exc)) from None
    else:
        units = Q.answerable_units(pool, args.layer, min(args.count, n_units))

    def progress(i, n):
        if not args.json:
            print(f"\r{i}/{n} units", end="", file=sys.stderr, flush=True)
    res = A.run(pool, args.layer, units, conditions, A.stored_refs(store, Q.MODEL, args.layer), args.questions,
                args.seed, cache_root=root, progress=progress)
    if not args.json:
        print(file=sys.stderr)
    A.remember(root, res)
    if args.json:
        print(json_out.dumps(res))
        return 0
    print(f"{res['model']} {res['layer']}: {res['units']} units, {res['questions_per_unit']} questions each, "
          f"pool {res['photos']} photos, machine {res['perceptual_model']}")
    for c, s in res["conditions"].items():
        if s["questions"]:
            lo, hi = s["ci95"]
            print(f"  {c:8s} {s['score']:.1%}  [{lo:.1%}, {hi:.1%}]  ({s['units']} units)")
        else:
            print(f"  {c:8s} no pictures stored for these units (render them first, e.g. `precompute`)")
    return 0


def cmd_export(args) -> int:
    if not args.csv:
        raise UserError("say which format: `quiz export --csv` (the only one)")
    if args.room is not None and Q.room_problem(args.room):
        raise UserError(Q.room_problem(args.room))
    text = Q.AnswersDB(_root(args)).csv_text(args.room)
    if args.out:
        out = Path(args.out)
        check_writable(out)
        out.write_text(text)
        print(f"wrote {text.count(chr(10)) - 1} answers to {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("quiz", help='"Guess the neuron": the machine\'s score and people\'s answers')
    qs = s.add_subparsers(dest="quiz_command", required=True, parser_class=Parser)
    a = qs.add_parser("auto", help="the two-photo task by machine (EfficientNet-Lite2 stands in for a person)")
    a.add_argument("--layer", default="classifier", help=f"one of {', '.join(Q.LAYERS)} (of {Q.MODEL})")
    a.add_argument("--units", default=None, help="1,2,3 or 10-20 (default: the --count units the pool answers best)")
    a.add_argument("--count", type=whole_arg("--count", 1000), default=50)
    a.add_argument("--questions", type=whole_arg("--questions", 1000), default=10, help="query pairs per unit")
    a.add_argument("--conditions", default=",".join(Q.CONDITIONS))
    a.add_argument("--seed", type=whole_arg("--seed", numbers.MAX_SEED), default=0)
    a.add_argument("--images", default=None, help="a photo folder for the queries (default: the shipped photos)")
    add_store_option(a)
    add_output_options(a)
    a.set_defaults(func=cmd_auto)
    e = qs.add_parser("export", help="people's answers, one row each")
    e.add_argument("--csv", action="store_true", help="as CSV (to stdout, or --out FILE)")
    e.add_argument("--room", default=None, help="only this class code")
    e.add_argument("--out", default=None)
    add_store_option(e)
    e.set_defaults(func=cmd_export)
