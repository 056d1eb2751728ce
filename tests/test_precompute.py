"""`precompute`: a range of units into a real results store, killed and resumed through a local Ray instance with
two workers, a crashed Ray worker's units retried, and one-line errors."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from dgnam_engine import cli, precompute, runner
from dgnam_engine.store import ResultsStore

CMD = [sys.executable, "-m", "dgnam_engine", "precompute"]
MODEL = "efficientnet_lite0"


def _args(fc6_file, store, units, *extra):
    return ["--model", MODEL, "--units", units, "--prior", "fc6", "--prior-file", str(fc6_file), "--iters", "2",
            "--device", "cpu", "--store", str(store), *extra]


def _request(fc6_file) -> precompute.Request:
    s = runner.Settings(prior="fc6", n_iters=2)
    return precompute.Request(MODEL, "classifier", s.to_dict(), prior_file=str(fc6_file), device="cpu")


def _check_stored(store: ResultsStore, request: precompute.Request, units) -> None:
    for u in units:
        res = store.get(request.identity(u).key)  # the key the dashboard looks up
        assert res is not None, f"unit {u} missing"
        assert res.unit == u and len(res.activations) == 2
        img = np.asarray(Image.open(res.image_path))
        assert img.shape == (224, 224, 3) and img.std() > 1.0


def test_fills_a_range_resumes_after_being_killed_and_runs_through_ray(tmp_path, fc6_file):
    store_dir = tmp_path / "store"
    proc = subprocess.Popen(CMD + _args(fc6_file, store_dir, "0-5", "--batch", "2", "--quiet"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    n = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if (store_dir / "results.sqlite").exists():
            n = len(ResultsStore(store_dir))
            if n >= 2:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    n = len(ResultsStore(store_dir))
    assert 2 <= n < 6, f"killed after {n} units"

    # the rest through a local Ray instance with two workers, gathered into the same store
    out = subprocess.run(CMD + _args(fc6_file, store_dir, "0-5", "--batch", "2", "--ray", "local", "--workers", "2",
                                     "--json"), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["already_stored"] == n and summary["rendered"] == 6 - n and summary["failed"] == []
    assert summary["ray"] == "local"
    assert summary["units_per_second"] > 0
    assert "6/6" not in out.stderr and f"{6 - n}/{6 - n} units" in out.stderr  # the progress bar counted the rest
    store = ResultsStore(store_dir)
    assert len(store) == 6
    _check_stored(store, _request(fc6_file), range(6))


def test_ray_local_two_workers_retries_a_crashed_worker(tmp_path, fc6_file):
    pytest.importorskip("ray")
    marker = tmp_path / "crashed"

    def crash_once(request, units):
        import os as _os

        if not marker.exists():  # the first task kills its worker process outright
            marker.touch()
            _os._exit(1)
        return precompute._ray_task(request, units)

    store = ResultsStore(tmp_path / "store")
    request = _request(fc6_file)
    progress = precompute.Progress(4, quiet=True)
    failed = precompute.run_ray(request, [10, 11, 12, 13], 2, store, progress, "local", 2, task=crash_once)
    assert marker.exists() and failed == [] and progress.done == 4
    _check_stored(store, request, [10, 11, 12, 13])


@pytest.mark.parametrize("units, message", [("1000", "unit 1000 is out of range (0-999)"),
                                            ("a-b", "bad unit 'a-b'")])
def test_bad_units_are_one_line_errors_and_nothing_is_written(tmp_path, fc6_file, capsys, units, message):
    store_dir = tmp_path / "store"
    code = cli.main(["precompute", *_args(fc6_file, store_dir, units)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: {message}") and "\n" not in err
    assert not store_dir.exists()
