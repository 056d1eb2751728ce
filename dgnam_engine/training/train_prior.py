"""Train a generator prior G that inverts an encoder E at one layer, the DeePSiM way (spec section 2.6).

codes = E(preprocess(photo crop)) are computed once (training/data.py); G learns G(code) ~ crop with an image
loss, a feature loss in a frozen comparator and an adversarial loss from a small discriminator, with Adam.
Training state goes to a checkpoint in the work folder every `ckpt_every` steps and on Ctrl-C / SIGTERM, and the
same command resumes from it. The result is one safetensors prior file plus its JSON card (priors.save_prior_file).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from .. import generators, json_out
from ..errors import UserError
from ..priors import save_prior_file
from ..targets import load_target
from . import data as D
from .losses import Comparator, Discriminator, d_loss, feature_loss, g_adv_loss, image_loss

CHECKPOINT = "checkpoint.pt"
# Settings that change what is trained: a checkpoint made with other values cannot be resumed.
_RESUME_KEYS = ("encoder", "layer", "size", "batch_size", "lr", "width", "fc_width", "d_width", "comparator_layer",
                "w_image", "w_feature", "w_adv", "crops_per_image", "heldout_fraction", "seed")


@dataclass
class TrainConfig:
    layer: str
    images: str
    out: str
    encoder: str = "efficientnet_lite0"
    name: Optional[str] = None  # default: the output file's stem
    title: Optional[str] = None
    depth: str = ""  # which original prior it plays: conv3 / pool5 / fc6 / fc7
    note: str = ""
    size: int = 128  # generator output, px
    steps: int = 2000
    batch_size: int = 16
    lr: float = 5e-4  # Adam, G and D; halved at 50 % and 75 % of the steps (DeePSiM's multistep schedule)
    width: int = 32  # generator width (generators.compact)
    fc_width: int = 512
    d_width: int = 32
    comparator_layer: str = "blocks.3"
    w_image: float = 10.0  # the normalised feature loss is ~1: this weight puts colours and layout first
    w_feature: float = 1.0
    w_adv: float = 0.02
    crops_per_image: int = 8
    # Code bounds: mean -/+ bound_std std per unit. 3 is the original's act_range/3x; for signed spatial codes a
    # tighter box keeps DGN-AM nearer the codes G was trained on (assets/priors/README.md measures it).
    bound_std: float = 3.0
    heldout_fraction: float = 0.1
    seed: int = 0
    device: str = "cpu"
    threads: Optional[int] = None
    work_dir: Optional[str] = None  # default: $DGNAM_DATA_DIR/train/<name> (DGNAM_DATA_DIR defaults to ./data)
    ckpt_every: int = 100
    log_every: int = 10
    restart: bool = False  # ignore an existing checkpoint
    extra: dict = field(default_factory=dict)  # recorded in the card as is (e.g. the command line)

    @property
    def prior_name(self) -> str:
        return self.name or Path(self.out).stem

    def resume_key(self) -> dict:
        d = asdict(self)
        return {k: d[k] for k in _RESUME_KEYS} | {"images": str(Path(self.images).resolve())}


class Interrupted(Exception):
    """Training stopped early (Ctrl-C, SIGTERM); the checkpoint holds everything done so far."""

    def __init__(self, step: int, ckpt: Path):
        super().__init__(f"interrupted at step {step}; checkpoint saved in {ckpt}. Run the same command again "
                         f"to resume.")
        self.step = step


def _validate(cfg: TrainConfig) -> None:
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise UserError("--steps and --batch-size must be at least 1")
    if cfg.size < 16 or cfg.size & (cfg.size - 1):
        raise UserError("--size must be a power of two, at least 16 (e.g. 64 or 128)")
    if not str(cfg.out).endswith(".safetensors"):
        raise UserError("--out must be a .safetensors file")
    from ..imaging import check_output_file

    check_output_file(cfg.out)  # a FIFO or a device in its place is refused before training, not replaced after
    check_output_file(Path(cfg.out).with_suffix(".json"), "its card")
    if not 0 <= cfg.heldout_fraction < 1:
        raise UserError("--heldout must be in [0, 1)")
    if not cfg.bound_std > 0:
        raise UserError("--bound-std must be positive")


def _work_dir(cfg: TrainConfig) -> Path:
    if cfg.work_dir:
        return Path(cfg.work_dir)
    return Path(os.environ.get("DGNAM_DATA_DIR", "data")) / "train" / cfg.prior_name


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _first_line(exc: Exception) -> str:
    return ((str(exc).strip().splitlines() or [type(exc).__name__])[0])[:160]


def _load_checkpoint(path: Path, dev) -> dict:
    """The training checkpoint; one that is cut short or damaged (a kill while writing it elsewhere, a full disk)
    gives a line saying so and how to start over, not the zip reader's traceback."""
    try:
        ck = torch.load(path, map_location=dev, weights_only=True)
    except Exception as exc:
        raise UserError(f"the training checkpoint {path} is damaged or cut short ({_first_line(exc)}); run the "
                        "same command with --restart to start again") from None
    if not isinstance(ck, dict) or not {"key", "gen", "disc", "opt_g", "opt_d", "state"} <= set(ck):
        raise UserError(f"{path} is not a training checkpoint of this program; run the same command with "
                        "--restart to start again")
    return ck


