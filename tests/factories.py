"""Small real weight files for tests: generators and models with random but well-scaled weights."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from dgnam_engine import generators
from dgnam_engine.generators import responsive  # noqa: F401  (the tests' name for it)


def save_fc6_hf_format(path: Path, seed: int = 0) -> Path:
    """A random fc6 generator saved like the Hugging Face upconvGAN_fc6.pt: a plain state dict, Caffe layer names."""
    torch.manual_seed(seed)
    gen = responsive(generators.upconv_fc(4096), (4096,), seed=seed)
    torch.save(gen.state_dict(), path)
    return path


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
