"""`precompute --ray local` starts a private Ray instance: every socket its processes open is bound to 127.0.0.1
(nothing on the network), and when the command is SIGKILLed none of those processes stays behind (and no other
child of the command is touched)."""
from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The real local path (precompute.run_ray, "local") with a task that says it runs, then waits to be killed.
CHILD = r"""
import sys, time
from pathlib import Path
from dgnam_engine import precompute
from dgnam_engine.request import Request, Settings
from dgnam_engine.store import ResultsStore

marker = Path(sys.argv[1])
import subprocess
mine = subprocess.Popen(["sleep", "300"])  # a child of the command that is not Ray's: never the guard's to kill
(marker.parent / "mine").write_text(str(mine.pid))

def task(request, units):
    marker.write_text("running")
    time.sleep(120)
    return []

store = ResultsStore(marker.parent / "store")
request = Request("efficientnet_lite0", [0], "classifier", Settings(n_iters=2), device="cpu")
precompute.run_ray(request, [0], 1, store, precompute.Progress(1, quiet=True), "local", 1, task=task)
"""


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def test_ray_local_listens_only_on_loopback_and_leaves_nothing_after_a_sigkill(tmp_path):
    pytest.importorskip("ray")
    import psutil  # ships with ray

    marker = tmp_path / "running"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(marker)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 45
        while not marker.exists():
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the local Ray instance did not run the task in 45 s"
            time.sleep(0.1)
        mine = psutil.Process(int((tmp_path / "mine").read_text()))
        procs = [p for p in psutil.Process(child.pid).children(recursive=True) if p.pid != mine.pid]
        names = {p.name() for p in procs}
        assert {"gcs_server", "raylet"} <= names, names
        sockets = []
        for p in procs:
            try:
                sockets += [(p.name(), c.laddr.ip, c.laddr.port) for c in p.net_connections(kind="inet")
                            if not c.raddr]  # servers: listening TCP and bound UDP
            except psutil.NoSuchProcess:
                continue
        assert sockets, "no server socket found: the check would prove nothing"
        assert [s for s in sockets if not _loopback(s[1])] == [], sockets
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    deadline = time.monotonic() + 10  # the guard kills at once; Ray's own agents would wait about a minute
    left = procs
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], [(p.pid, p.name()) for p in left]
    assert mine.is_running() and mine.status() != psutil.STATUS_ZOMBIE  # what is not Ray's is left alone
    mine.kill()
