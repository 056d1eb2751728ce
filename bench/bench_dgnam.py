"""Time DGN-AM: the optimised path against the plain baseline (fp32 eager, one unit at a time), side by side.

    python bench/bench_dgnam.py --device cpu --json
    python bench/bench_dgnam.py --device cuda --batch auto,256,1000 --all-units --json

Random weights (timing does not depend on them): the target from the registry with random_weights, and the prior's
architecture with the test suite's well-scaled random init and the prior's real bounds. Baseline and optimised runs
alternate round by round, so load from other processes hits both alike; the table gives medians.
See bench/README.md for every field.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dgnam_engine  # noqa: E402,F401  (first: sets how OpenMP threads wait, before torch loads)
import torch  # noqa: E402

from dgnam_engine import accel as A  # noqa: E402
from dgnam_engine import dgnam, generators, worker  # noqa: E402
from dgnam_engine import priors as P  # noqa: E402
from dgnam_engine import targets as T  # noqa: E402
from dgnam_engine.errors import UserError  # noqa: E402
from dgnam_engine.objectives import UnitObjective  # noqa: E402

UNIT_STEPS = 200  # the figures are per unit at 200 steps, the paper's setting
PREVIEW_EVERY = 5  # the dashboard worker's preview interval (worker.Worker.submit)


def load_prior(name: str, device: torch.device):
    """(generator, lower, upper): original priors as random well-scaled generators with their real bounds;
    trained (file) priors as they are."""
    if name in P.ORIGINAL_PRIORS:
        spec = P.ORIGINAL_PRIORS[name]
        torch.manual_seed(0)
        gen = generators.responsive(generators.build(spec.arch, **spec.arch_kwargs), spec.code_shape)
        upper = P.read_bounds(spec.bounds_file, spec.code_shape)
        lower = torch.zeros_like(upper)
    else:
        pr = P.load_prior(name, None, "cpu")
        gen, lower, upper = pr.generator, pr.lower, pr.upper
    return gen.eval().requires_grad_(False).to(device), lower.to(device), upper.to(device)


class Bench:
    def __init__(self, args):
        self.dev = T.resolve_device(args.device)
        self.target = T.load_target(args.model, str(self.dev), random_weights=True)
        self.layer = self.target.layer(args.layer)
        self.gen, self.lower, self.upper = load_prior(args.prior, self.dev)
        self.lr = (self.target.spec.lr[0] * float((self.upper - self.lower).mean() / P.fc6_bound_scale()),
                   self.target.spec.lr[1])

    def run(self, units, n_iters, accel, seeds=None, callback=None, preview_every=0):
        seeds = seeds if seeds is not None else list(range(len(units)))
        res = dgnam.run(self.gen, self.target, self.layer, units, lower=self.lower, upper=self.upper, seeds=seeds,
                        n_iters=n_iters, lr_start=self.lr[0], lr_end=self.lr[1], accel=accel, callback=callback,
                        preview_every=preview_every)
        return res

    def timed(self, units, n_iters, accel):
        """(wall seconds, process CPU seconds, result)."""
        sync(self.dev)
        t, c = time.perf_counter(), time.process_time()
        res = self.run(units, n_iters, accel)
        sync(self.dev)
        return time.perf_counter() - t, time.process_time() - c, res

    def activations_on(self, codes, unit, accel):
        """The unit's activation for fixed codes through the plain or the optimised modules."""
        gen, tgt = (self.gen, self.target) if accel is None else A.prepare(self.gen, self.target, accel)
        with torch.no_grad():
            x = gen(codes.to(self.dev)).float()
            u = torch.full((codes.shape[0],), unit, device=self.dev)
            return tgt.unit_activations(x, self.layer, u).float().cpu()


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def peak_memory(dev) -> int:
    if dev.type == "cuda":
        return int(torch.cuda.max_memory_allocated(dev))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def parse_accel(args, dev) -> A.Accel:
    acc = A.for_device(dev)
    if args.dtype != "auto":
        acc = replace(acc, dtype=args.dtype)
    if args.compile:
        acc = replace(acc, compile=True)
    if args.no_graph:
        acc = replace(acc, cuda_graph=False)
    return acc