def _clear_cache(cache: Path, log: Callable[[str], None]) -> None:
    """--restart: the crops and codes are made again too, so a damaged cache file cannot survive a restart."""
    removed = 0
    for f in list(cache.glob("crops-*.pt")) + list(cache.glob("codes-*.pt")):
        try:
            f.unlink()
            removed += 1
        except OSError:
            pass
    if removed:
        log(f"--restart: cleared {removed} cached crops/codes files in {cache}")


def _fmt_time(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def compute_bounds(codes: torch.Tensor, n_std: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-unit mean -/+ n_std std (the original act_range/3x files); lower >= 0 for units that are never negative."""
    mean, std = codes.mean(0), codes.std(0)
    lower, upper = mean - n_std * std, mean + n_std * std
    lower = torch.where(codes.amin(0) >= 0, lower.clamp_min(0), lower)
    return lower, upper


@torch.no_grad()
def heldout_error(gen: torch.nn.Module, ds: D.Dataset, batch: int = 32) -> dict:
    """Mean squared pixel error ([0,1] scale) of G(E(x)) on held-out photos, next to the mean training image."""
    if len(ds.heldout) == 0:
        return {}
    real = D.to_gen(torch.from_numpy(ds.heldout)) / 255.0
    fake = torch.cat([gen(ds.heldout_codes[i:i + batch]) for i in range(0, len(real), batch)]) / 255.0
    mean_img = D.to_gen(torch.from_numpy(ds.crops)).mean(0, keepdim=True) / 255.0
    return {"photos": len(real), "mse": float((fake - real).pow(2).mean()),
            "mean_image_mse": float((mean_img - real).pow(2).mean())}


def _lr_at(cfg: TrainConfig, step: int) -> float:
    return cfg.lr * (0.5 if step >= cfg.steps // 2 else 1.0) * (0.5 if step >= 3 * cfg.steps // 4 else 1.0)


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Train (or resume) and write the prior file; returns its card."""
    _validate(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    work = _work_dir(cfg)
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / CHECKPOINT
    target = load_target(cfg.encoder, cfg.device)
    layer = target.layer(cfg.layer)  # UserError for an unknown layer, before any work
    comparator = Comparator(target, cfg.comparator_layer)
    cache = work.parent / "cache"
    if cfg.restart:
        _clear_cache(cache, log)
    try:
        ds = D.prepare(cfg.images, target, layer.name, cfg.size, cfg.crops_per_image, cfg.heldout_fraction,
                       cfg.seed, cache, log)
    except UserError:
        raise
    except Exception as exc:  # a cache file cut short or damaged: torch's zip reader says it in its own words
        raise UserError(f"a cached crops/codes file in {cache} is damaged ({_first_line(exc)}); run the same "
                        "command with --restart to clear the cache and start again") from None
    code_shape = tuple(ds.codes.shape[1:])
    arch_kwargs = {"code_shape": list(code_shape), "width": cfg.width, "out_size": cfg.size,
                   "fc_width": cfg.fc_width}

    torch.manual_seed(cfg.seed)
    dev = target.device
    gen = generators.build("compact", **arch_kwargs).to(dev)
    disc = Discriminator(cfg.d_width).to(dev)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    state = {"step": 0, "seconds": 0.0, "d_on": True, "adv_on": True, "history": []}

    if ckpt_path.is_file() and not cfg.restart:
        ck = _load_checkpoint(ckpt_path, dev)
        if ck["key"] != cfg.resume_key():
            raise UserError(f"{ckpt_path} was made with other settings; use --restart to start again or "
                            f"another --work-dir")
        gen.load_state_dict(ck["gen"])
        disc.load_state_dict(ck["disc"])
        opt_g.load_state_dict(ck["opt_g"])
        opt_d.load_state_dict(ck["opt_d"])
        state = ck["state"]
        log(f"resuming from {ckpt_path} at step {state['step']}/{cfg.steps}")

    def save_ckpt():
        _save_atomic({"key": cfg.resume_key(), "gen": gen.state_dict(), "disc": disc.state_dict(),
                      "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "state": state}, ckpt_path)

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum  # finish the step in hand, then save and stop

    old_handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old_handlers[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread: only the checkpoints protect the run
            pass

    n = len(ds.crops)
    crops = torch.from_numpy(ds.crops)
    log(f"training {cfg.prior_name}: {cfg.encoder}:{layer.name} code {code_shape} -> {cfg.size} px, "
        f"{sum(p.numel() for p in gen.parameters()) / 1e6:.2f} M parameters, {n} crops, batch {cfg.batch_size}, "
        f"{cfg.steps} steps on {dev} ({torch.get_num_threads()} threads)")
    window: list[list[float]] = []
    t_run, step_run0 = time.perf_counter(), state["step"]
    try:
        while state["step"] < cfg.steps:
            step = state["step"]
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # the same batches after a resume
            idx = torch.randint(n, (cfg.batch_size,), generator=g)
            real = D.to_gen(crops[idx]).to(dev)
            code = ds.codes[idx].to(dev)
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["lr"] = _lr_at(cfg, step)

            fake = gen(code)
            # Discriminator, switched off while it wins too clearly (DeePSiM's loss-ratio rule).
            with torch.set_grad_enabled(state["d_on"]):
                ld = d_loss(disc(real), disc(fake.detach()))
            if state["d_on"]:
                opt_d.zero_grad(set_to_none=True)
                ld.backward()
                opt_d.step()
            # Generator.
            with torch.no_grad():
                f_real = comparator(real)
            li = image_loss(fake, real)
            lf = feature_loss(comparator(fake), f_real)
            la = g_adv_loss(disc(fake))
            loss = cfg.w_image * li + cfg.w_feature * lf + (cfg.w_adv * la if state["adv_on"] else 0.0)
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()

            ratio = ld.item() / max(la.item(), 1e-8)
            state["d_on"] = ratio > 0.5 or (state["d_on"] and ratio >= 0.1)
            state["adv_on"] = ratio <= 10.0
            state["step"] = step + 1
            window.append([li.item(), lf.item(), la.item(), ld.item()])
            if state["step"] % cfg.log_every == 0 or state["step"] == cfg.steps:
                m = [sum(c) / len(c) for c in zip(*window)]
                window.clear()
                elapsed = time.perf_counter() - t_run
                done = state["step"] - step_run0
                ips = done * cfg.batch_size / max(elapsed, 1e-9)
                eta = (cfg.steps - state["step"]) * elapsed / max(done, 1)
                state["history"].append({"step": state["step"], "image": m[0], "feature": m[1], "adv": m[2],
                                         "d": m[3]})
                log(f"step {state['step']}/{cfg.steps}  image {m[0]:.4f}  feature {m[1]:.4f}  adv {m[2]:.3f}  "
                    f"D {m[3]:.3f}{'' if state['d_on'] else ' (off)'}  {ips:.1f} img/s  "
                    f"left {_fmt_time(eta)}")
            if state["step"] % cfg.ckpt_every == 0 or stop["signal"] is not None:
                state["seconds"] += time.perf_counter() - t_run
                t_run, step_run0 = time.perf_counter(), state["step"]
                save_ckpt()
                if stop["signal"] is not None:
                    raise Interrupted(state["step"], ckpt_path)
        state["seconds"] += time.perf_counter() - t_run
        save_ckpt()
    finally:
        for sig, h in old_handlers.items():
            signal.signal(sig, h)

    gen.eval()
    lower, upper = compute_bounds(ds.codes, cfg.bound_std)
    held = heldout_error(gen.cpu(), ds)
    last = state["history"][-5:]
    final = {k: round(sum(h[k] for h in last) / len(last), 5) for k in ("image", "feature", "adv", "d")} \
        if last else {}
    name = cfg.prior_name
    card = {
        "name": name,
        "title": cfg.title or f"{name} (trained, inverts {cfg.encoder}:{layer.name})",
        "arch": "compact", "arch_kwargs": arch_kwargs, "code_shape": list(code_shape),
        "encoder": cfg.encoder, "layer": layer.name, "depth": cfg.depth,
        "note": cfg.note or (f"Trained on a small corpus of {len(ds.train_files)} photos; the original priors give "
                             f"paper-quality images (python -m dgnam_engine fetch fc6)."),
        "bounds": f"per unit mean -/+ {cfg.bound_std:g} std of the training codes; lower clamped at 0 for "
                  f"never-negative units",
        "training": {
            "images": Path(cfg.images).name, "photos": len(ds.train_files), "crops": len(ds.crops),
            "heldout_photos": len(ds.heldout_files), "heldout_files": ds.heldout_files, "steps": state["step"],
            "batch_size": cfg.batch_size,
            "lr": cfg.lr, "optimizer": "Adam(0.9, 0.999), lr halved at 50% and 75%",
            "losses": {"image": cfg.w_image, "feature": cfg.w_feature, "adversarial": cfg.w_adv,
                       "comparator": f"{cfg.encoder}:{cfg.comparator_layer}"},
            "size": cfg.size, "seed": cfg.seed, "device": str(dev), "threads": torch.get_num_threads(),
            "seconds": round(state["seconds"], 1), "final_losses": final, **cfg.extra,
        },
        "heldout": held,
    }
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_prior_file(out, gen, lower, upper, card)
    if held:
        log(f"held-out reconstruction MSE {held['mse']:.4f} (mean image {held['mean_image_mse']:.4f}, "
            f"{held['photos']} photos)")
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {out.with_suffix('.json')}")
    return card


def main_entry(cfg: TrainConfig) -> int:
    """Command-line wrapper: progress to stdout, an interruption is a clean exit 130."""
    def log(msg):
        print(msg, flush=True)
    try:
        card = train(cfg, log)
    except Interrupted as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 130
    print(json_out.dumps({"out": cfg.out, "name": card["name"], "steps": card["training"]["steps"],
                      "final_losses": card["training"]["final_losses"], "heldout": card["heldout"]}))
    return 0

