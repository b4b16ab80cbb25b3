"""How the live engine and the simulator cut the same work into iterations.

    python bench/step_structure.py --profile cpu-tiny-amx --workload azure-code --value 0.735

The sim-to-real sweeps' Azure code points show speculative controllers running many more,
shorter iterations live than in the simulator (static:3 at x0.735: 100-112 live against 76-77
simulated, static:0 140-147 against 135), with the busy time about equal. Latency depends on
how the work is cut, so this serves one sweep point's requests with each controller on one
warm live engine and in the simulator (the same requests, `--sim-seeds` engine seeds) and
records every busy iteration: whether it carries prefill tokens, how many, how many requests
decode and how many drafts each verifies, and the tokens it emits. `--speeds` also simulates
the point with the host that many times the profile's speed (`SpeedDrift`), the live sweeps'
measured range, to see how a host's speed alone re-cuts the work. Writes results/NAME.json
with the per-side summaries and the prefill-chunk histogram.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from bisect import bisect_right
from collections import Counter
from pathlib import Path
from typing import Any

from common import ROOT, controller_name, write_result

sys.path.insert(0, str(ROOT))

from fidelity import WORKLOADS  # noqa: E402
from sim_to_real import open_context  # noqa: E402

import rlspec.engines.vllm  # noqa: E402,F401  (Intel OpenMP before vLLM)
from rlspec.calibration.matching import Tally, tallied_episode  # noqa: E402
from rlspec.calibration.quiet import wait_quiet  # noqa: E402
from rlspec.control.registry import make_controller  # noqa: E402
from rlspec.engines.factory import make_backend  # noqa: E402
from rlspec.perf.step_time import SpeedDrift  # noqa: E402

# Prefill tokens per iteration, bucketed (lower bounds): a chunk's size decides its cost.
CHUNK_BOUNDS = (1, 64, 256, 512, 1024, 1536, 2048)
CHUNK_LABELS = [f"{lo}-{hi - 1}" for lo, hi in zip(CHUNK_BOUNDS[:-1], CHUNK_BOUNDS[1:], strict=True)] + [f"{CHUNK_BOUNDS[-1]}+"]


class StepRecorder(Tally):
    """A Tally that keeps each busy iteration's shape."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.rows: list[tuple[int, int, int, int, int, float]] = []

    def step(self) -> Any:
        s = super().step()
        if s.num_scheduled_tokens:
            self.rows.append((s.num_prefill_tokens, s.num_decode_reqs, s.num_drafted, s.num_emitted,
                              s.num_scheduled_tokens, s.step_time_s))  # fmt: skip
        return s


def chunk_histogram(counts: Counter[str], scale: float = 1) -> dict[str, float]:
    """Non-empty chunk buckets in size order, each count times `scale`."""
    return {label: counts[label] * scale for label in CHUNK_LABELS if counts[label]}


def structure(rows: list[tuple[int, int, int, int, int, float]], latency: float) -> dict[str, Any]:
    """One episode's iterations summarised; `latency` its mean request latency."""
    prefill = [r for r in rows if r[0]]
    decoding = [r for r in rows if r[1]]
    decode_only = [r for r in rows if not r[0]]
    decode_reqs = sum(r[1] for r in decoding)
    return {
        "mean_latency_s": latency,
        "iterations": len(rows),
        "busy_s": sum(r[5] for r in rows),
        "prefill_iterations": len(prefill),
        "decode_only_iterations": len(decode_only),
        "prefill_tokens": sum(r[0] for r in rows),
        "prefill_tokens_per_prefill_iteration": statistics.fmean(r[0] for r in prefill) if prefill else 0.0,
        "decodes_per_decoding_iteration": decode_reqs / len(decoding) if decoding else 0.0,
        "drafts_per_decode": sum(r[2] for r in decoding) / decode_reqs if decode_reqs else 0.0,
        "emitted": sum(r[3] for r in rows),
        "scheduled_tokens": sum(r[4] for r in rows),
        "prefill_chunks": chunk_histogram(Counter(CHUNK_LABELS[bisect_right(CHUNK_BOUNDS, r[0]) - 1] for r in prefill)),
    }