def factor_variants(acc: A.Accel) -> dict[str, A.Accel]:
    """Each optimisation added one at a time on top of the plain path, ending at the chosen settings."""
    steps = {"+channels_last": A.Accel(channels_last=True)}
    if acc.dtype != "float32":
        steps[f"+{acc.dtype}"] = A.Accel(dtype=acc.dtype, channels_last=True)
    if acc.fast_linear:
        steps["+fast_linear"] = A.Accel(dtype=acc.dtype, channels_last=True, fast_linear=True)
    if acc.int8_linear:
        steps["+int8_linear"] = A.Accel(dtype=acc.dtype, channels_last=True, fast_linear=True, int8_linear=True)
    if acc.cuda_graph:
        steps["+cuda_graph"] = replace(acc, compile=False)
    if acc.compile:
        steps["+compile"] = acc
    return steps


class Stepper:
    """One real run of `n` steps on one unit, advanced a step at a time, so that several paths can be interleaved
    step by step: under bursts of load from other processes, per-step medians stay comparable."""

    def __init__(self, b: Bench, accel, unit: int, n: int, threads: Optional[int] = None):
        gen, tgt = (b.gen, b.target) if accel is None else A.prepare(b.gen, b.target, accel)
        # the thread count dgnam.run uses on a CPU (fixed per machine: accel.cpu_pass_threads), unless one is asked for
        self.threads = threads or (A.cpu_pass_threads() if b.dev.type == "cpu" else torch.get_num_threads())
        param = dgnam.CodeParam(gen, b.lower.unsqueeze(0).to(b.dev), b.upper.unsqueeze(0).to(b.dev))
        self.step = dgnam.make_step(param, UnitObjective(b.layer, torch.tensor([unit], device=b.dev)), tgt)
        self.b, self.n, self.i = b, n, 0
        self.h = dgnam.initial_codes([0], b.lower.shape).to(b.dev)
        self.active = torch.ones(1, dtype=torch.bool, device=b.dev)
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.activation = float("nan")

    def advance(self) -> None:
        lr = dgnam.lr_at(self.i, self.n, *self.b.lr)
        n = self.threads
        with A.cpu_threads(n):
            t, c = time.perf_counter(), time.process_time()
            a, _view, self.h, self.active = self.step(self.h, self.active, lr)
            sync(self.b.dev)
            self.wall.append(time.perf_counter() - t)
            self.cpu.append(time.process_time() - c)
        self.activation = float(a[0])
        self.i += 1


def interleaved(b: Bench, variants: dict, unit: int, steps: int, log) -> dict[str, Stepper]:
    """variants: name -> accel, or (accel, threads)."""
    variants = {k: v if isinstance(v, tuple) else (v, None) for k, v in variants.items()}
    for a, _ in variants.values():
        b.run([unit], 2, a)  # warm-up: conversion, allocator, kernel choice
    runs = {k: Stepper(b, a, unit, steps, n) for k, (a, n) in variants.items()}
    for i in range(steps):
        for r in runs.values():
            r.advance()
        if (i + 1) % 50 == 0 or i + 1 == steps:
            log(f"step {i + 1}/{steps}: " + ", ".join(f"{k} {statistics.median(r.wall) * 1e3:.1f} ms"
                                                     for k, r in runs.items()))
    return runs


