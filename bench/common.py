"""What every benchmark records beside its numbers: machine, versions, seeds, time."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"


def environment() -> dict:
    import numpy

    import rlspec
    from rlspec.perf.host import cpu_features, cpu_model

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "cpu_isa": list(cpu_features()),  # what decides the tiny pair's speed on a CPU (rlspec.perf.host)
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "rlspec": rlspec.__version__,
        "commit": commit,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def repo_path(path: str | Path) -> str:
    """`path` relative to the repository when it lies inside it, so results read the same on
    every checkout."""
    path = Path(path)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def controller_name(controller: str) -> str:
    """A controller as results name it: a policy by its path inside the repository, so a
    result file carries no checkout's absolute path."""
    kind, _, path = controller.partition(":")
    return f"policy:{repo_path(path)}" if kind == "policy" else controller


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **payload}, indent=2) + "\n")
    print(f"wrote {repo_path(path)}")
    return path


def parse_requests(text: str, names: list[str], default: int = 40) -> dict[str, int]:
    """Requests per live episode, one count for all workloads or `name=N,...` per workload.

    Azure code requests decode only ~8 tokens each, so an episode of 40 holds ~100 verify
    steps at k=3 against Poisson's ~1,300: the same acceptance precision needs more requests.
    """
    try:
        if "=" not in text:
            counts = dict.fromkeys(names, int(text))
        else:
            counts = {name.strip(): int(n) for name, n in (item.split("=", 1) for item in text.split(","))}
    except ValueError:
        raise SystemExit(f"--requests: {text!r} is not N or name=N,... (workloads: {', '.join(names)})") from None
    if unknown := sorted(set(counts) - set(names)):
        raise SystemExit(f"--requests: unknown workload(s) {unknown}; allowed: {', '.join(names)}")
    if bad := [n for n, c in counts.items() if c < 1]:
        raise SystemExit(f"--requests: {bad} must be >= 1")
    return {name: counts.get(name, default) for name in names}
