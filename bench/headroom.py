"""Headroom: how much lower can mean latency go than the best analytical controller, with a
perfect-information lookahead oracle choosing k and drafter placement (rlspec/oracle.py)?

The oracle knows every future arrival and copies the simulator's random stream; no policy
that sees only features can beat it by much. Its margin over the best analytical controller
is therefore the yardstick for the policy targets (10% lower mean latency on bursty,
flash-crowd and KV pressure; 1.25x static:4's throughput at KV saturation).
Writes results/headroom.json.

    python bench/headroom.py [--horizon 6] [--workers 2] [--scenarios bursty,flash-crowd]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

from common import ROOT, repo_path, write_result
from policy_vs_baselines import KV_SATURATION_RATE, TARGET_10PCT, scenario_paths
from tqdm import tqdm

from rlspec.control.registry import ANALYTICAL
from rlspec.engines.factory import make_backend
from rlspec.evaluate import evaluate, run_episode
from rlspec.oracle import LookaheadOracle, OracleConfig
from rlspec.scenario import Scenario, load_scenario


def measure(job: tuple[str, Scenario, float, str]) -> dict:
    """The analytical controllers, the shipped policy and the oracle on one scenario."""
    name, scenario, horizon, policy = job
    res = evaluate(scenario, [*ANALYTICAL, f"policy:{policy}"])
    backend = make_backend(scenario, seed=scenario.seed)
    oracle = LookaheadOracle(backend, OracleConfig(horizon_s=horizon))
    t0 = time.perf_counter()
    res["oracle"] = run_episode(backend, oracle, scenario.requests(scenario.seed), scenario)
    wall = time.perf_counter() - t0
    best = min(ANALYTICAL, key=lambda c: res[c].mean_latency_s)
    lat = lambda c: res[c].mean_latency_s  # noqa: E731
    return {
        "name": name,
        "best_analytical": best,
        "oracle_vs_best": lat("oracle") / lat(best),
        "oracle_vs_goodput": lat("oracle") / lat("goodput"),
        "policy_vs_best": lat(f"policy:{policy}") / lat(best),
        "oracle_throughput_vs_static4": res["oracle"].throughput_tok_s
        / res["static:4"].throughput_tok_s,
        "oracle_wall_s": wall,
        "oracle_rollouts": oracle.rollouts,
        "results": {
            ("policy" if c.startswith("policy:") else c): m.as_dict() for c, m in res.items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--horizon", type=float, default=6.0,
                    help="oracle rollout window (s; at least OracleConfig.horizon_steps iterations)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--policy", default=str(ROOT / "checkpoints" / "h100-ppo"))
    ap.add_argument("--scenarios", default="", help="comma-separated names (default: all)")
    args = ap.parse_args()
    wanted = {s for s in args.scenarios.split(",") if s}
    jobs = []
    for path in scenario_paths():
        scenario = load_scenario(path)
        if not wanted or scenario.name in wanted:
            jobs.append((scenario.name, scenario, args.horizon, args.policy))
    kv = load_scenario(ROOT / "envs" / "kv-pressure.yaml").with_rate(KV_SATURATION_RATE)
    if not wanted or "kv-saturation" in wanted:
        jobs.append(("kv-saturation", kv, args.horizon, args.policy))
    t0 = time.perf_counter()
    rows = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for row in tqdm(pool.map(measure, jobs), total=len(jobs), desc="headroom", unit="scenario"):
            rows[row.pop("name")] = row
            print(
                f"  {list(rows)[-1]:18s} oracle / best analytical ({row['best_analytical']}) "
                f"{row['oracle_vs_best']:.3f}, policy / best {row['policy_vs_best']:.3f}"
            )
    sat = rows.get("kv-saturation")
    payload = {
        "oracle": {"horizon_s": args.horizon, "horizon_steps": OracleConfig().horizon_steps,
                   "base": OracleConfig().base},
        "policy": repo_path(args.policy),
        "scenarios": rows,
        "kv_saturation_rate": KV_SATURATION_RATE,
        "oracle_reaches": {
            "at_most_best_everywhere": all(
                r["oracle_vs_best"] <= 1.0 for n, r in rows.items() if n != "kv-saturation"
            ),
            "10pct_better_on_bursty_flash_kv": all(
                rows[n]["oracle_vs_best"] <= 0.9 for n in TARGET_10PCT if n in rows
            ),
            "kv_saturation_throughput_vs_static4_at_least_1.25": (
                sat is not None and sat["oracle_throughput_vs_static4"] >= 1.25
            ),
        },
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    write_result("headroom", payload)


if __name__ == "__main__":
    main()
