"""`precompute`: a range of units into a real results store, killed and resumed through a local Ray instance with
two workers, a crashed Ray worker's units retried, and one-line errors."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from dgnam_engine import cli, precompute, runner
from dgnam_engine.request import Request, on_worker, resolve
from dgnam_engine.store import ResultsStore

CMD = [sys.executable, "-m", "dgnam_engine", "precompute"]
MODEL = "efficientnet_lite0"


def _args(fc6_file, store, units, *extra):
    return ["--model", MODEL, "--units", units, "--prior", "fc6", "--prior-file", str(fc6_file), "--iters", "2",
            "--device", "cpu", "--store", str(store), *extra]


def _request(fc6_file, units=(0,)) -> Request:
    s = runner.Settings(prior="fc6", n_iters=2)
    return Request(MODEL, list(units), "classifier", s, prior_file=str(fc6_file), device="cpu")


def _key(request: Request, unit: int) -> str:
    return replace(request, units=[unit]).identities()[0].key  # the key the dashboard looks up


def _check_stored(store: ResultsStore, request: Request, units) -> None:
    for u in units:
        res = store.get(_key(request, u))
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


def test_ray_local_two_workers_retries_a_crashed_worker_and_keys_what_the_workers_ran(tmp_path, fc6_file):
    """The workers resolve the request where they run (here they take the plain fp32 path, as a worker on other
    hardware takes its own device and precision): their results are stored under the keys of what they ran, not
    under the head's idea of the run."""
    pytest.importorskip("ray")
    marker = tmp_path / "crashed"

    def crash_once_then_run_plain(request, units):
        import os as _os
        from dataclasses import replace as _replace

        if not marker.exists():  # the first task kills its worker process outright
            marker.touch()
            _os._exit(1)
        return precompute._ray_task(_replace(request, settings=_replace(request.settings, accel="plain")), units)

    store = ResultsStore(tmp_path / "store")
    request = _request(fc6_file)  # the head asks for the fast path
    progress = precompute.Progress(4, quiet=True)
    failed = precompute.run_ray(request, [10, 11, 12, 13], 2, store, progress, "local", 2,
                                task=crash_once_then_run_plain)
    assert marker.exists() and failed == [] and progress.done == 4
    as_run = replace(request, settings=replace(request.settings, accel="plain"))
    _check_stored(store, as_run, [10, 11, 12, 13])
    assert all(r.settings["accel"] == "cpu float32 plain" for r in store.query())
    assert not any(store.has(_key(request, u)) for u in [10, 11, 12, 13])  # not under the head's key


def test_a_ray_worker_resolves_the_device_it_has(fc6_file):
    """What `_ray_task` runs: the request resolved on the worker, on the GPU Ray gave it, else its CPU."""
    head = replace(_request(fc6_file), device="auto")
    assert on_worker(head, []).device == "cpu" and on_worker(head, [0]).device == "cuda"
    run = resolve(on_worker(head, []))
    assert run.device == "cpu" and run.identities()[0].settings["accel"].startswith("cpu ")


@pytest.mark.parametrize("units, message", [("1000", "unit 1000 is out of range (0-999)"),
                                            ("a-b", "bad unit 'a-b'")])
def test_bad_units_are_one_line_errors_and_nothing_is_written(tmp_path, fc6_file, capsys, units, message):
    store_dir = tmp_path / "store"
    code = cli.main(["precompute", *_args(fc6_file, store_dir, units)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: {message}") and "\n" not in err
    assert not store_dir.exists()


def _stored_units(store_dir) -> list[int]:
    if not (store_dir / "results.sqlite").exists():
        return []
    return sorted(r.unit for r in ResultsStore(store_dir).query())


def _start(fc6_file, store_dir, units, *extra):
    return subprocess.Popen(CMD + _args(fc6_file, store_dir, units, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_units(proc, store_dir, n, timeout=240) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        seen = _stored_units(store_dir)
        if len(seen) >= n:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"precompute ended or timed out first: {proc.communicate()}")


def test_a_kill_in_the_middle_of_a_batch_keeps_every_finished_unit(tmp_path, fc6_file):
    """One batch of 8 on the CPU: units are stored as they finish (CPU_STORE_EVERY at a time), so a SIGKILL
    after the first ones keeps them, and Ctrl-C says exactly which units were written."""
    store_dir = tmp_path / "store"
    proc = _start(fc6_file, store_dir, "0-7", "--batch", "8")
    seen = _wait_for_units(proc, store_dir, 1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    kept = _stored_units(store_dir)
    assert set(seen) <= set(kept) and 1 <= len(kept) < 8, kept
    _check_stored(ResultsStore(store_dir), _request(fc6_file), kept)

    proc = _start(fc6_file, store_dir, "0-15", "--batch", "8")
    _wait_for_units(proc, store_dir, len(kept) + 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    now = _stored_units(store_dir)
    new = sorted(set(now) - set(kept))
    assert proc.returncode == 130 and new
    assert (f"interrupted: {len(new)} unit{'s' if len(new) > 1 else ''} ({','.join(map(str, new))}) written to "
            f"{store_dir}") in err, err


def test_a_damaged_picture_is_rendered_again(tmp_path, fc6_file, capsys):
    store_dir = tmp_path / "store"
    assert cli.main(["precompute", *_args(fc6_file, store_dir, "3-4", "--json", "--quiet")]) == 0
    capsys.readouterr()
    request = _request(fc6_file)
    victim = ResultsStore(store_dir).get(_key(request, 3)).image_path
    victim.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert cli.main(["precompute", *_args(fc6_file, store_dir, "3-4", "--json", "--quiet")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rendered"] == 1 and summary["already_stored"] == 1
    assert (store_dir / "images" / "damaged" / victim.name).is_file()
    _check_stored(ResultsStore(store_dir), request, [3, 4])


def test_same_size_weights_of_different_content_get_their_own_results(tmp_path, fc6_file, lite0, capsys):
    """Two lite0.pth files of the same name and size, the second with its classifier negated."""
    import torch

    sd = {k: v.clone() for k, v in lite0.model.state_dict().items()}
    a, b = tmp_path / "a" / "lite0.pth", tmp_path / "b" / "lite0.pth"
    a.parent.mkdir()
    b.parent.mkdir()
    torch.save(sd, a)
    torch.save({k: -v if k.startswith("classifier") else v for k, v in sd.items()}, b)
    assert a.stat().st_size == b.stat().st_size
    store_dir = tmp_path / "store"
    runs = []
    for w in (a, b):
        assert cli.main(["precompute", *_args(fc6_file, store_dir, "1", "--iters", "1", "--weights", str(w),
                                              "--json", "--quiet")]) == 0
        runs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert [r["rendered"] for r in runs] == [1, 1] and runs[1]["already_stored"] == 0
    stored = ResultsStore(store_dir).query(unit=1)
    assert len(stored) == 2 and len({r.weights_id for r in stored}) == 2
    first, second = sorted(stored, key=lambda r: r.created)
    assert second.activation_start == pytest.approx(-first.activation_start, rel=1e-3, abs=1e-3)
