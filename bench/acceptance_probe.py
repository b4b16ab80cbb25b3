"""Where a workload's live acceptance comes from: its request lengths or its prompt tokens.

    python bench/acceptance_probe.py [--profile cpu-tiny-avx2]   # -> results/acceptance_probe-azure-<profile>.json

Serves the Azure-code evaluation requests (the 40 of `bench/fidelity.py`'s episodes) and the
calibration's held-out requests to completion at a static k on the live engine, crossing
their lengths with each other's prompt tokens, then the evaluation lengths with other token
seeds. Greedy decoding makes each figure exact for its request set, so the spread over token
seeds is the sampling error of a 40-request episode's acceptance (notes/calibration.md
section 11). ~25 min on 2 cores at float32.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from common import ROOT, write_result

sys.path.insert(0, str(ROOT))

from sim_to_real import kv_pool_of, load_scale  # noqa: E402

import rlspec.engines.vllm  # noqa: E402,F401  (Intel OpenMP before vLLM)
from rlspec.calibration.calibrate import HELD_OUT_SEED, held_out_requests  # noqa: E402
from rlspec.calibration.live import measure_workload_acceptance  # noqa: E402
from rlspec.calibration.matching import at_profile_dtype  # noqa: E402
from rlspec.calibration.sweep import Workload  # noqa: E402
from rlspec.engines.factory import make_backend  # noqa: E402
from rlspec.perf.profile import load_profile  # noqa: E402
from rlspec.workload.request import Request  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu-tiny-avx2")
    ap.add_argument("--token-seeds", default="7,11,13,17")
    args = ap.parse_args(argv)
    prof = load_profile(args.profile)
    scale = load_scale(args.profile)
    w = Workload("azure-code", str(ROOT / "envs/live/tiny-azure-code.yaml"), "rate_scale", (scale,), 40)
    sc = at_profile_dtype(w.variant(scale).replace(profile=args.profile), prof)
    sc = sc.replace(live=dataclasses.replace(sc.live, kv_cache_memory_bytes=kv_pool_of(args.profile).memory_bytes))
    evaluation = [Request(i, 0.0, r.prompt_len, r.output_len) for i, r in enumerate(sc.requests(sc.seed))]
    held = held_out_requests(sc.replace(workload=dataclasses.replace(sc.workload, max_requests=None)), 80)
    runs = [("eval-len eval-tok k3", evaluation, sc.seed, 3), ("held-len held-tok k3", held, HELD_OUT_SEED, 3),
            ("eval-len held-tok k3", evaluation, HELD_OUT_SEED, 3), ("held-len eval-tok k3", held, sc.seed, 3),
            ("eval-len eval-tok k4", evaluation, sc.seed, 4)]  # fmt: skip
    runs += [(f"eval-len tok{s} k3", evaluation, int(s), 3) for s in args.token_seeds.split(",")]
    out = {}
    backend = make_backend(sc, "vllm")
    try:
        for name, reqs, seed, k in runs:
            c = measure_workload_acceptance(backend, name, reqs, k, seed).counts
            out[name] = {"share": c.mean, "drafted": c.drafted, "accepted": c.accepted}
            print(f"{name}: accepted/drafted {c.mean:.3f} {c.drafted} {c.accepted}", flush=True)
    finally:
        backend.close()
    write_result(f"acceptance_probe-azure-{args.profile}", {"profile": args.profile, "runs": out})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
