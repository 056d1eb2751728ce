"""`dgnam train-prior`: its parser and command (listed in dgnam_engine.cli.COMMANDS)."""
from __future__ import annotations

import shlex
import sys


def cmd_train_prior(args) -> int:
    from .train_prior import TrainConfig, main_entry

    cfg = TrainConfig(
        layer=args.layer, images=args.images, out=args.out, encoder=args.encoder, name=args.name,
        title=args.title, depth=args.depth, size=args.size, steps=args.steps, batch_size=args.batch_size,
        lr=args.lr, width=args.width, fc_width=args.fc_width, comparator_layer=args.comparator_layer,
        w_image=args.w_image, w_feature=args.w_feature, w_adv=args.w_adv, crops_per_image=args.crops_per_image,
        bound_std=args.bound_std,
        heldout_fraction=args.heldout, seed=args.seed, device=args.device, threads=args.threads,
        work_dir=args.work_dir, ckpt_every=args.ckpt_every, log_every=args.log_every, restart=args.restart,
        extra={"command": "python -m dgnam_engine " + shlex.join(sys.argv[1:])} if sys.argv[1:] else {})
    return main_entry(cfg)


def add_parser(sub) -> None:
    s = sub.add_parser("train-prior", help="train a generator prior that inverts a model layer (DeePSiM)")
    s.add_argument("--encoder", default="efficientnet_lite0", help="the model whose codes G inverts")
    s.add_argument("--layer", required=True, help="the encoder layer (see `layers MODEL`)")
    s.add_argument("--images", required=True, help="a folder of photos (searched recursively)")
    s.add_argument("--out", required=True, help="the prior file to write, NAME.safetensors (+ NAME.json)")
    s.add_argument("--name", default=None, help="prior name (default: the file name)")
    s.add_argument("--title", default=None)
    s.add_argument("--depth", default="", choices=["", "conv3", "pool5", "fc6", "fc7"],
                   help="which original prior it stands in for")
    s.add_argument("--size", type=int, default=128, help="generator output size in px")
    s.add_argument("--steps", type=int, default=2000)
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--lr", type=float, default=5e-4)
    s.add_argument("--width", type=int, default=32, help="generator width")
    s.add_argument("--fc-width", type=int, default=512, help="hidden FC width for vector codes")
    s.add_argument("--comparator-layer", default="blocks.3", help="encoder layer for the feature loss")
    s.add_argument("--w-image", type=float, default=10.0)
    s.add_argument("--w-feature", type=float, default=1.0)
    s.add_argument("--w-adv", type=float, default=0.02)
    s.add_argument("--crops-per-image", type=int, default=8)
    s.add_argument("--bound-std", type=float, default=3.0,
                   help="code bounds: per-unit mean -/+ this many std of the training codes (original: 3)")
    s.add_argument("--heldout", type=float, default=0.1, help="fraction of photos held out for evaluation")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    s.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    s.add_argument("--work-dir", default=None, help="checkpoints and code cache (default data/train/NAME)")
    s.add_argument("--ckpt-every", type=int, default=100)
    s.add_argument("--log-every", type=int, default=10)
    s.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    s.set_defaults(func=cmd_train_prior)

