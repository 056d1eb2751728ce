"""Time what a person waits for in the dashboard, in a real browser, on a fresh server:

    python bench/bench_browser.py                 # prints progress, then one JSON object (the last line)
    python bench/bench_browser.py --skip-maco     # Compare priors without waiting for MACO's column

(a) Browse's first screen: from opening the page to the grid's first row of pictures decoded inside the window;
(b) Run with the defaults (EfficientNet-Lite0, the default demo prior, bee, 200 steps), rendered live: from
pressing the button to the first live preview picture and to the final picture;
(c) Compare priors with the defaults: from pressing "Render all side by side" to each column's first picture and
final picture, to all DGN-AM and pixel columns done, and MACO's column apart.

`streamlit run streamlit_app.py` as a user starts it (tests/test_browser.run_dashboard), on 127.0.0.1, offline,
with empty temporary data and model caches (as on a fresh install: the shipped atlas, Lite0 and the demo priors
only), driven through Debian's chromium by Playwright like the browser tests. Each figure comes with the
1-minute load average at its start and end: on a shared machine it says how busy the cores were.
See bench/README.md for every field. Never part of the test suite.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

VIEWPORT = {"width": 1280, "height": 720}
CELLS = '[data-testid="stMain"] a.atlas-cell img'
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'

# The grid's first row: every picture at the first picture's height decoded and wholly inside the window.
FIRST_ROW_ON_SCREEN = f"""() => {{
    const cells = [...document.querySelectorAll('{CELLS}')];
    if (!cells.length) return 0;
    const top = cells[0].getBoundingClientRect().top;
    const row = cells.filter(e => e.getBoundingClientRect().top === top);
    const seen = e => {{ const r = e.getBoundingClientRect();
        return e.complete && e.naturalWidth > 0 && r.top >= 0 && r.bottom <= innerHeight && r.right <= innerWidth; }};
    return row.every(seen) ? cells.filter(seen).length : 0;
}}"""

# A decoded picture in the main area whose caption contains `text` (and none of `unless`).
DECODED_WITH_CAPTION = """([text, unless]) =>
    [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"]')]
    .some(d => { const img = d.querySelector('img'); const t = d.innerText || '';
                 return img && img.complete && img.naturalWidth > 0 && t.includes(text)
                        && !unless.some(u => t.includes(u)); })"""

# Compare priors: per column (named by its bold title), whether it shows a decoded picture and a final one.
COLUMNS = """() => {
    const out = {};
    for (const col of document.querySelectorAll('[data-testid="stMain"] [data-testid="stColumn"]')) {
        const title = col.querySelector('strong');
        if (!title || col.querySelector('[data-testid="stColumn"]')) continue;
        const imgs = [...col.querySelectorAll('[data-testid="stImage"]')].filter(d => {
            const img = d.querySelector('img'); return img && img.complete && img.naturalWidth > 0; });
        out[title.innerText.trim()] = {picture: imgs.length > 0,
                                       final: imgs.some(d => (d.innerText || '').includes('activation')),
                                       missing: (col.innerText || '').includes('on this machine')};
    }
    return out;
}"""


def load() -> float:
    return round(os.getloadavg()[0], 2)


class Figure:
    """One timed wait: seconds from `start()` and the 1-minute load average at its start and end."""

    def __init__(self):
        self.t0, self.load0 = time.perf_counter(), load()

    def done(self, **extra) -> dict:
        return {"seconds": round(time.perf_counter() - self.t0, 3), "load_start": self.load0, "load_end": load(),
                **extra}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine() -> dict:
    """Where it ran: the cores, torch's own thread count in a fresh interpreter, and the engine's thread policy
    (the threads of one CPU pass, how many passes run side by side, how OpenMP threads wait)."""
    code = ("import json, os, dgnam_engine, torch; from dgnam_engine import accel; n = accel.cpu_pass_threads(); "
            "print(json.dumps([torch.__version__, torch.get_num_threads(), n, accel.cpu_lanes(n), "
            "os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY')]))")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                             cwd=ROOT)
        version, threads, pass_threads, lanes, spin, wait = json.loads(out.stdout)
    except (subprocess.SubprocessError, ValueError) as exc:
        version = threads = pass_threads = lanes = spin = wait = f"unknown ({type(exc).__name__})"
    return {"cpu_count": os.cpu_count(), "torch": version, "torch_threads": threads,
            "engine_pass_threads": pass_threads, "engine_lanes": lanes, "gomp_spincount": spin,
            "omp_wait_policy": wait,
            "dgnam_cpu_threads": os.environ.get("DGNAM_CPU_THREADS"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "platform": platform.platform(), "python": platform.python_version()}


def browse_first_screen(browser, url: str, timeout: float) -> dict:
    tab = browser.new_page(viewport=VIEWPORT)
    try:
        fig = Figure()
        tab.goto(url, wait_until="commit")
        tab.wait_for_function(FIRST_ROW_ON_SCREEN, polling="raf", timeout=timeout * 1000)
        out = fig.done(pictures_on_screen=tab.evaluate(FIRST_ROW_ON_SCREEN))
        tab.locator(IDLE).wait_for(timeout=timeout * 1000)
        out["page_done_seconds"] = round(time.perf_counter() - fig.t0, 3)  # the pickers and the rest drawn too
        return out
    finally:
        tab.close()


def run_page(browser, url: str, timeout: float) -> dict:
    """The Run page's defaults rendered live: "Render live again" when the shipped atlas answers the request
    (on a CPU like the one that made it), else "Render"."""
    tab = browser.new_page(viewport=VIEWPORT)
    try:
        tab.goto(f"{url}/run")
        tab.locator(IDLE).wait_for(timeout=timeout * 1000)
        again = tab.get_by_role("button", name="Render live again")
        button = again if again.count() else tab.get_by_role("button", name="Render", exact=True)
        how = "Render live again" if again.count() else "Render"
        fig = Figure()
        button.click()
        tab.wait_for_function(DECODED_WITH_CAPTION, arg=["preview · step", []], polling="raf",
                              timeout=timeout * 1000)
        first = fig.done()
        tab.get_by_text("Done", exact=True).first.wait_for(timeout=timeout * 1000)
        tab.wait_for_function(DECODED_WITH_CAPTION, arg=["seed", ["preview", "stored, until"]], polling="raf",
                              timeout=timeout * 1000)
        final = fig.done()
        return {"button": how, "first_preview": first, "final": final}
    finally:
        tab.close()


def compare_priors(browser, url: str, timeout: float, skip_maco: bool, maco_timeout: float, seed: int) -> dict:
    """Every column rendered: with seed 0 the shipped atlas already holds the default prior's column."""
    tab = browser.new_page(viewport=VIEWPORT)
    try:
        tab.goto(f"{url}/priors")
        tab.locator(IDLE).wait_for(timeout=timeout * 1000)
        if seed:
            tab.get_by_text("Advanced settings").click()
            box = tab.get_by_role("spinbutton", name="Seed", exact=True)
            box.fill(str(seed))
            box.press("Enter")
            tab.locator(IDLE).wait_for(timeout=timeout * 1000)
        fig = Figure()
        tab.get_by_role("button", name="Render all side by side").click()
        titles, first, final, all_done = set(), {}, {}, None
        deadline = fig.t0 + timeout
        while time.perf_counter() < deadline:
            try:
                cols = tab.evaluate(COLUMNS)
            except Exception:  # noqa: BLE001 - a rerun replacing the page's elements mid-read: read again
                cols = {}
            titles |= {t for t, c in cols.items() if not c["missing"]}
            for title in titles & set(cols):
                for seen, what, key in ((first, "first picture", "picture"), (final, "final picture", "final")):
                    if cols[title][key] and title not in seen:
                        seen[title] = fig.done()
                        log(f"  {title}: {what} {seen[title]['seconds']:.1f} s")
            others = [t for t in titles if not t.startswith("MACO")]
            if all_done is None and others and all(t in final for t in others):
                all_done = fig.done(columns=len(others))
                if skip_maco:
                    break
                deadline = min(deadline, time.perf_counter() + maco_timeout)
            if all_done is not None and all(t in final for t in titles):
                break
            time.sleep(0.1)
        maco_title = next((t for t in titles if t.startswith("MACO")), None)
        maco = final.get(maco_title) if maco_title else None
        return {"seed": seed, "columns_first_picture": first, "columns_final": final,
                "all_dgnam_and_pixel_done": all_done,
                "maco_final": maco, "maco": "done" if maco else "skipped" if skip_maco else
                "no MACO column" if maco_title is None else "timed out"}
    finally:
        tab.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-maco", action="store_true", help="do not wait for MACO's column in Compare priors")
    ap.add_argument("--maco-timeout", type=float, default=300.0,
                    help="seconds to wait for MACO once the other columns are done (default 300)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "auto"],
                    help="where the dashboard renders (DGNAM_DEVICE; default cpu)")
    ap.add_argument("--compare-seed", type=int, default=1,
                    help="Compare priors' seed (default 1: every column rendered; 0 is the page's default, whose "
                    "default-prior column the shipped atlas answers at once)")
    ap.add_argument("--steps", type=int, default=None,
                    help="steps preset in the pages (DGNAM_UI_STEPS; default: the model's own, 200): a quick try")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds any one measurement may take")
    ap.add_argument("--only", choices=["browse", "run", "compare"], action="append",
                    help="measure only these (repeatable; default: all three)")
    args = ap.parse_args(argv)
    try:
        from test_browser import BROWSER_ARGS, CHROMIUM, run_dashboard
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        print(f"bench_browser: {exc}: install the dev requirements (pip install -r requirements-dev.txt)",
              file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print(f"bench_browser: {CHROMIUM} is missing: install it with scripts/install_browser.sh", file=sys.stderr)
        return 2
    only = args.only or ["browse", "run", "compare"]
    out: dict = {"machine": machine(), "device": args.device, "steps": args.steps or "default",
                 "viewport": VIEWPORT}
    with tempfile.TemporaryDirectory(prefix="dgnam-bench-browser-") as tmp:
        base = Path(tmp)
        env = dict(os.environ, DGNAM_DATA_DIR=str(base / "data"), TORCH_HOME=str(base / "torch"),
                   HF_HOME=str(base / "hf"), XDG_CACHE_HOME=str(base / "cache"), HF_HUB_OFFLINE="1",
                   DGNAM_DEVICE=args.device)
        for name in ("DGNAM_ATLAS_DIR", "DGNAM_UI_STEPS"):  # the shipped atlas and the default steps
            env.pop(name, None)
        if args.steps:
            env["DGNAM_UI_STEPS"] = str(args.steps)
        try:
            with run_dashboard(base, env) as url, sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
                try:
                    for name, what, measure in (
                            ("browse_first_screen", "Browse: the first screen of a fresh server",
                             lambda: browse_first_screen(browser, url, args.timeout)),
                            ("run", "Run: the defaults rendered live", lambda: run_page(browser, url, args.timeout)),
                            ("compare_priors", "Compare priors: render all side by side",
                             lambda: compare_priors(browser, url, args.timeout, args.skip_maco, args.maco_timeout,
                                                    args.compare_seed))):
                        if name.split("_")[0] not in only:
                            continue
                        log(what)
                        try:
                            out[name] = measure()
                        except Exception as exc:  # noqa: BLE001 - one failed wait: said, and the others still run
                            out[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
                            log(f"  failed: {out[name]['error']}; the server's log ends with:\n"
                                + (base / "server.log").read_text()[-1500:])
                        log(f"  {json.dumps(out[name])[:400]}")
                finally:
                    browser.close()
        except AssertionError as exc:  # run_dashboard: the server did not start (its log is in the message)
            print(f"bench_browser: the dashboard did not start: {str(exc)[-2000:]}", file=sys.stderr)
            return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