def bench_single(b: Bench, acc: A.Accel, steps: int, repeats: int, per_step: bool, log) -> dict:
    """Plain against optimised on one unit: interleaved step by step (per_step, the CPU default; medians of the
    steps) or as whole runs in alternating rounds (the GPU default: a CUDA graph only exists inside a run)."""
    unit = min(1, b.layer.units - 1)
    t = time.perf_counter()
    b.run([unit], 3, acc)
    out = {"optimized_first_call_seconds": time.perf_counter() - t, "timing": "per_step" if per_step else "runs"}
    if per_step:
        # plain_1_thread: the reference with one thread, to show what the thread choice alone is worth
        runs = interleaved(b, {"plain": None, "optimized": acc, "plain_1_thread": (None, 1)}, unit, steps, log)
        for name, key in (("plain", "baseline"), ("optimized", "optimized"), ("plain_1_thread", "plain_1_thread")):
            r = runs[name]
            out[f"{key}_unit_seconds"] = statistics.median(r.wall) * UNIT_STEPS
            out[f"{key}_unit_cpu_seconds"] = statistics.median(r.cpu) * UNIT_STEPS
            out[f"{key}_run_seconds"] = sum(r.wall) * UNIT_STEPS / steps
        out["optimized_threads"] = runs["optimized"].threads
        out["speedup_vs_plain_1_thread"] = out["plain_1_thread_unit_seconds"] / out["optimized_unit_seconds"]
        out.update(limit_figures(b, unit, out["optimized_unit_seconds"], runs["optimized"].threads))
        finals = {k: (r.activation, r.h) for k, r in runs.items()}
    else:
        wall = {"plain": [], "optimized": []}
        cpu = {"plain": [], "optimized": []}
        finals = {}
        b.run([unit], 3, None)
        for r in range(repeats):
            for name, a in (("plain", None), ("optimized", acc)):
                sec, csec, res = b.timed([unit], steps, a)
                wall[name].append(sec * UNIT_STEPS / steps)
                cpu[name].append(csec * UNIT_STEPS / steps)
                finals[name] = (float(res.activations[-1, 0]), res.codes)
            log(f"round {r + 1}/{repeats}: plain {wall['plain'][-1]:.3f} s, optimized "
                f"{wall['optimized'][-1]:.3f} s per unit")
        for name, key in (("plain", "baseline"), ("optimized", "optimized")):
            out[f"{key}_unit_seconds"] = statistics.median(wall[name])
            out[f"{key}_unit_cpu_seconds"] = statistics.median(cpu[name])
            out[f"{key}_runs"] = wall[name]
    out["speedup"] = out["baseline_unit_seconds"] / out["optimized_unit_seconds"]
    out["cpu_time_speedup"] = out["baseline_unit_cpu_seconds"] / out["optimized_unit_cpu_seconds"]
    # Accuracy: the same codes through both paths, and where each run ended.
    codes = torch.cat([finals["plain"][1].cpu(), dgnam.initial_codes([0], b.lower.shape)])
    ref = b.activations_on(codes, unit, None)
    got = b.activations_on(codes, unit, acc)
    scale = ref.abs().max().clamp_min(1e-12)
    out["activation_check"] = {
        "same_code_plain": ref.tolist(), "same_code_optimized": got.tolist(),
        "same_code_max_rel_error": float((got - ref).abs().max() / scale),
        "final_plain": finals["plain"][0], "final_optimized": finals["optimized"][0]}
    log(f"single unit: plain {out['baseline_unit_seconds']:.3f} s, optimized {out['optimized_unit_seconds']:.3f} s "
        f"per unit ({UNIT_STEPS} steps)")
    return out


BF16_PEAK_GFLOPS_PER_CORE = 345.0  # issue 21's limit estimate: 1.38 TFLOP in 2 s on 2 cores at the bf16 peak


