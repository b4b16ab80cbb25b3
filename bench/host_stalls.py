"""How often this host stops a busy CPU engine, and for how long: the stalls no profile holds.

    python bench/host_stalls.py [--seconds 20] [--out host_stalls]

A fixed bf16 matmul loop (about a decode step's work on the tiny pair) runs on every core for
`--seconds`, each iteration timed. On a quiet, dedicated host the iterations read alike; on a
shared VM the hypervisor now and then deschedules a virtual CPU (the kernel counts it as steal
time in /proc/stat), and an iteration caught by it runs its own time plus the stall. Writes
results/NAME.json: the median iteration, the share of iterations over 1.5x it and their median
excess (the stall's length), the mean over the median (what the stalls add to a busy engine),
and the steal time the kernel counted meanwhile.

Calibration keeps the median of repeated iterations and drops outliers, so a profile prices
the stall-free step; live engines pay the stalls on top, alike for every controller (a stall
comes by the wall clock, not by the step's shape).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from common import write_result

from rlspec.calibration.quiet import steal_seconds

STALL = 1.5  # an iteration this many times the median or more counts as stalled


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="how long to time the loop")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default="host_stalls", metavar="NAME")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.threads < 1:
        raise SystemExit("--seconds must be > 0 and --threads >= 1")
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(512, 2048, generator=gen).to(torch.bfloat16)
    b = torch.randn(2048, 2048, generator=gen).to(torch.bfloat16)

    def work() -> None:
        for _ in range(12):
            torch.mm(a, b)

    for _ in range(20):  # warm-up: primitives built, caches and clocks settled
        work()
    times = []
    s0, t_end = steal_seconds(), time.perf_counter() + args.seconds
    t0 = time.perf_counter()
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        work()
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    s1 = steal_seconds()
    x = np.array(times)
    med = float(np.median(x))
    stalled = x > STALL * med
    excess = x[stalled] - med
    res = {
        "seconds": round(wall, 2),
        "threads": args.threads,
        "iterations": len(x),
        "median_iteration_s": med,
        "mean_over_median": float(x.mean() / med),
        "stalled_share": float(stalled.mean()),
        "stall_median_s": float(np.median(excess)) if excess.size else 0.0,
        "stall_p90_s": float(np.percentile(excess, 90)) if excess.size else 0.0,
        "stalled_time_share": float(excess.sum() / x.sum()),
        "steal_cpu_s": None if s0 is None or s1 is None else round(s1 - s0, 2),
        "steal_share": None if s0 is None or s1 is None else round((s1 - s0) / (wall * (os.cpu_count() or 1)), 4),
    }
    write_result(args.out, res)
    print(f"{len(x)} iterations of {med * 1e3:.1f} ms (median) on {args.threads} threads over {wall:.1f} s: "
          f"{res['stalled_share']:.1%} stalled (>= {STALL}x), by {res['stall_median_s'] * 1e3:.0f} ms "
          f"(median; p90 {res['stall_p90_s'] * 1e3:.0f} ms), {res['stalled_time_share']:.1%} of the time; "
          f"mean / median {res['mean_over_median']:.3f}; steal {res['steal_cpu_s']} CPU-s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
