"""The command line of networks brought from files: `models add`, `models remove`, `fetch NAME --from FILE`, and
units named by class (`--unit alley`) in the network's own class list."""
from __future__ import annotations

import argparse
from typing import Optional

from . import class_lists, numbers
from . import json_out
from .cli_options import whole_arg
from .errors import UserError


def _is_name(part: str) -> bool:
    return any(ch.isalpha() for ch in part)


def units_of(text: str, model: Optional[str], layer: Optional[str]) -> list[int]:
    """`--unit`: numbers and ranges (967, 1,2,3, 10-20; numbers.unit_list) or the output layer's class names
    (alley, art_gallery, doorway/outdoor), looked up in the class list of the network that runs."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not any(_is_name(p) for p in parts):
        return numbers.unit_list(text)
    from . import targets as T

    spec = T.get_spec(model or T.default_target())
    if layer is not None and layer != spec.output_layer:
        raise UserError(f"units of layer {layer} are numbers; class names are for {spec.name}'s output layer "
                        f"{spec.output_layer}")
    names = spec.classes()
    out = []
    for p in parts:
        out.extend([class_lists.unit_by_name(names, p, f"{spec.name} ({spec.dataset})")] if _is_name(p) else
                   numbers.unit_list(p))
    return list(dict.fromkeys(out))


def fetch_from(names: list[str], path: str) -> int:
    from . import network_files

    if len(names) != 1:
        raise UserError("--from takes one network name: fetch NAME --from FILE")
    dest = network_files.place(names[0], path)
    print(f"{names[0]}: {dest}")
    return 0


def cmd_add(args) -> int:
    from . import network_files

    e = network_files.add(args.name, args.arch, args.weights, classes=args.classes, num_classes=args.num_classes,
                          input_size=args.input_size, mean=args.mean, std=args.std)
    if args.json:
        print(json_out.dumps({"name": e.name, "arch": e.arch, "num_classes": e.num_classes,
                              "input_size": e.input_size, "output_layer": e.output_layer, "folder": e.folder}))
    else:
        print(f"added {e.name}: {e.arch}, {e.num_classes} classes, {e.input_size} px, output layer "
              f"{e.output_layer}; kept in {e.folder}")
    return 0


def cmd_remove(args) -> int:
    from . import user_networks

    folder = user_networks.remove(args.name)
    print(f"removed {args.name} ({folder})")
    return 0


def _floats(text: str) -> list[float]:
    """Three numbers in ASCII digits (`float` also reads "nan", "inf" and other scripts' digits)."""
    try:
        return [numbers.decimal(v) for v in text.replace(",", " ").split()]
    except numbers.NumberError:
        raise argparse.ArgumentTypeError(f"bad numbers {text!r}: write three, like 0.485,0.456,0.406") from None


def add_models_subcommands(models) -> None:
    sub = models.add_subparsers(dest="models_command", required=False, parser_class=type(models))
    s = sub.add_parser("add", help="add a network of your own from a weights file")
    s.add_argument("name", help="what to call it (lower-case letters, digits, _ . -)")
    s.add_argument("--arch", required=True, help="torchvision:<name> (torchvision:resnet18), timm:<name>, or "
                   "caffenet")
    s.add_argument("--weights", required=True, metavar="FILE", help="its state dict (.pt/.pth/.safetensors); "
                   "copied into the data folder, your file is left as it is")
    s.add_argument("--classes", default=None, metavar="FILE", help="class names, one per line")
    s.add_argument("--num-classes", type=whole_arg("--num-classes", high=class_lists.MAX_CLASSES, low=1), default=None,
                   help="default: the names in --classes, else what the file's last layer holds")
    s.add_argument("--input-size", type=whole_arg("--input-size", high=2048, low=16), default=None,
                   help="pixels (default: the architecture's usual)")
    s.add_argument("--mean", type=_floats, default=None, metavar="R,G,B", help="RGB [0,1] input mean")
    s.add_argument("--std", type=_floats, default=None, metavar="R,G,B", help="RGB [0,1] input std")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_add)
    s = sub.add_parser("remove", help="remove a network you added")
    s.add_argument("name")
    s.set_defaults(func=cmd_remove)
