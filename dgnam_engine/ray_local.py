"""`precompute --ray local`: a private Ray instance on this machine that listens only on 127.0.0.1 and whose
processes do not outlive the command, even when it is SIGKILLed.

Ray (2.60) binds its servers (GCS, raylet, workers, agents) to the node's address, and on Linux it resolves
127.0.0.1 to the machine's network address, so every port would be open to the network. Its loopback mode (the
default on macOS and Windows, `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` elsewhere) keeps the node on 127.0.0.1: the
setting is read by each Ray process at import, so it is set in the environment the instance starts with, and here.

What Ray guarantees when its driver is SIGKILLed: the GCS and the raylet notice and exit within seconds, and the
workers with the raylet; the dashboard and runtime-env agents try to report to the dead GCS for about a minute.
A guard process (below) holds the other end of a pipe: when this process ends, however it ends, the pipe closes
and the guard kills the instance's processes that are still there (each known by its pid and start time, so a pid
used again by another program is never touched).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Iterator, Optional

from .errors import UserError

LOOPBACK = "127.0.0.1"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

# Reads "PID START" lines until the pipe closes, then kills each that is still the same process.
_GUARD = r"""
import os, signal, sys
lines = sys.stdin.read().split("\n")
for line in lines:
    parts = line.split()
    if len(parts) != 2:
        continue
    try:
        with open(f"/proc/{parts[0]}/stat") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]
        if start == parts[1]:
            os.kill(int(parts[0]), signal.SIGKILL)
    except (OSError, IndexError, ValueError):
        pass
"""


def _start_time(pid: int) -> Optional[str]:
    """A process's start time in clock ticks since boot (/proc/PID/stat field 22): with its pid, its identity."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Guard:
    """A process that kills the listed processes once this one ends (the pipe to it closes). Made before the
    instance starts, so it knows which of this process's children are not Ray's (they are never listed)."""

    def __init__(self):
        import psutil  # ships with ray (ray/thirdparty_files)

        self._before = {(p.pid, _start_time(p.pid)) for p in psutil.Process().children()}
        self._heads: Optional[list] = None
        self._sent: set[tuple[int, str]] = set()
        # its own session: a Ctrl-C to the terminal's process group does not stop it before its work
        self._proc = subprocess.Popen([sys.executable, "-c", _GUARD], stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def watch_ray(self) -> None:
        """List the instance's processes: the children ray.init started (GCS, raylet, monitors) and all of theirs
        (agents, workers); call again when Ray may have started more workers."""
        import psutil

        if self._heads is None:
            self._heads = [p for p in psutil.Process().children() if p.pid != self._proc.pid
                           and (p.pid, _start_time(p.pid)) not in self._before]
        new = []
        for head in self._heads:
            try:
                procs = [head, *head.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for proc in procs:
                start = _start_time(proc.pid)
                if start is not None and (proc.pid, start) not in self._sent:
                    self._sent.add((proc.pid, start))
                    new.append(f"{proc.pid} {start}\n")
        if new:
            self._proc.stdin.write("".join(new).encode())
            self._proc.stdin.flush()

    def close(self) -> None:
        """Let the guard kill what is left of the instance now (after ray.shutdown: normally nothing)."""
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()


@contextlib.contextmanager
def _loopback() -> Iterator[None]:
    from ray._private import ray_constants  # Ray's own switch; pinned ray==2.60.0 (requirements-dev.txt)

    old_env, old = os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old
        if old_env is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = old_env


@contextlib.contextmanager
def instance(num_cpus: int) -> Iterator[Guard]:
    """A private Ray instance on 127.0.0.1 for the block; shut down after it, its processes killed by the guard if
    this process dies first. Yields the guard (call `watch_ray` when Ray may have started more workers)."""
    import ray

    with _loopback():
        guard = Guard()
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, _node_ip_address=LOOPBACK)
            guard.watch_ray()
            node = ray._private.worker._global_node
            if node is None or node.node_ip_address != LOOPBACK:  # never serve on the network
                raise UserError(f"the local Ray instance did not start on {LOOPBACK} (it took "
                                f"{getattr(node, 'node_ip_address', '?')}); run without --ray, or start a Ray "
                                "cluster yourself and pass its address")
            yield guard
        finally:
            ray.shutdown()
            guard.close()
