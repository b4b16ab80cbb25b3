"""How much of the lookahead oracle's margin is foresight of the luck?

    python bench/oracle_foresight.py [--profile cpu-tiny-avx512] [--seeds 3] [--luck-draws 2] [--workers 2]
        [--requests azure-code=120]

The sim-to-real target asks a policy that sees only features to beat the best analytical
controller on the live engine. The lookahead oracle (rlspec/oracle.py) bounds what any
schedule of k and drafter placement can gain in the simulator, but it knows the episode's
luck: whether each draft at each position will be accepted. On the sim-to-real sweep's eight
points (bench/sim_to_real.py: Poisson and the Azure code trace, load-scaled to the profile's
host, the matched simulator of `eval --sim-only`), per engine seed and paired by seed:

- the six analytical controllers and the profile's simulator-trained policy
  (`checkpoints/P-oracle-ppo`);
- `oracle`: perfect information, as the DAgger teacher;
- `oracle-luck-blind`: the same arrivals foreseen, but each decision's rollouts meet
  `--luck-draws` fresh draws of the undecided luck (`OracleConfig.luck_draws`).

Writes results/oracle_foresight-P.json: every controller's mean latency per point, and each
one's over the best analytical controller's, per point and averaged.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from common import ROOT, parse_requests, repo_path, write_result
from sim_to_real import ANALYTICAL, WORKLOADS, kv_pool_of, load_scale, run_dir_of
from tqdm import tqdm

sys.path.insert(0, str(ROOT))

from rlspec.calibration.sweep import SweepContext, Workload, offered_rate  # noqa: E402
from rlspec.oracle import LookaheadOracle, OracleConfig  # noqa: E402

ORACLES = ("oracle", "oracle-luck-blind")


def measure(job: tuple[str, Workload, float, int, int, str]) -> dict:
    """Every controller's simulated mean latency at one sweep point."""
    profile, w, value, seeds, luck_draws, policy = job
    pool = kv_pool_of(profile)
    ctx = SweepContext.open(w.variant(value), ROOT / f"rlspec/perf/profiles/{profile}.yaml", live=False,
                            block_size=pool.block_size, num_kv_blocks=pool.usable_blocks, sim_seeds=seeds)  # fmt: skip
    sc = ctx.match(w.variant(value))
    res = {c: ctx.run_sim(sc, c) for c in ANALYTICAL}
    res["policy"] = ctx.run_sim(sc, f"policy:{policy}")
    walls = {}
    for name, cfg in zip(ORACLES, (OracleConfig(), OracleConfig(luck_draws=luck_draws)), strict=True):
        t0 = time.perf_counter()
        res[name] = ctx.run_sim(sc, lambda backend, cfg=cfg: LookaheadOracle(backend, cfg))
        walls[name] = round(time.perf_counter() - t0, 1)
    lat = {c: m["mean_latency_s"] for c, m in res.items()}
    best = min(ANALYTICAL, key=lat.__getitem__)
    return {"workload": w.name, "value": value, "offered_rate": offered_rate(sc), "best_analytical": best,
            "mean_latency_s": lat, "vs_best": {c: lat[c] / lat[best] for c in lat},
            "mean_k": {c: m["mean_k"] for c, m in res.items()},
            "offload_frac": {c: m["offload_frac"] for c, m in res.items()}, "oracle_wall_s": walls}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu-tiny-avx512", help="the calibrated host (default: %(default)s)")
    ap.add_argument("--policy", default=None, help="default: checkpoints/<profile>-oracle-ppo")
    ap.add_argument("--seeds", type=int, default=3, help="engine seeds per point (paired across controllers)")
    ap.add_argument("--luck-draws", type=int, default=2, help="fresh luck draws per decision of the blind oracle")
    ap.add_argument("--requests", default="40",
                    help="requests per episode, as in the live sweep: N, or name=N,... per workload (others 40)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None, help="results/NAME.json (default: oracle_foresight-<profile>)")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.luck_draws < 1 or args.workers < 1:
        raise SystemExit("--seeds, --luck-draws and --workers must be >= 1")
    requests = parse_requests(args.requests, [w.name for w in WORKLOADS])
    policy = Path(args.policy or run_dir_of(args.profile)).resolve()
    scale = load_scale(args.profile)
    jobs = [(args.profile, Workload(w.name, w.scenario, w.knob, w.values, requests[w.name]), round(v * scale, 4),
             args.seeds, args.luck_draws, str(policy)) for w in WORKLOADS for v in w.values]  # fmt: skip
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        points = list(tqdm(pool.map(measure, jobs), total=len(jobs), desc="oracle foresight", unit="point"))
    for p in points:
        print(f"{p['workload']:>10} {p['value']:<6g} best {p['best_analytical']:>13}: "
              + ", ".join(f"{c} {p['vs_best'][c]:.3f}" for c in ("goodput", "policy", *ORACLES)))  # fmt: skip
    names = [*ANALYTICAL, "policy", *ORACLES]
    summary = {
        scope: {c: statistics.fmean(p["vs_best"][c] for p in pts) for c in names}
        for scope, pts in [("all", points)] + [(w.name, [p for p in points if p["workload"] == w.name])
                                              for w in WORKLOADS]  # fmt: skip
    }
    for scope, row in summary.items():
        print(f"{scope:>10}: " + ", ".join(f"{c} {row[c]:.3f}" for c in ("policy", *ORACLES)))
    write_result(args.out or f"oracle_foresight-{args.profile}", {
        "profile": args.profile, "policy": repo_path(policy), "load_scale": scale, "seeds": args.seeds,
        "requests": requests, "luck_draws": args.luck_draws,
        "oracle": {"horizon_s": OracleConfig().horizon_s, "horizon_steps": OracleConfig().horizon_steps,
                   "base": OracleConfig().base},
        "mean_vs_best": summary, "points": points, "wall_s": round(time.perf_counter() - t0, 1),
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
