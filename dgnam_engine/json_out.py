"""The JSON the command line prints (`--json`): always valid JSON. Python's json writes infinity and NaN as bare
`Infinity`/`NaN`, which no JSON reader accepts; a value that is not a finite number is written as null."""
from __future__ import annotations

import json
import math
from typing import Any


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(_finite(value), allow_nan=False)
