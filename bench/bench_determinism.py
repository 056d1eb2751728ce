"""Same request, same picture? Measures how much a unit's picture depends on its batch mates and on the CPU thread
count, on a real network (EfficientNet-Lite0 with the default demo prior), and what batching buys.

    python bench/bench_determinism.py --iters 200 --json

For each path (plain fp32, the default fast path): bee (309) rendered alone and in a batch with two other classes,
same seed; the same batch with the process set to 1 thread and to its usual count (every pass keeps the machine's
fixed count, accel.cpu_pass_threads, so this must not matter); and the batch again. Reports the final activations
and the mean absolute pixel difference (0-255) of the pictures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dgnam_engine  # noqa: E402,F401  (first: sets how OpenMP threads wait, before torch loads)
import torch  # noqa: E402

from dgnam_engine import runner  # noqa: E402
from dgnam_engine.accel import cpu_pass_threads, cpu_threads  # noqa: E402


def render(units, settings, threads=None):
    t = time.perf_counter()
    with cpu_threads(threads or torch.get_num_threads()):
        res = runner.visualize("efficientnet_lite0", units, settings=settings)
    return res, time.perf_counter() - t


def diff(a, b) -> float:
    return float(np.abs(a.image.astype(np.float32) - b.image.astype(np.float32)).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--paths", default="plain,auto")
    args = ap.parse_args()
    out = {"threads": torch.get_num_threads(), "pass_threads": cpu_pass_threads(), "iters": args.iters}
    for path in args.paths.split(","):
        s = runner.Settings(n_iters=args.iters, accel=path)
        (alone,), t_alone = render([309], s)
        batch, t_batch = render([309, 1, 985], s)
        one_thread, _ = render([309, 1, 985], s, threads=1)
        again, _ = render([309, 1, 985], s)
        out[path] = {
            "alone_activation": alone.activation_final, "batch_activation": batch[0].activation_final,
            "alone_vs_batch_pixels": diff(alone, batch[0]),
            "threads_1_vs_n_pixels": max(diff(a, b) for a, b in zip(one_thread, batch)),
            "repeat_pixels": max(diff(a, b) for a, b in zip(again, batch)),
            "seconds_alone": t_alone, "seconds_batch_of_3": t_batch,
        }
    print(json.dumps(out, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