def step_gflop(b: Bench, unit: int) -> float:
    """GFLOP of one step as the plain path computes it (generator and target forward, input gradient back),
    counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    h = dgnam.initial_codes([0], b.lower.shape).to(b.dev).requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        UnitObjective(b.layer, torch.tensor([unit], device=b.dev))(b.target, b.gen(h)).sum().backward()
    return counter.get_total_flops() / 1e9


def limit_figures(b: Bench, unit: int, optimized_unit_seconds: float, threads: int) -> dict:
    """How close the optimised single unit comes to the arithmetic limit of the cores it uses (CPU)."""
    gflop = step_gflop(b, unit)
    peak = BF16_PEAK_GFLOPS_PER_CORE * threads
    limit = gflop * UNIT_STEPS / peak
    return {"step_gflop": gflop, "achieved_gflops_per_second": gflop * UNIT_STEPS / optimized_unit_seconds,
            "peak_gflops_per_second": peak, "limit_unit_seconds": limit,
            "limit_fraction": limit / optimized_unit_seconds}


def bench_factors(b: Bench, acc: A.Accel, steps: int, log) -> list[dict]:
    """Each optimisation added one at a time, all interleaved step by step in one run."""
    runs = interleaved(b, {"plain": None, **factor_variants(acc)}, min(1, b.layer.units - 1), steps, log)
    base = statistics.median(runs["plain"].wall)
    return [{"variant": k, "unit_seconds": statistics.median(r.wall) * UNIT_STEPS,
             "speedup": base / statistics.median(r.wall)} for k, r in runs.items()]


def bench_live(b: Bench, acc: A.Accel, steps: int, repeats: int, log) -> dict:
    """One unit as the dashboard runs it: the optimised path with the worker's own progress callback
    (worker.Job._on_step: activations every step, a preview picture every PREVIEW_EVERY steps). Whole runs of
    `steps` steps (after a warm-up), the median scaled to 200 steps; on a CPU one run."""
    unit = min(1, b.layer.units - 1)

    def live(n: int):
        job = worker.Job(worker.Request(model=b.target.name, units=[unit]), None, PREVIEW_EVERY)
        sync(b.dev)
        t = time.perf_counter()
        res = b.run([unit], n, acc, callback=job._on_step, preview_every=PREVIEW_EVERY)
        sync(b.dev)
        sec = time.perf_counter() - t
        assert job.step == n and job.preview is not None, "the callback did not see every step and a preview"
        return sec, res

    live(3)  # warm-up: conversion, allocator, kernel choice, a first capture
    runs = [live(steps) for _ in range(repeats if b.dev.type == "cuda" else 1)]
    secs = [sec * UNIT_STEPS / steps for sec, _ in runs]
    log(f"live unit (progress every step, preview every {PREVIEW_EVERY}): {statistics.median(secs):.3f} s per unit, "
        f"graph captured: {runs[-1][1].graph_captured}")
    return {"live_unit_seconds": statistics.median(secs), "live_runs": secs,
            "graph_captured": runs[-1][1].graph_captured}


def auto_batch(b: Bench, acc: A.Accel) -> int:
    """accel.auto_batch_size as precompute uses it: probe runs of the real path (the graph on), then one
    confirming run at the chosen size; on a CPU accel.CPU_BATCH."""
    def probe(k: int) -> None:
        b.run([0] * k, A.PROBE_STEPS, acc)
    return A.auto_batch_size(b.layer.units, b.dev, probe)


def bench_batches(b: Bench, acc: A.Accel, sizes: list, steps: int, auto: int, log) -> list[dict]:
    rows = []
    for size in sizes:
        if size == "auto":
            size = auto
        units = [u % b.layer.units for u in range(size)]
        b.run(units, 2, acc)  # warm-up at this shape
        sec, _, _ = b.timed(units, steps, acc)
        rows.append({"batch": size, "steps": steps, "seconds": sec, "unit_steps_per_second": size * steps / sec})
        log(f"batch {size}: {size * steps / sec:,.0f} unit-steps/s")
    return rows


def bench_all_units(b: Bench, acc: A.Accel, steps: int, batch: int) -> dict:
    """Every unit of the layer, `steps` steps each, in batches as large as fit: the GPU goal's measurement."""
    n = b.layer.units
    sync(b.dev)
    t = time.perf_counter()
    for s in range(0, n, batch):
        units = list(range(s, min(n, s + batch)))
        b.run(units, steps, acc)
    sync(b.dev)
    sec = time.perf_counter() - t
    return {"units": n, "steps": steps, "batch": batch, "seconds": sec, "unit_steps_per_second": n * steps / sec}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--model", default="alexnet")
    p.add_argument("--layer", default=None, help="default: the output layer")
    p.add_argument("--prior", default="fc6")
    p.add_argument("--steps", type=int, default=UNIT_STEPS, help="steps of each single-unit run")
    p.add_argument("--timing", choices=["per_step", "runs"], default=None,
                   help="interleave plain and optimised step by step (cpu default) or as whole runs (cuda default)")
    p.add_argument("--repeats", type=int, default=3, help="with --timing runs: alternating rounds")
    p.add_argument("--batch", default=None, help="batch sizes, e.g. 8,32 or auto,1000 (default: cpu 4,16; cuda auto)")
    p.add_argument("--batch-steps", type=int, default=None, help="steps per batched run (default: cpu 10, cuda 200)")
    p.add_argument("--all-units", action="store_true", help="also time every unit of the layer (the GPU goal)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--compile", action="store_true", help="torch.compile the generator and the target")
    p.add_argument("--no-graph", action="store_true", help="no CUDA graph")
    p.add_argument("--factors", action="store_true", help="time each optimisation's contribution")
    p.add_argument("--factor-steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=None, help="CPU threads of each pass (default: the product's "
                   "fixed count, accel.cpu_pass_threads)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    try:
        b = Bench(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:  # every pass of dgnam.run with this count, as DGNAM_CPU_THREADS sets it for the product
        os.environ[A.THREADS_ENV] = str(args.threads)
    torch.set_num_threads(A.cpu_pass_threads())
    cuda = b.dev.type == "cuda"
    steps = args.steps
    acc = parse_accel(args, b.dev)
    sizes = [s if s == "auto" else int(s) for s in (args.batch or ("auto" if cuda else "4,16")).split(",")]
    batch_steps = args.batch_steps or (UNIT_STEPS if cuda else 10)
    if cuda:
        torch.cuda.reset_peak_memory_stats(b.dev)
    log(f"{args.model} {b.layer.name} + {args.prior} on {b.dev} ({torch.get_num_threads()} threads), "
        f"optimized = {asdict(acc)}")
    result = {"device": str(b.dev), "device_name": torch.cuda.get_device_name(b.dev) if cuda else platform.processor()
              or platform.machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "model": args.model, "layer": b.layer.name, "prior": args.prior, "steps_timed": steps,
              "unit_steps": UNIT_STEPS, "accel": asdict(acc), "load_average_before": os.getloadavg()[0]}
    per_step = args.timing == "per_step" if args.timing else not cuda
    result.update(bench_single(b, acc, steps, args.repeats, per_step, log))
    result.update(bench_live(b, acc, steps, args.repeats, log))
    if args.factors:
        result["factors"] = bench_factors(b, acc, args.factor_steps, log)
    result["batch_size"] = auto_batch(b, acc)
    log(f"auto batch size: {result['batch_size']}")
    result["batches"] = bench_batches(b, acc, sizes, batch_steps, result["batch_size"], log)
    result["batch_unit_steps_per_second"] = max(r["unit_steps_per_second"] for r in result["batches"])
    result["baseline_unit_steps_per_second"] = UNIT_STEPS / result["baseline_unit_seconds"]
    result["batch_speedup"] = result["batch_unit_steps_per_second"] / result["baseline_unit_steps_per_second"]
    if args.all_units:
        result["all_units"] = bench_all_units(b, acc, UNIT_STEPS,
                                              result["batch_size"] if sizes[0] == "auto" else sizes[0])
    result["peak_memory_bytes"] = peak_memory(b.dev)
    result["load_average_after"] = os.getloadavg()[0]
    print_table(result)
    if args.json:
        print(json.dumps(result))
    return 0


def print_table(r: dict) -> None:
    out = sys.stderr if "--json" in sys.argv else sys.stdout
    rows = [("single unit, plain fp32 eager", f"{r['baseline_unit_seconds']:.2f} s", "1.00x"),
            ("  same, process CPU time", f"{r['baseline_unit_cpu_seconds']:.2f} s cpu", "1.00x"),
            ("single unit, optimized", f"{r['optimized_unit_seconds']:.2f} s", f"{r['speedup']:.2f}x"),
            ("  same, process CPU time", f"{r['optimized_unit_cpu_seconds']:.2f} s cpu",
             f"{r['cpu_time_speedup']:.2f}x")]
    rows.append((f"live unit (progress, preview every {PREVIEW_EVERY})", f"{r['live_unit_seconds']:.2f} s",
                 f"{r['baseline_unit_seconds'] / r['live_unit_seconds']:.2f}x"))
    if "plain_1_thread_unit_seconds" in r:
        rows.insert(2, ("  plain with 1 thread (reference)", f"{r['plain_1_thread_unit_seconds']:.2f} s",
                        f"{r['baseline_unit_seconds'] / r['plain_1_thread_unit_seconds']:.2f}x"))
    if "limit_fraction" in r:
        rows.append(("  arithmetic limit of its cores (bf16 peak)", f"{r['limit_unit_seconds']:.2f} s",
                     f"{r['limit_fraction']:.0%}"))
    for f in r.get("factors", []):
        rows.append((f"  factor {f['variant']}", f"{f['unit_seconds']:.2f} s", f"{f['speedup']:.2f}x"))
    base_rate = r["baseline_unit_steps_per_second"]
    for bt in r["batches"]:
        rows.append((f"batch {bt['batch']}", f"{bt['unit_steps_per_second']:,.0f} unit-steps/s",
                     f"{bt['unit_steps_per_second'] / base_rate:.2f}x"))
    if "all_units" in r:
        au = r["all_units"]
        rows.append((f"all {au['units']} units x {au['steps']} steps", f"{au['seconds']:.2f} s",
                     f"{au['unit_steps_per_second'] / base_rate:.2f}x"))
    chk = r["activation_check"]
    print(f"{r['model']} {r['layer']} + {r['prior']}, {r['device']} ({r['device_name']}), "
          f"per unit = {r['unit_steps']} steps", file=out)
    w = max(len(x[0]) for x in rows)
    for name, val, ratio in rows:
        print(f"  {name.ljust(w)}  {val:>26}  {ratio:>7}", file=out)
    print(f"  graph captured: {r['graph_captured']}; auto batch size: {r['batch_size']}", file=out)
    print(f"  same-code activation error {chk['same_code_max_rel_error']:.2%}; final activation plain "
          f"{chk['final_plain']:.3g}, optimized {chk['final_optimized']:.3g}; peak memory "
          f"{r['peak_memory_bytes'] / 2**20:.0f} MiB", file=out)


if __name__ == "__main__":
    sys.exit(main())
