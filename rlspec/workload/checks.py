"""Config checks shared by the workload dataclasses.

Workload configs are tagged unions (one `kind`/`dist` field picks which other fields
apply). A field that belongs to another variant must be rejected, not ignored: a typo
such as `cv:` on a Poisson workload would otherwise silently change nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from rlspec.config import ConfigError

# variant -> (required fields, optional fields)
VariantFields = Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]


def check_variant(obj: object, prefix: str, tag: str, table: VariantFields) -> None:
    """Required fields of the chosen variant are set; fields only other variants use are unset.

    Fields named in no variant of `table` (shared ones) are not checked here.
    """
    chosen = getattr(obj, tag)
    required, optional = table[chosen]
    for name in required:
        if getattr(obj, name) is None:
            raise ConfigError(f"{prefix}{name}: required when {tag} is {chosen!r}")
    allowed = set(required) | set(optional)
    for req, opt in table.values():
        for name in (*req, *opt):
            if name not in allowed and getattr(obj, name) is not None:
                users = sorted(v for v, (r, o) in table.items() if name in r or name in o)
                raise ConfigError(
                    f"{prefix}{name}: not used when {tag} is {chosen!r} (only by {users});"
                    f" remove it. Fields for {chosen!r}: {sorted(allowed)}"
                )


def check_positive(where: str, value: float) -> None:
    """Raise ConfigError naming `where` unless `value` is finite and > 0."""
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{where}: {value!r} must be a finite number > 0")


def check_nonnegative(where: str, value: float) -> None:
    """Raise ConfigError naming `where` unless `value` is finite and >= 0."""
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{where}: {value!r} must be a finite number >= 0")
