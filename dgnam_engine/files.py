"""Putting a finished file in place, below everything that writes one (weights, Hub downloads, prior files)."""
from __future__ import annotations

import os
from pathlib import Path


def publish(tmp: Path, dest: Path) -> None:
    """Move a finished file into place with the usual permissions: mkstemp and safetensors create files only
    their owner can read, which would hide shared caches and priors from other users of the machine."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, dest)


def _umask() -> int:
    try:  # Linux reports it without changing it; os.umask() sets it, racing other threads for a moment
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
