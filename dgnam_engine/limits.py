"""The one settings check: the ranges every front end accepts, and the words that say what is wrong. The command
line and the resolver raise them as UserError; the dashboard's pages show `settings_problem` before a run."""
from __future__ import annotations

import math
from typing import Optional, Sequence

from .errors import UserError
from .numbers import MAX_SEED  # 0 .. 2^32-1: numpy's RandomState, which draws the start codes as the original does

STEPS = (1, 10_000)  # 10000 steps take about ten minutes on a laptop CPU; the paper runs 200
LR = (1e-4, 100.0)  # a start learning rate: the models' defaults are 2 and 8; far outside, a run only makes noise


def seed_problem(seed) -> Optional[str]:
    if seed is None or not 0 <= seed <= MAX_SEED or int(seed) != seed:
        return f"seed {seed} is out of range: use a whole number from 0 to {MAX_SEED}"
    return None


def steps_problem(steps) -> Optional[str]:
    if steps is None or int(steps) != steps or not STEPS[0] <= steps <= STEPS[1]:
        return f"steps must be a whole number between {STEPS[0]} and {STEPS[1]}, not {steps}"
    return None


def lr_problem(lr, name: str = "start learning rate") -> Optional[str]:
    """None (the default) is fine; a start rate must be within LR, an end rate in [0, LR's top]."""
    if lr is None:
        return None
    start = name.startswith("start")
    if start and lr == 0:
        return f"the {name} must be above 0 (0 would never change the picture)"
    low = LR[0] if start else 0.0
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and low <= lr <= LR[1]):
        return f"the {name} must be between {low:g} and {LR[1]:g}, not {lr}"
    return None


def settings_problem(steps=None, lr_start=None, seed=0, lr_end=None) -> Optional[str]:
    """What is wrong with these numbers, in one line, or None; `steps` None is the default."""
    return ((steps_problem(steps) if steps is not None else None) or lr_problem(lr_start)
            or lr_problem(lr_end, "end learning rate") or seed_problem(seed))


def check_settings(s, seeds: Sequence[int]) -> None:
    """Every number of a request (runner/request Settings), checked before any work; UserError in one line."""
    problem = settings_problem(s.n_iters, s.lr_start, 0, s.lr_end)
    if problem:
        raise UserError(problem)
    if not (isinstance(s.decay, (int, float)) and math.isfinite(s.decay) and 0 < s.decay <= 1):
        raise UserError(f"the decay must be in (0, 1], not {s.decay}")
    for seed in seeds:
        if seed_problem(seed):
            raise UserError(seed_problem(seed))
    if s.position is not None and (len(s.position) != 2 or min(s.position) < 0):
        raise UserError(f"position {s.position} must be two numbers >= 0: row, column")
