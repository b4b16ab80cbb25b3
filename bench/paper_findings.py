"""Do the literature's central findings reproduce on the H100 profile?

1. Low load, acceptance >= 0.8: `goodput` (SmartSpec) has >= 1.5x lower mean latency
   than plain decoding (`static:0`).
2. The speedup of `static:4` over `static:0` shrinks as the rate grows and becomes a
   slowdown near saturation (the Little's-Law latency model's prediction).
3. Over a sweep of >= 6 rates, `goodput` is never more than 5% worse than the better of
   `static:0` and the best static k at that rate.
4. Under KV pressure near saturation, `nightjar` completes more tokens/s than `static:4`.

Writes results/paper_findings.json and the README's figure results/latency_vs_rate.png.
"""

from __future__ import annotations

import time

from common import RESULTS, ROOT, write_result

from rlspec.evaluate import evaluate
from rlspec.scenario import load_scenario
from rlspec.sweep import plot_sweep, run_sweep

RATES = [2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 28.0, 30.0]
STATIC = [f"static:{k}" for k in range(5)]
CONTROLLERS = [*STATIC, "goodput", "latency-model", "nightjar"]


def main() -> None:
    t0 = time.perf_counter()
    scenario = load_scenario(ROOT / "envs" / "steady-low.yaml")
    sweep = run_sweep(scenario, RATES, CONTROLLERS, progress=True)
    lat = {c: [r[c].mean_latency_s for r in sweep["results"]] for c in CONTROLLERS}
    RESULTS.mkdir(exist_ok=True)
    plot_sweep(RATES, sweep["results"], CONTROLLERS, str(RESULTS / "latency_vs_rate.png"),
               title="H100 8B/1B, Poisson, acceptance 0.8 (simulator)")  # fmt: skip

    low_speedup = lat["static:0"][0] / lat["goodput"][0]
    speedup4 = [a / b for a, b in zip(lat["static:0"], lat["static:4"], strict=True)]
    ratios = []
    for i, _ in enumerate(RATES):
        best_static = min(lat[c][i] for c in STATIC)  # includes static:0
        ratios.append(lat["goodput"][i] / best_static)
    kv = evaluate(load_scenario(ROOT / "envs" / "kv-pressure.yaml"), ["static:4", "nightjar"])
    kv_tok = {c: m.throughput_tok_s for c, m in kv.items()}

    findings = {
        "goodput_low_load_speedup": {
            "value": low_speedup, "target": ">= 1.5", "holds": low_speedup >= 1.5,
        },
        "static4_speedup_by_rate": {
            "value": speedup4,
            "target": "shrinks with rate; < 1 near saturation",
            "holds": speedup4[-1] < 1.0 < speedup4[0] and speedup4[-1] < speedup4[len(RATES) // 2] < speedup4[0],
        },
        "goodput_vs_best_static_by_rate": {
            "value": ratios, "target": "<= 1.05 at every rate", "holds": max(ratios) <= 1.05,
        },
        "kv_pressure_tok_s": {
            "value": kv_tok, "target": "nightjar > static:4",
            "holds": kv_tok["nightjar"] > kv_tok["static:4"],
        },
    }  # fmt: skip
    for name, f in findings.items():
        print(f"{'OK ' if f['holds'] else 'NO '} {name}: {f['value']} (target {f['target']})")
    write_result(
        "paper_findings",
        {
            "scenario": scenario.name,
            "profile": scenario.profile,
            "seed": sweep["seed"],
            "rates": RATES,
            "mean_latency_s": lat,
            "p99_latency_s": {
                c: [r[c].p99_latency_s for r in sweep["results"]] for c in CONTROLLERS
            },
            "throughput_tok_s": {
                c: [r[c].throughput_tok_s for r in sweep["results"]] for c in CONTROLLERS
            },
            "findings": findings,
            "wall_s": round(time.perf_counter() - t0, 1),
        },
    )


if __name__ == "__main__":
    main()
