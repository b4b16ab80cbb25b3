"""What a draft length per request could gain over one k for the whole batch, at best.

    python bench/per_request_k.py --profile cpu-tiny-amx --spread results/calibration-cpu-tiny-amx-spread.json

Every controller here, the policy included, sets one k per step. Requests differ in how
many drafts the target keeps (the per-request Beta's concentration, which `rlspec calibrate`
now measures from each request's verify steps), so a request that accepts more would be
worth drafting deeper than one that accepts less. This bounds that gain from above: each
request's acceptance probability is *known*, and every monotone assignment of k in 0..k_max
(deeper for the requests that accept more) is tried against every single k, by the
profile's cost model of a decode step (the drafter runs max k passes for the batch; the
target verifies each request's own 1 + k_i tokens). The figure is tokens per second, the
most a step could gain; latency gains are at most that at saturation and less below it.

Batches are drawn per workload from the measured (mean, concentration, decay) and each
request's context from the workload's own lengths. Writes results/NAME.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
from common import ROOT, repo_path, write_result

sys.path.insert(0, str(ROOT))

from fidelity import WORKLOADS  # noqa: E402

from rlspec.perf.acceptance import AcceptanceConfig, AcceptanceModel  # noqa: E402
from rlspec.perf.profile import load_profile  # noqa: E402
from rlspec.perf.step_time import StepTimeModel  # noqa: E402
from rlspec.scenario import load_scenario  # noqa: E402


def expected_tokens(a: np.ndarray, decay: float, k_max: int) -> np.ndarray:
    """(n, k_max + 1): tokens a verify step emits for each request at each k, bonus included:
    1 + sum_{j=1..k} prod_{i<j} a d^i."""
    p = a[:, None] * decay ** np.arange(k_max)[None, :]
    return np.concatenate([np.ones((len(a), 1)), 1.0 + np.cumsum(np.cumprod(p, axis=1), axis=1)], axis=1)


def monotone_assignments(n: int, k_max: int) -> np.ndarray:
    """(A, n): every k_i in 0..k_max that does not rise as acceptance falls (requests sorted
    from the most accepting down); stars and bars over the k levels."""
    rows = []
    for bars in itertools.combinations(range(n + k_max), k_max):
        cuts = [-1, *bars, n + k_max]
        counts = [cuts[i + 1] - cuts[i] - 1 for i in range(k_max + 1)]
        rows.append(np.repeat(np.arange(k_max, -1, -1), counts))
    return np.array(rows)


def step_seconds(cost: StepTimeModel, ks: np.ndarray, context: int) -> np.ndarray:
    """Decode-step seconds for each assignment row of `ks` (A, n): the target verifies
    sum(1 + k_i) tokens and the drafter runs the longest k's passes over the whole batch,
    as vLLM's draft-model proposer does."""
    n = ks.shape[1]
    return np.array([cost.iteration(n, int(row.max()), 0, context, True, spec_tokens=int(row.sum())) for row in ks])


def bound(cost: StepTimeModel, acc: AcceptanceConfig, context_per_req: float, batches: list[int], draws: int,
          k_max: int, seed: int) -> list[dict]:  # fmt: skip
    model = AcceptanceModel(acc, np.random.default_rng(seed))
    rows = []
    for n in batches:
        ks = monotone_assignments(n, k_max)
        uniform = np.array([[k] * n for k in range(k_max + 1)])
        ctx = int(n * context_per_req)
        t_all, t_one = step_seconds(cost, ks, ctx), step_seconds(cost, uniform, ctx)
        gains, k_global = [], []
        for _ in range(draws):
            a = np.sort(model.draw_requests(np.zeros(n)))[::-1]
            e = expected_tokens(a, acc.position_decay, k_max)  # (n, k_max + 1)
            per_req = e[np.arange(n)[None, :], ks].sum(axis=1) / t_all
            one = e.sum(axis=0) / t_one
            gains.append(per_req.max() / one.max())
            k_global.append(int(one.argmax()))
        rows.append({"batch": n, "assignments": len(ks), "gain_mean": float(np.mean(gains)),
                     "gain_p90": float(np.quantile(gains, 0.9)), "gain_max": float(np.max(gains)),
                     "best_single_k_mean": float(np.mean(k_global))})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu-tiny-amx")
    p.add_argument("--spread", required=True,
                   help="a calibration result (results/*.json) with acceptance_spread_by_workload")  # fmt: skip
    p.add_argument("--batches", default="1,2,4,8,12,16")
    p.add_argument("--draws", type=int, default=40, help="batches drawn per size")
    p.add_argument("--concentrations", default="",
                   help="extra concentrations to read beside the measured ones (comma-separated)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="per_request_k-cpu-tiny-amx")
    args = p.parse_args(argv)
    profile = load_profile(args.profile)
    cost = StepTimeModel(profile)
    spread_path = Path(args.spread).resolve()
    spread = json.loads(spread_path.read_text())["acceptance_spread_by_workload"]
    batches = [int(b) for b in args.batches.split(",")]
    k_max = 4
    out = {"profile": args.profile, "spread_from": repo_path(spread_path), "k_max": k_max,
           "draws": args.draws, "seed": args.seed, "workloads": {}}  # fmt: skip
    scenarios = {sc.name: sc for sc in (load_scenario(w.scenario) for w in WORKLOADS)}
    for name, fit in spread.items():
        sc = scenarios[name]
        reqs = sc.requests(sc.seed)
        # A decoding request attends its prompt and, on average, half its output.
        context = float(np.mean([r.prompt_len + r.output_len / 2 for r in reqs]))
        concs = [("measured", fit["concentration"])]
        concs += [(f"c={float(c):g}", float(c)) for c in args.concentrations.split(",") if c]
        w = {"context_per_request": context, "mean": fit["mean"], "position_decay": fit["position_decay"],
             "concentration_measured": fit["concentration"],
             "concentration_interval_95": fit["concentration_interval_95"], "by_concentration": {}}  # fmt: skip
        for label, c in concs:
            acc = AcceptanceConfig(mean=fit["mean"], concentration=c, position_decay=fit["position_decay"])
            rows = bound(cost, acc, context, batches, args.draws, k_max, args.seed)
            w["by_concentration"][label] = {"concentration": c, "rows": rows}
            print(f"{name} {label} (c {c:.1f}): " + ", ".join(f"batch {r['batch']} {r['gain_mean']:.4f}" for r in rows))
        out["workloads"][name] = w
    write_result(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
