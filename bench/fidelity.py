"""Fidelity of the calibrated simulator against the live vLLM engine.

    python bench/fidelity.py [--profile cpu-tiny] [--requests 40] [--wait-quiet 0.3]
    python bench/fidelity.py --live-from results/fidelity.json   # re-simulate, same live runs
    python bench/fidelity.py --profile cpu-tiny-avx2 --load-scale auto --out fidelity-cpu-tiny-avx2
    python bench/fidelity.py --requests poisson=40,azure-code=120   # per workload

For two workloads - Poisson (envs/live/tiny-poisson.yaml, rate varied) and the Azure code
trace (envs/live/tiny-azure-code.yaml, length-scaled, replay speed varied) - at >= 6 load
levels each, `static:0`, `static:3` and `goodput` serve the same requests on the live
engine and in the simulator built from the calibrated profile (same KV capacity in tokens,
engine limits and measured acceptance: `rlspec.calibration.matching`). Writes
results/fidelity.json (`mean_latency_mape`, `acceptance_abs_error`, p99 and throughput
errors, every point) and results/fidelity.png (live solid, simulated dashed).
The load levels below suit the host `cpu-tiny` was fitted on (saturation ~2 req/s);
`--load-scale` multiplies them for a profile of a slower or faster host, and the live engine
runs at the dtype the profile was fitted at. A live run refuses a profile whose recorded host
differs from this machine (`rlspec.perf.host`): it would measure the CPU, not the simulator.
`--live-from` takes the live side of every point from an earlier result instead of running
the engine: after a change to the simulator or to the profile's acceptance, the simulated
side is redone against the same live episodes (~20 s instead of ~25 min). After a change to
the profile's step costs only the static controllers can be redone so (`--controllers
static:0,static:3`): their live episodes do not depend on the costs, the goodput
controller's decisions do.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

from common import RESULTS, ROOT, parse_requests, write_result

sys.path.insert(0, str(ROOT))

import rlspec.engines.vllm  # noqa: E402,F401  (Intel OpenMP before vLLM)
from rlspec.calibration.sweep import SweepContext, Workload, mean_of_present, offered_rate, rel_err  # noqa: E402
from rlspec.perf.capacity import capacity_ratio  # noqa: E402
from rlspec.perf.profile import load_profile  # noqa: E402

CONTROLLERS = ["static:0", "static:3", "goodput"]
WORKLOADS = [
    Workload("poisson", str(ROOT / "envs/live/tiny-poisson.yaml"), "rate",
             (0.25, 0.5, 1.0, 1.5, 2.0, 3.0)),  # fmt: skip  (saturation ~2 req/s on this host)
    Workload("azure-code", str(ROOT / "envs/live/tiny-azure-code.yaml"), "rate_scale",
             (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)),  # fmt: skip
]
TARGETS = {"mean_latency_mape": 0.10, "acceptance_abs_error": 0.03}


def parse_load_scale(text: str, profile: str) -> float:
    if text == "auto":
        scale = round(capacity_ratio(profile), 2)
        print(f"--load-scale auto: profile {profile!r} serves {scale:.2f}x the requests/s of cpu-tiny's host")
        return scale
    try:
        scale = float(text)
    except ValueError:
        raise SystemExit(f"--load-scale: {text!r} is not a number or 'auto'") from None
    if not scale > 0:
        raise SystemExit(f"--load-scale: {text!r} must be > 0")
    return scale


def summarize(points: list[dict]) -> dict:
    def mape(key: str, pts: list[dict]) -> float | None:
        errs = [p["err"][key] for p in pts if p["err"][key] is not None]
        return statistics.fmean(errs) if errs else None

    def acc(pts: list[dict]) -> tuple[float | None, float | None]:
        with_drafts = [p for p in pts if p["live"]["drafted"] and p["sim"]["drafted"]]
        if not with_drafts:
            return None, None
        per_point = statistics.fmean(p["err"]["acceptance_abs"] for p in with_drafts)
        live = sum(p["live"]["accepted"] for p in with_drafts) / sum(p["live"]["drafted"] for p in with_drafts)
        sim = sum(p["sim"]["accepted"] for p in with_drafts) / sum(p["sim"]["drafted"] for p in with_drafts)
        return per_point, abs(live - sim)

    out = {}
    for scope, pts in [("all", points)] + [
        (w, [p for p in points if p["workload"] == w]) for w in dict.fromkeys(p["workload"] for p in points)
    ]:
        a, pooled = acc(pts)
        out[scope] = {
            "mean_latency_mape": mape("mean_latency", pts),
            "p99_latency_mape": mape("p99_latency", pts),
            "throughput_mape": mape("throughput", pts),
            "ttft_p50_mape": mape("ttft_p50", pts),
            "mean_latency_bias": statistics.fmean(p["err"]["mean_latency_signed"] for p in pts),
            "acceptance_abs_error": a,
            "acceptance_abs_error_pooled": pooled,
            "points": len(pts),
        }
    return out


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wls = list(dict.fromkeys(p["workload"] for p in points))
    cols = [("mean_latency_s", "mean latency (s)"), ("p99_latency_s", "p99 latency (s)"),
            ("throughput_tok_s", "throughput (tok/s)")]  # fmt: skip
    fig, axes = plt.subplots(len(wls), 3, figsize=(14, 4.2 * len(wls)), squeeze=False)
    colors = {c: f"C{i}" for i, c in enumerate(CONTROLLERS)}
    for i, w in enumerate(wls):
        pts = [p for p in points if p["workload"] == w]
        for j, (key, label) in enumerate(cols):
            ax = axes[i][j]
            for c in dict.fromkeys(p["controller"] for p in pts):
                cp = sorted((p for p in pts if p["controller"] == c), key=lambda p: p["offered_rate"])
                x = [p["offered_rate"] for p in cp]
                ax.plot(x, [p["live"][key] for p in cp], "-o", color=colors[c], label=f"{c} live")
                ax.plot(x, [p["sim"][key] for p in cp], "--x", color=colors[c], label=f"{c} sim")
            ax.set_xlabel("offered load (requests/s)")
            ax.set_ylabel(label)
            ax.set_title(f"{w}: {label}")
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.suptitle("Live vLLM (solid) vs calibrated simulator (dashed), tiny pair on CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _stored_live(path: Path, profile: str) -> dict:
    """The live side of an earlier fidelity result: per (workload, value, controller)."""
    d = json.loads(path.read_text())
    if not d.get("live"):
        raise SystemExit(f"--live-from {path}: holds no live measurements")
    if d["profile"] != Path(profile).stem:
        raise SystemExit(f"--live-from {path}: measured with profile {d['profile']!r}, not {profile!r}")
    live = {(p["workload"], p["value"], p["controller"]): p["live"] for p in d["points"]}
    return {"workloads": d["workloads"], "engine": {k: d["engine"][k] for k in ("block_size", "num_kv_blocks")},
            "live": live, "wall_s": d["wall_s"], "fitted": d["profile_fitted"], "rerun_log": d.get("rerun_log", []),
            "host": d.get("host"), "host_differences": d.get("host_differences", []),
            "load_scale": d.get("load_scale", 1.0), "step_time_reference": d.get("step_time_reference") or d["profile"],
            # where and when the live side ran (this run only re-simulates it)
            "environment": d.get("live_environment", d["environment"]),
            "warm_runs": d.get("warm_runs", 0)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu-tiny")
    ap.add_argument("--requests", default="40",
                    help="requests per live episode: N, or name=N,... per workload (others 40)")  # fmt: skip
    ap.add_argument("--sim-seeds", type=int, default=5)
    ap.add_argument("--wait-quiet", type=float, default=None, metavar="CORES",
                    help="shared machine: wait for / re-run around other processes' CPU use")  # fmt: skip
    ap.add_argument("--workloads", default=",".join(w.name for w in WORKLOADS))
    ap.add_argument("--values", default=None, help="override the load levels (one workload)")
    ap.add_argument("--load-scale", default="1",
                    help="multiply every load level (a profile of a host slower or faster than cpu-tiny's); "
                         "'auto': by the profile's capacity relative to cpu-tiny's (`rlspec.perf.capacity`)")  # fmt: skip
    ap.add_argument("--allow-host-mismatch", action="store_true",
                    help="measure live against a profile fitted on another kind of host (recorded in the result)")  # fmt: skip
    ap.add_argument("--sim-only", action="store_true", help="no live engine (choosing rates)")
    ap.add_argument("--live-from", default=None, metavar="JSON",
                    help="take the live side from this earlier result (same workloads) instead of the engine")  # fmt: skip
    ap.add_argument("--controllers", default=",".join(CONTROLLERS),
                    help=f"a subset of {CONTROLLERS} (with --live-from and changed step costs: the static ones)")  # fmt: skip
    ap.add_argument("--warm-runs", type=int, default=1,
                    help="unmeasured serves of each live episode before the measured one, so no controller "
                         "pays for meeting the point's token counts first (rlspec.calibration.sweep); "
                         "0: as before 2026-12-06")  # fmt: skip
    ap.add_argument("--out", default="fidelity")
    args = ap.parse_args(argv)
    controllers = args.controllers.split(",")
    if unknown := [c for c in controllers if c not in CONTROLLERS]:
        raise SystemExit(f"--controllers: unknown {unknown}; allowed: {CONTROLLERS}")
    args.load_scale = parse_load_scale(args.load_scale, args.profile)
    requests = parse_requests(args.requests, [w.name for w in WORKLOADS])
    stored = _stored_live(Path(args.live_from), args.profile) if args.live_from else None

    prof = load_profile(args.profile)
    costs_changed = stored is not None and stored["fitted"] != (prof.fitted.__dict__ if prof.fitted else None)
    if costs_changed and (cost_driven := [c for c in controllers if not c.startswith("static:")]):
        raise SystemExit(f"--live-from {args.live_from}: its profile's step costs differ from {args.profile!r}'s "
                         f"now; the live runs of {cost_driven} depend on them: re-run live, or re-simulate "
                         "only --controllers static:0,static:3")  # fmt: skip
    profile_path = Path(args.profile) if Path(args.profile).suffix else ROOT / f"rlspec/perf/profiles/{args.profile}.yaml"
    chosen = [w for w in WORKLOADS if w.name in args.workloads.split(",")]
    if args.values:
        vals = tuple(float(v) for v in args.values.split(","))
        chosen = [Workload(w.name, w.scenario, w.knob, vals, w.requests) for w in chosen]
    chosen = [Workload(w.name, w.scenario, w.knob, tuple(round(v * args.load_scale, 4) for v in w.values),
                       requests[w.name]) for w in chosen]  # fmt: skip
    if stored is not None:  # the stored run's workloads, load levels and engine
        chosen = [Workload(w.name, w.scenario, w.knob, tuple(stored["workloads"][w.name]["values"]),
                           stored["workloads"][w.name]["requests"]) for w in chosen if w.name in stored["workloads"]]  # fmt: skip
    ctx = SweepContext.open(chosen[0].variant(chosen[0].values[0]), profile_path,
                            live=not args.sim_only and stored is None, quiet=args.wait_quiet,
                            sim_seeds=args.sim_seeds, allow_host_mismatch=args.allow_host_mismatch,
                            warm_runs=args.warm_runs, **(stored["engine"] if stored else {}))  # fmt: skip
    ctx_reference = ctx.live.reference_profile if ctx.live is not None else None
    t0 = time.perf_counter()
    points: list[dict] = []
    try:
        for w in chosen:
            for v in w.values:
                sc = ctx.match(w.variant(v))
                rate = offered_rate(sc)
                for c in controllers:
                    sim = ctx.run_sim(sc, c)
                    if stored is not None:
                        live = stored["live"][(w.name, v, c)]
                    else:
                        live = ctx.run_live(sc, c) if ctx.live is not None else sim
                    err = {
                        "mean_latency": rel_err(sim["mean_latency_s"], live["mean_latency_s"]),
                        "mean_latency_signed": (sim["mean_latency_s"] - live["mean_latency_s"]) / live["mean_latency_s"],
                        "p99_latency": rel_err(sim["p99_latency_s"], live["p99_latency_s"]),
                        "throughput": rel_err(sim["throughput_tok_s"], live["throughput_tok_s"]),
                        "ttft_p50": rel_err(sim["ttft_p50_s"], live["ttft_p50_s"]),
                        "acceptance_abs": abs(sim["acceptance"] - live["acceptance"])
                        if sim["acceptance"] is not None and live["acceptance"] is not None else None,
                    }  # fmt: skip
                    points.append({"workload": w.name, "knob": w.knob, "value": v,
                                   "offered_rate": rate, "controller": c, "live": live,
                                   "sim": sim, "err": err})  # fmt: skip
                    print(f"{w.name} {w.knob}={v:g} ({rate:.2f} req/s) {c:>9}: mean lat live "
                          f"{live['mean_latency_s']:.3f} sim {sim['mean_latency_s']:.3f} "
                          f"({err['mean_latency_signed']:+.1%}), p99 {live['p99_latency_s']:.2f}/"
                          f"{sim['p99_latency_s']:.2f}, acc {live['acceptance'] or 0:.3f}/"
                          f"{sim['acceptance'] or 0:.3f}, load {live.get('other_load_cores', 0):.2f}",
                          flush=True)  # fmt: skip
    finally:
        ctx.close()
    summary = summarize(points)
    s = summary["all"]
    if args.sim_only:  # choosing load levels: print, write nothing
        print({k: v for k, v in s.items()})
        return 0
    holds = {
        "mean_latency_mape": s["mean_latency_mape"] is not None
        and s["mean_latency_mape"] <= TARGETS["mean_latency_mape"],
        "acceptance_abs_error": s["acceptance_abs_error"] is not None
        and s["acceptance_abs_error"] <= TARGETS["acceptance_abs_error"],
    }
    plot_path = RESULTS / f"{args.out}.png"
    RESULTS.mkdir(exist_ok=True)
    plot(points, plot_path)
    loads = [p["live"].get("other_load_cores", 0.0) for p in points]
    write_result(args.out, {
        "profile": prof.name,
        "profile_fitted": prof.fitted.__dict__ if prof.fitted else None,
        "profile_sources": prof.sources,
        "profile_host": dataclasses.asdict(prof.host) if prof.host else None,
        **({"live_environment": stored["environment"]} if stored else {}),
        "host": stored["host"] if stored else (dataclasses.asdict(ctx.host) if ctx.host else None),
        "host_differences": stored["host_differences"] if stored else ctx.host_differences,
        "load_scale": stored["load_scale"] if stored else args.load_scale,
        # the profile the live episodes' step_time_vs_profile compares with
        "step_time_reference": stored["step_time_reference"] if stored else (ctx_reference or prof.name),
        "engine": {"block_size": ctx.block_size, "num_kv_blocks": ctx.num_kv_blocks,
                   "kv_tokens": ctx.block_size * ctx.num_kv_blocks},
        "acceptance_model": ctx.acceptance.__dict__ if ctx.acceptance else None,
        "acceptance_by_workload": {w.name: (a.__dict__ if (a := ctx.acceptance_of(w.variant(w.values[0]))) else None)
                                   for w in chosen},  # fmt: skip
        "controllers": controllers,
        "workloads": {w.name: {"scenario": str(Path(w.scenario).relative_to(ROOT)), "knob": w.knob,
                               "values": list(w.values), "requests": w.requests} for w in chosen},
        "live": not args.sim_only,
        "live_from": None if stored is None else {"path": args.live_from, "wall_s": stored["wall_s"],
                                                  "live_profile_fitted": stored["fitted"]},  # fmt: skip
        "sim_seeds": args.sim_seeds,
        "warm_runs": stored["warm_runs"] if stored else args.warm_runs,
        "mean_latency_mape": s["mean_latency_mape"],
        "acceptance_abs_error": s["acceptance_abs_error"],
        "acceptance_abs_error_pooled": s["acceptance_abs_error_pooled"],
        "p99_latency_mape": s["p99_latency_mape"],
        "throughput_mape": s["throughput_mape"],
        "summary": summary,
        "targets": TARGETS,
        "holds": holds,
        "other_load_cores_mean": statistics.fmean(loads) if loads else 0.0,
        "other_load_cores_max": max(loads) if loads else 0.0,
        "step_time_vs_profile_mean": mean_of_present(p["live"].get("step_time_vs_profile") for p in points),
        "rerun_log": ctx.log if stored is None else stored["rerun_log"],
        "wall_s": round(time.perf_counter() - t0, 1),
        "plot": str(plot_path.relative_to(ROOT)),
        "points": points,
    })  # fmt: skip
    print(f"mean latency MAPE {s['mean_latency_mape']:.1%} (target <= 10%), acceptance abs error "
          f"{s['acceptance_abs_error'] or 0:.3f} (target <= 0.03), p99 MAPE {s['p99_latency_mape']:.1%}, "
          f"throughput MAPE {s['throughput_mape']:.1%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