def mean_structure(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: statistics.fmean(r[k] for r in runs) for k in runs[0] if k != "prefill_chunks"}
    chunks: Counter[str] = Counter()
    for r in runs:
        chunks.update(r["prefill_chunks"])
    out["prefill_chunks"] = chunk_histogram(chunks, 1 / len(runs))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu-tiny-amx")
    ap.add_argument("--workload", default="azure-code", choices=[w.name for w in WORKLOADS])
    ap.add_argument("--value", type=float, default=0.735, help="the load knob (rate or rate_scale), as in a sweep")
    ap.add_argument("--requests", type=int, default=120)
    ap.add_argument("--controllers", default="static:3,static:0")
    ap.add_argument("--sim-seeds", type=int, default=3)
    ap.add_argument("--speeds", default="1", help="step time scales the simulator also runs at (SCALE,SCALE,...)")
    ap.add_argument("--sim-only", action="store_true", help="no live engine: only the simulator at --speeds")
    ap.add_argument("--wait-quiet", type=float, default=None, metavar="CORES")
    ap.add_argument("--out", default=None, metavar="NAME", help="results/NAME.json (default: step_structure-P-W)")
    args = ap.parse_args(argv)
    controllers = args.controllers.split(",")
    try:
        speeds = [float(x) for x in args.speeds.split(",")]
    except ValueError:
        raise SystemExit(f"--speeds: {args.speeds!r} is not SCALE,SCALE,...") from None
    if any(not x > 0 for x in speeds):
        raise SystemExit(f"--speeds: {args.speeds!r} must all be > 0")
    speeds = list(dict.fromkeys([1.0, *speeds]))  # the live comparison is at the profile's speed
    for c in controllers:
        make_controller(c)  # refuse an unknown controller before the engine starts
    w = dataclasses.replace(next(w for w in WORKLOADS if w.name == args.workload), values=(args.value,),
                            requests=args.requests)  # fmt: skip
    ctx = open_context(args.profile, w.variant(args.value), live=not args.sim_only)  # the sweeps' KV pool
    sc = ctx.match(w.variant(args.value))
    requests = sc.requests(sc.seed)

    def simulated(c: str, speed: float) -> dict[str, Any]:
        at = sc if speed == 1 else sc.replace(speed_drift=SpeedDrift(scale=speed))
        sims = []
        for i in range(args.sim_seeds):
            rec = StepRecorder(make_backend(at, "sim", seed=sc.seed + 7919 * i))
            m, _ = tallied_episode(rec, make_controller(c), requests, at)
            sims.append(structure(rec.rows, m.mean_latency_s))
        return mean_structure(sims)

    by_speed = {f"{x:g}": {controller_name(c): simulated(c, x) for c in controllers} for x in speeds}
    for x, per in by_speed.items():
        print(f"simulated at {x}x the profile's step time: " + "; ".join(
            f"{c} {r['iterations']:.0f} iterations, {r['mean_latency_s']:.3f} s" for c, r in per.items()))  # fmt: skip
    rows = []
    t0 = time.perf_counter()
    try:
        if ctx.live is not None:
            tallied_episode(ctx.live, make_controller(controllers[0]), requests, sc)  # warm the engine's shapes
        for c in controllers if ctx.live is not None else ():
            sim = by_speed["1"][controller_name(c)]
            if args.wait_quiet is not None:
                wait_quiet(args.wait_quiet, 120.0)
            rec = StepRecorder(ctx.live)
            m, _ = tallied_episode(rec, make_controller(c), requests, sc)
            live = structure(rec.rows, m.mean_latency_s)
            rows.append({"controller": controller_name(c), "live": live, "sim": sim})
            print(f"{c}: " + "; ".join(f"{k} live {live[k]:.4g} sim {sim[k]:.4g}" for k in live if k != "prefill_chunks")
                  + f"\n  prefill chunks live {live['prefill_chunks']}\n  prefill chunks sim  {sim['prefill_chunks']}",
                  flush=True)  # fmt: skip
    finally:
        ctx.close()
    write_result(args.out or f"step_structure-{args.profile}-{args.workload}", {
        "profile": args.profile,
        "workload": {"name": w.name, "scenario": str(Path(w.scenario).relative_to(ROOT)), "knob": w.knob,
                     "value": args.value, "requests": args.requests},
        "engine": {"block_size": ctx.block_size, "num_kv_blocks": ctx.num_kv_blocks},
        "sim_seeds": args.sim_seeds,
        "wall_s": round(time.perf_counter() - t0, 1),
        "controllers": rows,
        "sim_by_speed": by_speed,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
