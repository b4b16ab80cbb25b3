"""Does the simulator's acceptance model carry from the k it was measured at to the others?

    python bench/acceptance_by_k.py --profile cpu-tiny-amx --ks 2,3 --compare 5984b09:rlspec/perf/profiles/cpu-tiny-amx.yaml

Calibration measures a workload's acceptance at one k (k_max) and fits the simulator's
per-request Beta (mean, concentration, position decay) to it; serving runs at every k. This
serves the same held-out requests (calibration's: `held_out_requests`, prompt tokens from
HELD_OUT_SEED) to completion on the live engine at each of `--ks`, where greedy decoding makes
each share exact for the request set. Beside it, the share the simulator verifies for the
same requests at that k under: the profile's acceptance; the same counts fitted with the
spread assumed before it was measured (concentration 20); and `--compare`'s profile (as git
holds it at a commit). The k_max share comes from the calibration's own measurements.
Writes results/NAME.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from common import ROOT, write_result

sys.path.insert(0, str(ROOT))

from drafter_by_k import profile_at  # noqa: E402
from fidelity import WORKLOADS  # noqa: E402
from sim_to_real import kv_pool_of  # noqa: E402

import rlspec.engines.vllm  # noqa: E402,F401  (Intel OpenMP before vLLM)
from rlspec.calibration.acceptance import WorkloadAcceptance, fit_acceptance  # noqa: E402
from rlspec.calibration.calibrate import HELD_OUT_SEED, held_out_requests  # noqa: E402
from rlspec.calibration.live import LiveMeasurement, measure_workload_acceptance  # noqa: E402
from rlspec.calibration.matching import at_profile_dtype, measured_acceptance  # noqa: E402
from rlspec.engines.factory import make_backend  # noqa: E402
from rlspec.perf.acceptance import AcceptanceConfig  # noqa: E402
from rlspec.perf.profile import load_profile  # noqa: E402
from rlspec.scenario import load_scenario  # noqa: E402
from rlspec.sim.config import EngineConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu-tiny-amx")
    ap.add_argument("--measurements", default="results/calibration_measurements-cpu-tiny-amx.json",
                    help="the calibration's saved measurements (its workloads' k_max shares)")  # fmt: skip
    ap.add_argument("--ks", default="2,3", help="draft lengths to serve the held-out requests at")
    ap.add_argument("--compare", default=None, metavar="REV:PATH", help="another profile's acceptance beside")
    ap.add_argument("--seeds", type=int, default=8, help="simulator seeds per share")
    ap.add_argument("--out", default="acceptance_by_k-cpu-tiny-amx")
    args = ap.parse_args(argv)
    prof = load_profile(args.profile)
    other = load_profile(profile_at(args.compare)) if args.compare else None
    saved = LiveMeasurement.from_dict(json.loads((ROOT / args.measurements).read_text()))
    ks = [int(k) for k in args.ks.split(",")]
    pool = kv_pool_of(args.profile)
    engine = EngineConfig(max_num_seqs=saved.facts.max_num_seqs, max_num_batched_tokens=saved.facts.max_num_batched_tokens,
                          block_size=saved.facts.block_size, k_max=saved.facts.k_max,
                          num_kv_blocks=saved.facts.usable_blocks)  # fmt: skip
    out = {"profile": args.profile, "compare": args.compare, "measurements": args.measurements,
           "seeds": args.seeds, "workloads": {}}  # fmt: skip
    backend = None
    try:
        for workload in WORKLOADS:
            sc = load_scenario(workload.scenario)
            name = sc.name
            held = next(w for w in saved.workload_acceptance if w.workload == name)
            reqs = held_out_requests(sc, held.requests)
            if tuple((r.prompt_len, r.output_len) for r in reqs) != held.lengths:
                raise SystemExit(f"{name}: held-out lengths differ from the saved measurement's")
            if backend is None:
                live_sc = at_profile_dtype(sc.replace(profile=args.profile), prof)
                backend = make_backend(live_sc.replace(live=dataclasses.replace(
                    live_sc.live, kv_cache_memory_bytes=pool.memory_bytes)), "vllm")  # fmt: skip
            models = {"profile": measured_acceptance(prof, name)}
            # The model before per-request steps were recorded: the same counts fitted with
            # the spread held at the assumed concentration of 20.
            assumed = dataclasses.replace(held, per_request=()).fit(fit_acceptance(held.counts), prof, engine)
            models["c20"] = AcceptanceConfig(mean=assumed.mean, concentration=assumed.concentration,
                                             position_decay=assumed.position_decay)  # fmt: skip
            if other is not None:
                models["compare"] = measured_acceptance(other, name)
            rows = []
            for k in sorted({*ks, held.k}):
                measured = held if k == held.k else measure_workload_acceptance(backend, name, reqs, k, HELD_OUT_SEED)
                at_k = WorkloadAcceptance(name, held.lengths, k, measured.counts)
                row = {"k": k, "live_share": measured.counts.mean, "drafted": sum(measured.counts.drafted),
                       "from": "calibration" if k == held.k else "this run"}  # fmt: skip
                for label, acc in models.items():
                    row[f"sim_share_{label}"] = at_k.simulated_share(acc, prof, engine, args.seeds)
                rows.append(row)
                print(f"{name} k={k}: live {row['live_share']:.4f}, "
                      + ", ".join(f"{lab} {row[f'sim_share_{lab}']:.4f}" for lab in models), flush=True)
            out["workloads"][name] = {"requests": held.requests,
                                      "acceptance": {lab: dataclasses.asdict(a) for lab, a in models.items()},
                                      "rows": rows}  # fmt: skip
    finally:
        if backend is not None:
            backend.close()
    write_result(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
