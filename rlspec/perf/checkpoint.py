"""What a model checkpoint weighs, read from its safetensors headers (no tensor is loaded).

The profile writer needs the parameter count for a model's description, and the live engine
and the serving hook need the drafter's bytes for the KV blocks they hold back while the
drafter is resident: one reader serves them all.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path


def checkpoint_param_count(model_dir: str | Path) -> int:
    """Number of weights in the safetensors checkpoint in `model_dir` (all shards)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name != "__metadata__":
                total += math.prod(meta["shape"]) if meta["shape"] else 1
    return total
