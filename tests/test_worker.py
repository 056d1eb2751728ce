"""The per-device worker: real DGN-AM runs of EfficientNet-Lite0 queue, report progress, cancel and store."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from dgnam_engine.accel import THREADS_ENV
from dgnam_engine.runner import Settings
from dgnam_engine.store import ResultsStore
from dgnam_engine.worker import CANCELLED, DONE, FAILED, Request, Worker, get_worker


@pytest.fixture
def store(tmp_path):
    return ResultsStore(tmp_path / "store")


def req(fc6_file, units=(967,), n_iters=4, seed=0, **kw):
    return Request("efficientnet_lite0", list(units), "classifier", Settings(prior="fc6", n_iters=n_iters, seed=seed),
                   prior_file=str(fc6_file), **kw)


def wait_until(cond, timeout=60.0):
    end = time.time() + timeout
    while not cond():
        assert time.time() < end, "timed out"
        time.sleep(0.01)


def test_run_reports_progress_and_stores_on_success(lite0, fc6_file, store):
    w = Worker("cpu")
    job = w.submit(req(fc6_file, units=(967, 1), n_iters=5), store, preview_every=2)
    assert job.wait(120) and job.state == DONE, job.error
    assert job.step == 5 and len(job.curves) == 2 and all(len(c) == 5 for c in job.curves)
    assert job.preview is not None and job.preview[0].shape == (224, 224, 3)
    r = job.results[0]
    assert r.activation_final > r.activation_start  # the optimisation really drove the unit up
    keys = [i.key for i in job.request.identities()]
    assert [s.key for s in job.stored] == keys and all(store.has(k) for k in keys)
    got = store.get(keys[0])
    assert got.unit == 967 and got.label == "espresso" and got.settings["n_iters"] == 5
    assert got.activations == pytest.approx(r.activations)


def test_sessions_queue_one_run_at_a_time(lite0, fc6_file, store):
    w = Worker("cpu", lanes=1)  # the cores of one pass (a laptop: all of them)
    jobs = {}

    def session(name, seed):
        jobs[name] = w.submit(req(fc6_file, n_iters=12, seed=seed), store)

    t1 = threading.Thread(target=session, args=("a", 1))
    t1.start()
    t1.join()
    wait_until(lambda: jobs["a"].state == "running")
    t2 = threading.Thread(target=session, args=("b", 2))
    t2.start()
    t2.join()
    assert jobs["b"].state == "queued" and w.position(jobs["b"]) == 1  # one run ahead of it
    for j in jobs.values():
        assert j.wait(120) and j.state == DONE, j.error
    a, b = jobs["a"], jobs["b"]
    assert a.finished <= b.started  # never two runs at once on the device
    assert len(store) == 2 and {s.seed for s in store.query()} == {1, 2}


def test_runs_go_side_by_side_on_spare_cores_and_give_the_lone_picture(lite0, fc6_file, store, monkeypatch):
    """With one thread a pass, two cores hold two runs at once; each gives the picture it gives alone."""
    monkeypatch.setenv(THREADS_ENV, "1")
    w = Worker("cpu")
    if w.lanes < 2:
        pytest.skip("needs two cores")
    a, b = (w.submit(req(fc6_file, n_iters=12, seed=s), store) for s in (1, 2))
    for j in (a, b):
        assert j.wait(120) and j.state == DONE, j.error
    assert b.started < a.finished  # side by side
    lone = Worker("cpu", lanes=1).submit(req(fc6_file, n_iters=12, seed=2), None)
    assert lone.wait(120) and lone.state == DONE, lone.error
    assert np.array_equal(lone.results[0].image, b.results[0].image)
    assert [s.settings["cpu_threads"] for s in store.query()] == [1, 1]


def test_a_warm_up_prepares_a_kind_of_run_once_stores_nothing_and_is_nobodys_turn(lite0, fc6_file, store):
    w = Worker("cpu", lanes=1)
    r = req(fc6_file, units=(967, 1), n_iters=30)
    warm = w.warm(r)
    assert warm is not None and warm.warmup and w.warm(req(fc6_file, units=(5,), seed=3)) is None  # same kind
    job = w.submit(req(fc6_file, n_iters=3), store)
    if warm.state in ("queued", "running"):
        assert w.position(job) == 0  # the warm-up ahead of it is nobody's run
    assert warm.wait(120) and warm.state == DONE, warm.error
    assert warm.n_iters == 2 and warm.step == 2 and len(warm.curves) == 1  # two steps of one unit
    assert job.wait(120) and job.state == DONE and len(store) == 1  # only the real run was stored


def test_cancel_mid_run_stores_nothing(lite0, fc6_file, store):
    w = Worker("cpu")
    job = w.submit(req(fc6_file, n_iters=200), store)
    wait_until(lambda: job.step >= 2)
    job.cancel()
    assert job.wait(60) and job.state == CANCELLED
    assert job.step < 200 and job.results == [] and len(store) == 0
    assert not any(store.images.iterdir())


def test_cancel_while_queued_never_runs(lite0, fc6_file, store):
    w = Worker("cpu")
    first = w.submit(req(fc6_file, n_iters=8), store)
    queued = w.submit(req(fc6_file, n_iters=8, seed=5), store)
    queued.cancel()
    assert queued.wait(120) and queued.state == CANCELLED and queued.started is None
    assert first.wait(120) and first.state == DONE
    assert [s.seed for s in store.query()] == [0]


def test_bad_input_fails_with_a_message_and_stores_nothing(lite0, fc6_file, store):
    w = Worker("cpu")
    job = w.submit(req(fc6_file, units=(5000,)), store)
    assert job.wait(60) and job.state == FAILED
    assert "out of range" in job.error and len(store) == 0
    ok = w.submit(req(fc6_file, n_iters=2), store)  # the worker survives a failed run
    assert ok.wait(60) and ok.state == DONE


def test_one_worker_per_device():
    assert get_worker("cpu") is get_worker("cpu")


def test_a_unit_that_cannot_be_stored_keeps_the_others(lite0, fc6_file, store):
    r = req(fc6_file, units=(967, 1, 2), n_iters=2)
    keys = [i.key for i in r.identities()]
    (store.images / f"{keys[1]}.png").mkdir()  # the picture of the middle unit cannot be put in place
    job = Worker("cpu").submit(r, store)
    assert job.wait(120) and job.state == FAILED
    assert job.error.startswith("1 of 3 pictures could not be stored, the others were: cannot save a picture in")
    assert store.has(keys[0]) and not store.has(keys[1]) and store.has(keys[2])
    assert [s.unit for s in job.stored] == [967, 2]


def test_a_combination_keeps_what_the_run_measured(lite0, fc6_file, store):
    """UnitResult.extra (each term's activation in the picture) is stored and read back, so a card need not
    measure it again."""
    r = req(fc6_file, units=(0,), n_iters=2)
    r.settings.objective = "bee + 0.5*daisy"
    job = Worker("cpu").submit(r, store)
    assert job.wait(120) and job.state == DONE, job.error
    measured = job.results[0].extra["terms"]
    again = ResultsStore(store.root).get(r.identities()[0].key)
    assert again.extra["terms"] == measured and [t["weight"] for t in measured] == [1.0, 0.5]
    assert again.unit == 309 and again.settings["objective"] == "bee + 0.5*daisy"
