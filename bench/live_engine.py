"""The live tiny pair on this CPU: the speculation trade-off, engine start-up, and
latency-vs-rate curves of static:0, static:3, goodput and nightjar with the controller's
overhead per step.

    python bench/live_engine.py [--pair models/tiny] [--part all|tradeoff|curves]

Builds the default pair into --pair if it is missing. Writes results/live_tradeoff.json,
results/live_curves.json and results/live_latency_vs_rate.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import RESULTS, ROOT, write_result

import rlspec.engines.vllm  # noqa: F401  (Intel OpenMP before vLLM)
from rlspec.control.registry import make_controller
from rlspec.engines.factory import make_backend
from rlspec.evaluate import run_episode
from rlspec.scenario import load_scenario
from rlspec.sweep import plot_sweep

RATES = [0.5, 1.0, 2.0, 3.0, 4.0, 6.0]  # 15 s of Poisson arrivals each
CONTROLLERS = ["static:0", "static:3", "goodput", "nightjar"]


class Timed:
    """Wraps a controller, timing each decision (the per-step overhead serving would pay)."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0
        self.calls = 0

    def reset(self, ctx):
        self.inner.reset(ctx)

    def decide(self, obs):
        t0 = time.perf_counter()
        action = self.inner.decide(obs)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return action


def tradeoff(pair: Path) -> dict:
    from rlspec.engines.vllm.measure import measure

    return measure(str(pair / "target"), str(pair / "draft"), [1, 16], [0, 2, 4],
                   repeats=3, kv_cache_memory_bytes=512 << 20)  # fmt: skip


def curves(scenario_path: Path, rates: list[float]) -> dict:
    scenario = load_scenario(scenario_path)
    t0 = time.perf_counter()
    backend = make_backend(scenario, "vllm")
    backend.open()
    startup = time.perf_counter() - t0
    results, overhead = [], {c: [] for c in CONTROLLERS}
    try:
        for rate in rates:
            s = scenario.with_rate(rate).shortened(15.0)
            requests = s.requests()
            row = {}
            for c in CONTROLLERS:
                ctrl = Timed(make_controller(c))
                m = run_episode(backend, ctrl, requests, s)
                row[c] = m
                per_decision = ctrl.seconds / max(ctrl.calls, 1)
                # A decision covers `decision_interval` iterations of this episode.
                mean_step = backend.clock / max(backend.iterations, 1)
                overhead[c].append(per_decision / (s.decision_interval * mean_step))
                print(f"rate {rate:g}: {c:9s} mean {m.mean_latency_s:.2f}s p99 {m.p99_latency_s:.2f}s "
                      f"{m.throughput_tok_s:.0f} tok/s k {m.mean_k:.2f}")  # fmt: skip
            results.append(row)
    finally:
        backend.close()
    return {
        "scenario": scenario.name,
        "rates": rates,
        "engine_startup_s": startup,
        "results": {c: [r[c].as_dict() for r in results] for c in CONTROLLERS},
        "controller_overhead_frac_of_step": overhead,
    }


def merge_curves(old: dict, new: dict) -> dict:
    """Points of `new` added to (or replacing) those of `old`: extending a curve to more
    rates without re-measuring the others."""
    by_rate = {}
    for d in (old, new):
        for i, r in enumerate(d["rates"]):
            by_rate[r] = {c: (d["results"][c][i], d["controller_overhead_frac_of_step"][c][i])
                          for c in CONTROLLERS}  # fmt: skip
    rates = sorted(by_rate)
    return {
        **new,
        "rates": rates,
        "engine_startup_s": new["engine_startup_s"],
        "results": {c: [by_rate[r][c][0] for r in rates] for c in CONTROLLERS},
        "controller_overhead_frac_of_step": {c: [by_rate[r][c][1] for r in rates] for c in CONTROLLERS},
    }


def plot_curves(d: dict) -> None:
    from rlspec.metrics import EpisodeMetrics

    rows = [{c: EpisodeMetrics(**d["results"][c][i]) for c in CONTROLLERS} for i in range(len(d["rates"]))]
    plot_sweep(d["rates"], rows, CONTROLLERS, str(RESULTS / "live_latency_vs_rate.png"),
               title="live vLLM (CPU), tiny 214M/21M pair")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", default=str(ROOT / "models" / "tiny"))
    ap.add_argument("--part", choices=["all", "tradeoff", "curves"], default="all")
    ap.add_argument("--rates", default=None,
                    help="comma-separated req/s to measure and add to results/live_curves.json "
                         f"(default: all of {RATES}, replacing it)")  # fmt: skip
    args = ap.parse_args()
    pair = Path(args.pair)
    if not (pair / "target" / "config.json").is_file():
        from rlspec.engines.tiny_models import build_tiny_pair

        build_tiny_pair(pair)
    if args.part in ("all", "tradeoff"):
        t = tradeoff(pair)
        for r in t["rows"]:
            print(r)
        write_result("live_tradeoff", t)
    if args.part in ("all", "curves"):
        rates = RATES if args.rates is None else [float(r) for r in args.rates.split(",")]
        d = curves(ROOT / "envs" / "live" / "tiny-poisson.yaml", rates)
        existing = RESULTS / "live_curves.json"
        if args.rates is not None and existing.is_file():
            d = merge_curves(json.loads(existing.read_text()), d)
        plot_curves(d)
        write_result("live_curves", d)


if __name__ == "__main__":
    main()
