"""Sim-to-real: a policy trained only in the calibrated simulator, on the live engine.

    python bench/sim_to_real.py train [--profile P] [--config agents/ppo-oracle.yaml]  # -> checkpoints/P-oracle-ppo/
    python bench/sim_to_real.py eval [--profile P] [--wait-quiet 0.3]  # -> results/sim_to_real[-P].json (+ .png)
    python bench/sim_to_real.py eval --sim-only [--profile P]           # -> results/sim_to_real[-P]-sim.json (simulator only)
    python bench/sim_to_real.py plot [--profile P]                     # redraw the figures from the json
    python bench/sim_to_real.py pool --runs RUN RUN ... --out NAME      # pool live runs of one policy (eval --out RUN)

Every command is for one calibrated host: `--profile` (default cpu-tiny; cpu-tiny-avx2 is
the same pair fitted on an AVX2-only host). The live engine must be that kind of host.
`train` runs the agent config's training (default agents/ppo-oracle.yaml: the lookahead
oracle distilled by DAgger, then PPO) on envs/distributions/P-train.yaml - simulator only,
the profile's cost model - evaluating against the baselines on the live scenarios *in
simulation* (on the profile, at its loads), and exports the frozen policy.
The load levels were chosen on cpu-tiny's host; another host gets them times its capacity
relative to that one (`rlspec.perf.capacity`), in training and evaluation alike.
`eval` serves the Poisson and Azure-code workloads at several load levels on the LIVE
engine with the policy and every analytical controller (same requests), and in the matched
simulator for reference. The host's speed changes between episodes by more than good
controllers differ, so by default (`--engines 3`) the controllers run side by side: three
engines take turns (`rlspec.calibration.interleave`), the policy beside each group of two
analytical controllers, and policy / controller comes from the episodes they ran together
(*paired*). A turn lasts `--turn-s` (0.5 s) of iterations: one iteration per turn charges
every step the cost of a turn (caches and cores left cold by the other engines, a few ms),
which favours controllers with fewer, longer steps. The figure of merit is policy mean
latency / best analytical controller's, per point: raw (means over all episodes), paired, and with every
episode moved to the point's mean engine speed (`rlspec.calibration.engine_speed`).
`--engines 1` runs the controllers one after another on one engine instead, as a deployed
engine steps: with `--repeats 2` the second pass runs them in reverse order (each controller's
two episodes centred on the same moment, so a linear drift of the host cancels) and only the
first pass warms up. `bench/turns_bias.py` measured one iteration per turn favouring k = 4
over k = 0 by 2.7% of mean latency against the same pair served alone, and 0.5-s turns by
0.2% (notes/calibration.md section 24).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import RESULTS, ROOT, parse_requests, repo_path, write_result

sys.path.insert(0, str(ROOT))

from fidelity import parse_load_scale  # noqa: E402

import rlspec.engines.vllm  # noqa: E402,F401  (Intel OpenMP before vLLM)
from rlspec.calibration.engine_speed import speed_adjusted  # noqa: E402
from rlspec.calibration.interleave import seated  # noqa: E402
from rlspec.calibration.sweep import SweepContext, Workload, mean_of_present, offered_rate  # noqa: E402
from rlspec.perf.capacity import capacity_ratio  # noqa: E402
from rlspec.perf.profile import KVPool, load_profile  # noqa: E402

CONFIG = ROOT / "agents" / "ppo-oracle.yaml"
LIVE_SCENARIOS = [ROOT / "envs/live/tiny-poisson.yaml", ROOT / "envs/live/tiny-azure-code.yaml"]
ANALYTICAL = ["static:0", "static:3", "goodput", "latency-model", "nightjar", "batch-table"]
# load levels on cpu-tiny's host (times the profile's `load_scale` elsewhere)
WORKLOADS = [
    # light load to past saturation (~2 req/s of Poisson chat on this host); the Azure
    # code trace's long prompts queue at every replay speed
    Workload("poisson", str(LIVE_SCENARIOS[0]), "rate", (0.5, 1.0, 1.5, 2.0)),
    Workload("azure-code", str(LIVE_SCENARIOS[1]), "rate_scale", (0.5, 1.0, 2.0, 4.0)),
]


def kv_pool_of(profile: str) -> KVPool:
    """The KV pool `profile`'s engine was calibrated with: the live engine gets it exactly
    (vLLM sizes a CPU pool from the memory free at startup otherwise) and a
    simulation-only run its usable blocks."""
    pool = load_profile(profile).kv_pool
    if pool is None:
        raise SystemExit(f"--profile: {profile!r} records no kv_pool (calibrate it again with `rlspec calibrate`)")
    return pool


def open_context(profile: str, scenario: Any, **kw: Any) -> SweepContext:
    """The sweep's engines (or simulator) for `profile`'s host, started on `scenario`, with the
    KV pool the profile was calibrated with (keyword arguments: `SweepContext.open`'s)."""
    pool = kv_pool_of(profile)
    scenario = scenario.replace(live=dataclasses.replace(scenario.live, kv_cache_memory_bytes=pool.memory_bytes))
    return SweepContext.open(scenario, ROOT / f"rlspec/perf/profiles/{profile}.yaml", block_size=pool.block_size,
                             num_kv_blocks=pool.usable_blocks,  # the pool a simulation-only run assumes
                             **kw)  # fmt: skip


def run_dir_of(profile: str) -> Path:
    return ROOT / "checkpoints" / f"{profile}-oracle-ppo"


def distribution_of(profile: str) -> Path:
    return ROOT / "envs" / "distributions" / f"{profile}-train.yaml"


def load_scale(profile: str) -> float:
    """The profile's capacity relative to cpu-tiny's host, which the load levels are for
    (rounded: it names the loads, and 1.0 exactly for cpu-tiny)."""
    return round(capacity_ratio(profile), 2)


def result_name(profile: str) -> str:
    return "sim_to_real" if profile == "cpu-tiny" else f"sim_to_real-{profile}"


def train_policy(timesteps: int | None, run_dir: Path, seed: int = 0, ppo_overrides: dict | None = None,
                 config: Path = CONFIG, distribution: Path | None = None,
                 profile: str = "cpu-tiny") -> Path:  # fmt: skip
    from rlspec.agents.config import load_agent_config
    from rlspec.agents.export import export_policy
    from rlspec.agents.train import train

    cfg = load_agent_config(config)
    distribution = distribution or distribution_of(profile)
    if not distribution.is_file():
        raise SystemExit(f"--distribution: no file {distribution} (write one for profile {profile!r})")
    timesteps = timesteps or cfg.total_timesteps
    if ppo_overrides:
        cfg = dataclasses.replace(cfg, ppo=dataclasses.replace(cfg.ppo, **ppo_overrides))
    cfg = dataclasses.replace(
        cfg,
        distribution=str(distribution),
        total_timesteps=timesteps,
        seed=seed,
        eval=dataclasses.replace(
            cfg.eval,
            scenarios=[str(p) for p in LIVE_SCENARIOS],
            profile=profile,
            load_scale=load_scale(profile),
            baselines=["static:0", "static:3", "goodput"],
            duration_s=60.0,
            every_steps=20_000,
        ),
    )
    t0 = time.time()
    train(cfg, run_dir, timesteps=timesteps)
    model_file = "best_model.zip" if (run_dir / "best_model.zip").is_file() else "model.zip"
    path = export_policy(run_dir, model_file=model_file)
    print(f"trained {timesteps:,} steps in {time.time() - t0:.0f} s; exported {model_file} -> {path}")
    return path


def trained_on(run_dir: Path) -> str:
    """The training distribution a run dir's resolved config names (repository-relative)."""
    from rlspec.config import load_yaml

    cfg = run_dir / "config.yaml"
    dist = load_yaml(cfg).get("distribution") if cfg.is_file() else None
    return repo_path(dist) if dist else "unknown distribution"


def _mean_runs(runs: list[dict]) -> dict:
    """Repeated live episodes of one controller on the same requests: their mean, and every
    run's mean latency (the engine's run-to-run spread is several percent on a shared CPU,
    as large as the differences between good controllers)."""
    per_run = {"mean_latency_runs_s": [r["mean_latency_s"] for r in runs],
               "step_time_vs_profile_runs": [r["step_time_vs_profile"] for r in runs]}  # fmt: skip
    if all("engine" in r for r in runs):  # engines in turns: which engine served each run
        per_run["engine_runs"] = [r["engine"] for r in runs]
    runs = [{k: v for k, v in r.items() if k != "engine"} for r in runs]
    if len(runs) == 1:
        return {**runs[0], **per_run}
    out = {k: (statistics.fmean(r[k] for r in runs)
               if all(isinstance(r[k], int | float) and not isinstance(r[k], bool) for r in runs) else runs[-1][k])
           for k in runs[0]}  # fmt: skip
    return {**out, **per_run}


def speed_by_engine(points: list[dict]) -> dict[str, float] | None:
    """Each engine's step time over the profile relative to its point's mean, geometric mean
    over the episodes it served: the engines' own speeds, since every group spans every engine
    at one moment and the seated controllers move between them (None: episodes without their
    engine recorded)."""
    logs: dict[int, list[float]] = {}
    for p in points:
        runs = list(p["live"].values())
        if not all("engine_runs" in m for m in runs):
            return None
        eps = [(e, math.log(x)) for m in runs for e, x in zip(m["engine_runs"], m["step_time_vs_profile_runs"], strict=True)]
        mean = statistics.fmean(x for _, x in eps)
        for e, x in eps:
            logs.setdefault(e, []).append(x - mean)
    return {str(e): math.exp(statistics.fmean(v)) for e, v in sorted(logs.items())} if logs else None


def analytical_groups(engines: int) -> list[list[str]]:
    """The analytical controllers in groups of `engines - 1`: each group runs beside the policy."""
    if engines < 2:
        raise ValueError(f"--engines: {engines} runs no controller beside the policy; use 1 (sequential) or >= 2")
    n = engines - 1
    return [ANALYTICAL[i:i + n] for i in range(0, len(ANALYTICAL), n)]


def _paired(group_runs: list[dict[str, float]]) -> dict:
    """Policy / controller from episodes run together: per controller, the policy's mean
    latency over the groups it shared with that controller over the controller's. Latencies
    are expressed on the policy's overall mean, so the smallest is the paired best."""
    pol_all = statistics.fmean(g["policy"] for g in group_runs)
    ratio = {}
    for c in dict.fromkeys(c for g in group_runs for c in g if c != "policy"):
        shared = [g for g in group_runs if c in g]
        ratio[c] = statistics.fmean(g["policy"] for g in shared) / statistics.fmean(g[c] for g in shared)
    return {"policy_vs": ratio,
            "mean_latency_s": {"policy": pol_all, **{c: pol_all / r for c, r in ratio.items()}}}  # fmt: skip


def _latencies(pt: dict, side: str) -> dict[str, float]:
    """Mean latency per controller at a point: `live`, `sim`, `live_adjusted` (live at the
    point's mean engine speed) or `live_paired` (each controller scaled by the policy's
    latency in the episodes it ran beside, so policy / controller is their paired ratio)."""
    if side == "live_adjusted":
        return pt["live_speed"]["mean_latency_s"]
    if side == "live_paired":
        return pt["live_paired"]["mean_latency_s"]
    return {c: m["mean_latency_s"] for c, m in pt[side].items()}


POOLED_SIDES = ("live", "live_paired", "live_adjusted", "live_adjusted_pooled", "sim")


def _pooled_speed(at: list[dict], key: tuple) -> list[dict[str, float]] | None:
    """Each run's mean latencies at point `key`, every episode moved to one engine speed with
    one slope fitted over all the runs' episodes there (an intercept per run and controller).

    A run's own slope at a point rests on the policy's few episodes, the only controller
    repeated: at Azure code x0.735 three runs read 2.07, -0.26 and 3.27, where 32 episodes of
    one A/B test there read 2.5-3.1 (notes/calibration.md section 30). How strongly latency
    answers the host's speed is the point's (its queueing), not the run's, so the runs share
    it. None where a run lacks per-episode records (results from before they were kept)."""
    lat: dict[str, list[float]] = {}
    spd: dict[str, list[float]] = {}
    for j, a in enumerate(at):
        for c, m in a[key]["live"].items():
            if "mean_latency_runs_s" not in m or "step_time_vs_profile_runs" not in m:
                return None
            lat[f"{j} {c}"], spd[f"{j} {c}"] = m["mean_latency_runs_s"], m["step_time_vs_profile_runs"]
    adjusted = speed_adjusted(lat, spd)
    if adjusted is None:
        return None
    return [{c: adjusted.latency_s[f"{j} {c}"] for c in a[key]["live"]} for j, a in enumerate(at)]


def _side_latencies(at: list[dict], key: tuple, side: str) -> list[dict[str, float]] | None:
    """Every run's mean latency per controller at point `key` on `side` (None: not recorded)."""
    if side == "live_adjusted_pooled":
        return _pooled_speed(at, key)
    if not all({"live_adjusted": "live_speed"}.get(side, side) in a[key] for a in at):
        return None
    return [_latencies(a[key], side) for a in at]


def joined_run(spec: str) -> dict:
    """results/NAME.json, or for NAME1+NAME2+... one live run whose workloads were run (and
    saved) apart: the same policy, profile and controllers, their points together."""
    parts = [json.loads((RESULTS / f"{name}.json").read_text()) for name in spec.split("+")]
    run = dict(parts[0])
    for name, part in zip(spec.split("+")[1:], parts[1:], strict=True):
        diff = [k for k in ("policy", "profile", "controllers") if part.get(k) != run.get(k)]
        diff += ["seat offset"] if seat_offset(part) != seat_offset(run) else []
        if diff or set(part["workloads"]) & set(run["workloads"]):
            raise SystemExit(f"pool: {name} is not another workload of {spec.split('+')[0]} "
                             f"({'differs in ' + ', '.join(diff) if diff else 'the same workloads'})")  # fmt: skip
        run["workloads"] = {**run["workloads"], **part["workloads"]}
        run["points"] = run["points"] + part["points"]
    return run


def _best_elsewhere(per_run: list[dict[str, float]], j: int) -> str:
    """The analytical controller the policy compares worst with in every run but run j."""
    others = [r for i, r in enumerate(per_run) if i != j]
    return max(others[0], key=lambda c: statistics.fmean(r[c] for r in others))


def selection_optimism(per_run: list[dict[str, float]], draws: int = 4000, seed: int = 0) -> float:
    """How far the largest pooled ratio is expected to overstate the largest true one, from
    the runs' noise alone: the pooled ratios taken as the truth, each controller's pooled ratio
    redrawn with its own run-to-run standard error (controllers independent), and the mean of
    the largest draw less the largest truth. Taking the pooled ratios as the truth spreads them
    wider than the truth is (too little optimism); independence ignores that controllers seated
    in one group share its moments (too much)."""
    x = np.array([[r[c] for c in per_run[0]] for r in per_run])  # (runs, controllers)
    truth, se = x.mean(axis=0), x.std(axis=0, ddof=1) / math.sqrt(len(x))
    drawn = truth + np.random.default_rng(seed).standard_normal((draws, x.shape[1])) * se
    return float(drawn.max(axis=1).mean() - truth.max())


def seat_offset(run: dict) -> int:
    """The run's `--seat-offset` (0 for runs from before it)."""
    return int((run.get("paired") or {}).get("seat_offset", 0))


def policy_by_engine(runs: list[dict]) -> dict:
    """The policy's episodes at a point serve the same requests once in every group, each on
    another engine, so their spread is the engines' and the moments' alone: per engine, its mean
    latency and step time over the policy's mean at that point, over every point of every run
    (`all`) and over each point's runs (`points`, by "workload value")."""
    cells: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in runs:
        for p in r["points"]:
            m = next(v for c, v in p["live"].items() if c.startswith("policy"))
            lat, spd = m["mean_latency_runs_s"], m["step_time_vs_profile_runs"]
            if len(lat) < 2:
                continue
            for e, x, y in zip(m["engine_runs"], lat, spd, strict=True):
                cells.setdefault((f"{p['workload']} {p['value']:g}", e), []).append(
                    (x / statistics.fmean(lat), y / statistics.fmean(spd)))

    def summary(xs: list[tuple[float, float]]) -> dict:
        return {"latency": statistics.fmean(x for x, _ in xs), "step_time": statistics.fmean(y for _, y in xs),
                "n": len(xs)}  # fmt: skip

    engines = sorted({e for _, e in cells})
    return {"all": {str(e): summary([v for (_, e2), vs in cells.items() if e2 == e for v in vs]) for e in engines},
            "points": {pt: {str(e): summary(cells[(pt, e)]) for e in engines if (pt, e) in cells}
                       for pt in dict.fromkeys(pt for pt, _ in cells)}}  # fmt: skip


def pool_runs(runs: list[dict]) -> dict:
    """Live evaluations of one policy on the same sweep, pooled. One run's paired ratios carry
    ~2-3% noise each, as much as good controllers differ, so runs are pooled per point first:
    each controller's policy / controller ratio averaged over the runs, and the best analytical
    controller chosen on those pooled ratios (choosing it per run takes the minimum of noisier
    figures, a bias against the policy). The standard error of an 8-point mean comes from the
    runs' spread at each point.

    Choosing the best on the same runs it is then measured on still favours it: the largest of
    six noisy ratios is larger than the true largest. The held-out figure removes that: in each
    run the policy is set against the controller the *other* runs found best, and those ratios
    are averaged (selection and measurement on independent episodes, as in cross-fitting). It
    answers for a rule that chooses on fewer runs, so it errs the other way; the expected size of
    the first bias, from the runs' own spread, is `selection_optimism`.

    `live_adjusted_pooled` is `live_adjusted` with the speed slope of each point fitted over
    every run's episodes at once (`_pooled_speed`) instead of each run's few."""
    if len(runs) < 2:
        raise SystemExit("pool: give at least two results of live runs (--runs NAME NAME ...)")
    # results from before the sweep took --profile (a98850f) were all cpu-tiny's
    runs = [{"profile": "cpu-tiny", **r} for r in runs]
    keys = ("policy", "profile", "workloads", "controllers")

    def seating(r: dict) -> str:  # where the policy sat in turns (results before `seated`: the first engine)
        return (r.get("paired") or {}).get("policy_engine", "first")

    for r in runs[1:]:
        diff = [k for k in keys if r.get(k) != runs[0].get(k)] + (["policy_engine"] if seating(r) != seating(runs[0]) else [])
        if diff:
            raise SystemExit(f"pool: the runs differ in {', '.join(diff)}; only runs of one policy on one sweep pool")
    at = [{(p["workload"], p["value"]): p for p in r["points"]} for r in runs]
    if any(set(a) != set(at[0]) for a in at):
        raise SystemExit("pool: the runs hold different points (an interrupted run? finish it with --resume)")
    analytical = [c for c in runs[0]["controllers"] if c != "policy"]
    points = []
    for key in at[0]:
        pt = {"workload": key[0], "value": key[1]}
        for side in POOLED_SIDES:
            lats = _side_latencies(at, key, side)
            if lats is None:
                continue
            per_run = [{c: lat["policy"] / lat[c] for c in analytical} for lat in lats]
            pooled = {c: statistics.fmean(r[c] for r in per_run) for c in analytical}
            best = max(pooled, key=pooled.get)  # the controller the policy compares worst with
            held_out = [run[_best_elsewhere(per_run, j)] for j, run in enumerate(per_run)]
            pt[side] = {"policy_vs": pooled, "best_analytical": best, "policy_vs_best": pooled[best],
                        "policy_vs_best_runs": [r[best] for r in per_run],
                        "variance_vs_best": statistics.variance(r[best] for r in per_run),
                        "policy_vs_best_held_out": statistics.fmean(held_out),
                        "best_held_out_runs": held_out, "selection_optimism": selection_optimism(per_run)}  # fmt: skip
        points.append(pt)

    def scope(pts: list[dict], side: str) -> dict:
        r = [p[side]["policy_vs_best"] for p in pts]
        single = {c: statistics.fmean(p[side]["policy_vs"][c] for p in pts) for c in analytical}
        best_single = max(single, key=single.get)
        se = math.sqrt(sum(p[side]["variance_vs_best"] for p in pts) / len(runs)) / len(pts)
        held = [p[side]["policy_vs_best_held_out"] for p in pts]
        se_held = math.sqrt(sum(statistics.variance(p[side]["best_held_out_runs"]) for p in pts) / len(runs)) / len(pts)
        return {"mean_ratio_vs_best": statistics.fmean(r), "standard_error": se, "max_ratio_vs_best": max(r),
                "mean_ratio_vs_best_held_out": statistics.fmean(held), "standard_error_held_out": se_held,
                "points_at_most_1_held_out": sum(x <= 1.0 for x in held),
                "selection_optimism": statistics.fmean(p[side]["selection_optimism"] for p in pts),
                "points_at_most_1": sum(x <= 1.0 for x in r), "points": len(r),
                "per_run_mean_ratio_vs_best": [statistics.fmean(p[side]["policy_vs_best_runs"][j] for p in pts)
                                               for j in range(len(runs))],
                "mean_ratio_vs_goodput": single["goodput"],
                "best_single_controller": best_single, "mean_ratio_vs_best_single": single[best_single]}  # fmt: skip

    sides = [s for s in POOLED_SIDES if all(s in p for p in points)]
    summary = {name: {side: scope(pts, side) for side in sides}
               for name, pts in [("all", points), *((w, [p for p in points if p["workload"] == w])
                                                    for w in dict.fromkeys(p["workload"] for p in points))]}  # fmt: skip
    offsets = [seat_offset(r) for r in runs]
    engines = int(runs[0].get("engines") or 1)
    # balanced: every seating taken equally often, so each engine's speed falls on every controller alike
    balanced = engines > 1 and len({sum(x % engines == o for x in offsets) for o in range(engines)}) == 1
    return {"policy": runs[0]["policy"], "profile": runs[0]["profile"], "runs": len(runs),
            "target": runs[0]["target"], "seat_offsets": offsets, "seat_balanced": balanced,
            "policy_by_engine": policy_by_engine(runs), "summary": summary, "points": points}  # fmt: skip


def plot_speed(d: dict, path: Path) -> None:
    """Every live episode's mean latency against the engine's speed in it, per point: the
    noise the speed adjustment removes, and the shared slope it fits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = d["points"]
    cols = max(1, (len(pts) + 1) // 2)
    fig, axes = plt.subplots(2, cols, figsize=(3.6 * cols, 7), squeeze=False)
    colors = {c: f"C{i}" for i, c in enumerate(d["controllers"])}
    for ax, p in zip(axes.flat, pts, strict=False):
        for c in d["controllers"]:
            m = p["live"][c]
            style = {"marker": "*", "s": 140, "zorder": 3} if c == "policy" else {"marker": "o", "s": 30}
            ax.scatter(m["step_time_vs_profile_runs"], m["mean_latency_runs_s"], color=colors[c], label=c, **style)
        sp = p.get("live_speed")
        if sp:
            lo = min(x for m in p["live"].values() for x in m["step_time_vs_profile_runs"])
            hi = max(x for m in p["live"].values() for x in m["step_time_vs_profile_runs"])
            ref, lat = sp["mean_step_time_vs_profile"], sp["mean_latency_s"]["policy"]
            xs = [lo + (hi - lo) * t / 20 for t in range(21)]
            ax.plot(xs, [lat * (x / ref) ** sp["slope"] for x in xs], "--", color=colors["policy"], lw=1,
                    label=f"policy, slope {sp['slope']:.2f}")  # fmt: skip
        ax.set_title(f"{p['workload']} {p['knob']}={p['value']:g}", fontsize=10)
        ax.set_xlabel("step time / profile's")
        ax.set_ylabel("mean latency (s)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    for ax in list(axes.flat)[len(pts):]:
        ax.set_visible(False)
    fig.suptitle("Live episodes: latency follows the host's speed (one point per episode)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_paired(d: dict, path: Path) -> None:
    """Policy / each analytical controller from the episodes they ran together, per point:
    below 1 the policy was faster beside that controller."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = d["points"]
    labels = [f"{p['workload']}\n{p['knob']}={p['value']:g}" for p in pts]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(pts)), 4.2))
    for i, c in enumerate(ANALYTICAL):
        ys = [p["live_paired"]["policy_vs"][c] for p in pts]
        ax.plot(range(len(pts)), ys, marker="o", ls="", color=f"C{i + 1}", label=c)
    worst = [p["live_paired_policy_vs_best"] for p in pts]
    ax.plot(range(len(pts)), worst, marker="_", ms=22, mew=2, ls="", color="k", label="vs best (worst pair)")
    ax.axhline(1.0, color="grey", lw=1)
    ax.set_xticks(range(len(pts)), labels, fontsize=8)
    ax.set_ylabel("policy / controller mean latency")
    ax.set_ylim(min(0.9, min(worst) - 0.02), min(1.15, max(1.05, max(worst) + 0.02)))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, ncol=4)
    ax.set_title("Live, paired: the policy beside each analytical controller (engines in turns)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_all(d: dict, name: str) -> None:
    plot_speed(d, RESULTS / f"{name}.png")
    if all("live_paired" in p for p in d["points"]):
        plot_paired(d, RESULTS / f"{name}_paired.png")


def resumed_points(partial: Path, settings: dict) -> tuple[list[dict], list]:
    """The points an interrupted live evaluation finished, if it ran with these settings: an
    ~hour-long run should not be lost to one crash or a closed session."""
    if not partial.is_file():
        print(f"--resume: no {partial.relative_to(ROOT)}; starting from the first point")
        return [], []
    d = json.loads(partial.read_text())
    if d["settings"] != settings:
        diff = sorted(k for k in settings if d["settings"].get(k) != settings[k])
        raise SystemExit(f"--resume: {partial.relative_to(ROOT)} was run with other settings ({', '.join(diff)}); "
                         "delete it or run with those")  # fmt: skip
    print(f"--resume: {len(d['points'])} points from {partial.relative_to(ROOT)}")
    return d["points"], d["rerun_log"]


def evaluate_live(args: argparse.Namespace) -> int:
    policy = f"policy:{Path(args.policy).resolve()}"
    controllers = [policy, *ANALYTICAL]
    scale = parse_load_scale(args.load_scale, args.profile)
    requests = parse_requests(args.requests, [w.name for w in WORKLOADS])
    by_name = {w.name: w for w in WORKLOADS}
    names = args.workloads.split(",")
    if unknown := sorted(set(names) - set(by_name)):
        raise SystemExit(f"--workloads: unknown workload(s) {unknown}; allowed: {', '.join(by_name)}")
    chosen = [Workload(w.name, w.scenario, w.knob, tuple(round(v * scale, 4) for v in w.values), requests[w.name])
              for w in (by_name[n] for n in dict.fromkeys(names))]  # fmt: skip
    if args.engines > 1:
        analytical_groups(args.engines)  # validate before the engines start
    ctx = open_context(args.profile, chosen[0].variant(chosen[0].values[0]), live=not args.sim_only,
                       engines=args.engines, quiet=args.wait_quiet, sim_seeds=args.sim_seeds,
                       allow_host_mismatch=args.allow_host_mismatch, warm_runs=args.warm_runs,
                       turn_s=args.turn_s)  # fmt: skip
    t0 = time.perf_counter()
    name = args.out or result_name(args.profile)
    partial = RESULTS / f"{name}.partial.json"
    settings = {"policy": str(Path(args.policy).resolve()), "profile": args.profile, "requests": requests,
                "engines": args.engines, "repeats": args.repeats, "sim_seeds": args.sim_seeds,
                "warm_runs": args.warm_runs, "turn_s": args.turn_s, "policy_engine": "rotated",
                "seat_offset": args.seat_offset,
                "workloads": {w.name: list(w.values) for w in chosen}}  # fmt: skip
    points, earlier_log = resumed_points(partial, settings) if args.resume else ([], [])
    done = {(p["workload"], p["value"]) for p in points}
    try:
        for w in chosen:
            for i, v in enumerate(w.values):
                if (w.name, v) in done:
                    continue
                sc = ctx.match(w.variant(v))
                rot = i % len(controllers)  # rotate the order so no controller always runs first
                order = controllers[rot:] + controllers[:rot]
                names = {c: "policy" if c == policy else c for c in order}
                sim = {names[c]: ctx.run_sim(sc, c) for c in order}
                paired = None
                if ctx.live is None and ctx.together is None:
                    live = dict(sim)
                elif ctx.together is not None:
                    # The policy runs beside every group of analytical controllers, the engines
                    # taking turns: each comparison is made at one host speed, the policy on a
                    # different engine in each group (`seated`).
                    runs = {names[c]: [] for c in order}
                    groups = [[policy, *[c for c in order if c in g]] for g in analytical_groups(args.engines)]
                    paired_runs = []
                    for r in range(args.repeats):
                        for gi in range(len(groups)) if r % 2 == 0 else reversed(range(len(groups))):
                            together = ctx.run_live_together(sc, seated(groups[gi], gi + i + args.seat_offset))
                            for engine, (c, m) in enumerate(together.items()):  # engine order
                                runs[names[c]].append({**m, "engine": engine})
                            paired_runs.append({names[c]: m["mean_latency_s"] for c, m in together.items()})
                    live = {n: _mean_runs(rs) for n, rs in runs.items()}
                    paired = _paired(paired_runs)
                else:
                    # Repeats alternate forward and reversed order (A B C, C B A): the host's
                    # speed drifts over minutes, and this cancels a linear drift in each mean.
                    # Only the first repeat warms up: later ones meet an engine that has
                    # already served the episode.
                    runs = {names[c]: [] for c in order}
                    for r in range(args.repeats):
                        for c in order if r % 2 == 0 else order[::-1]:
                            runs[names[c]].append(ctx.run_live(sc, c, warm_runs=None if r == 0 else 0))
                    live = {n: _mean_runs(rs) for n, rs in runs.items()}
                pt = {"workload": w.name, "knob": w.knob, "value": v, "offered_rate": offered_rate(sc),
                      "live": live, "sim": sim}  # fmt: skip
                if paired is not None:
                    pt["live_paired"] = paired
                is_live = ctx.live is not None or ctx.together is not None
                adj = None if not is_live else speed_adjusted(
                    {c: m["mean_latency_runs_s"] for c, m in live.items()},
                    {c: m["step_time_vs_profile_runs"] for c, m in live.items()})  # fmt: skip
                if adj is not None:
                    pt["live_speed"] = {"slope": adj.slope, "r2": adj.r2, "mean_step_time_vs_profile": adj.mean_speed,
                                        "mean_latency_s": adj.latency_s}  # fmt: skip
                for side in ("live", "sim", *(["live_paired"] if paired is not None else []),
                             *(["live_adjusted"] if adj is not None else [])):  # fmt: skip
                    lat = _latencies(pt, side)
                    best = min(ANALYTICAL, key=lambda c: lat[c])
                    pt[f"{side}_best_analytical"] = best
                    pt[f"{side}_policy_vs_best"] = lat["policy"] / lat[best]
                    pt[f"{side}_policy_vs_goodput"] = lat["policy"] / lat["goodput"]
                points.append(pt)
                if not args.sim_only:  # an interrupted run resumes from here (--resume)
                    partial.write_text(json.dumps({"settings": settings, "points": points,
                                                   "rerun_log": earlier_log + ctx.log}, indent=1))  # fmt: skip
                together = "" if paired is None else (
                    f"; paired {pt['live_paired_policy_vs_best']:.3f}x vs {pt['live_paired_best_analytical']}")
                adjusted = "" if adj is None else (
                    f"; speed-adjusted {pt['live_adjusted_policy_vs_best']:.3f}x vs "
                    f"{pt['live_adjusted_best_analytical']} (slope {adj.slope:.2f}, r2 {adj.r2:.2f})")  # fmt: skip
                print(f"{w.name} {w.knob}={v:g}: live policy {live['policy']['mean_latency_s']:.3f} s, best "
                      f"{pt['live_best_analytical']} {live[pt['live_best_analytical']]['mean_latency_s']:.3f} s "
                      f"-> {pt['live_policy_vs_best']:.3f}x (vs goodput {pt['live_policy_vs_goodput']:.3f}x){together}{adjusted}; "
                      f"sim {pt['sim_policy_vs_best']:.3f}x", flush=True)  # fmt: skip
    finally:
        ctx.close()

    def agg(pts, side):
        r = [p[f"{side}_policy_vs_best"] for p in pts]
        g = [p[f"{side}_policy_vs_goodput"] for p in pts]
        tot_pol = sum(_latencies(p, side)["policy"] for p in pts)
        tot_best = sum(_latencies(p, side)[p[f"{side}_best_analytical"]] for p in pts)
        out = {"mean_ratio_vs_best": statistics.fmean(r), "max_ratio_vs_best": max(r),
               "geomean_ratio_vs_best": statistics.geometric_mean(r),
               "sum_ratio_vs_best": tot_pol / tot_best, "mean_ratio_vs_goodput": statistics.fmean(g),
               "points_at_most_1": sum(x <= 1.0 for x in r), "points": len(r)}  # fmt: skip
        if side == "live" and not args.sim_only:
            # the engine's own noise: spread of repeated episodes of one controller on the same requests
            spread = [statistics.pstdev(m["mean_latency_runs_s"]) / statistics.fmean(m["mean_latency_runs_s"])
                      for p in pts for m in p[side].values() if len(m["mean_latency_runs_s"]) > 1]  # fmt: skip
            out["repeat_spread_median"] = statistics.median(spread) if spread else None
            out["step_time_vs_profile_mean"] = mean_of_present(m["step_time_vs_profile"]
                                                               for p in pts for m in p[side].values())  # fmt: skip
            # does any controller run the engine off its profile more than the others? (the
            # speed adjustment assumes not): its mean step-time ratio over the point's mean
            out["speed_vs_point_mean"] = {c: statistics.fmean(
                p["live"][c]["step_time_vs_profile"] / statistics.fmean(m["step_time_vs_profile"] for m in p["live"].values())
                for p in pts) for c in pts[0]["live"]}  # fmt: skip
            out["speed_by_engine"] = speed_by_engine(pts)
        if side == "live_adjusted":
            out["slope_median"] = statistics.median(p["live_speed"]["slope"] for p in pts)
            out["r2_median"] = statistics.median(p["live_speed"]["r2"] for p in pts)
        return out

    sides = ["live", "sim", *(["live_paired"] if all("live_paired" in p for p in points) else []),
             *(["live_adjusted"] if all("live_speed" in p for p in points) else [])]  # fmt: skip
    summary = {}
    for scope in ["all", *dict.fromkeys(p["workload"] for p in points)]:
        pts = points if scope == "all" else [p for p in points if p["workload"] == scope]
        summary[scope] = {side: agg(pts, side) for side in sides}
    s = summary["all"]["live"]
    if args.sim_only:
        print(json.dumps(summary, indent=1))
        write_result(f"{name}-sim", {
            "policy": repo_path(Path(args.policy).resolve()), "profile": args.profile,
            "load_scale": scale, "trained_on": f"simulator only (profile {args.profile}, {trained_on(Path(args.policy))})",
            "controllers": ["policy", *ANALYTICAL], "sim_seeds": args.sim_seeds,
            "mean_ratio_vs_best": summary["all"]["sim"]["mean_ratio_vs_best"],
            "max_ratio_vs_best": summary["all"]["sim"]["max_ratio_vs_best"],
            "summary": summary, "points": points})  # fmt: skip
        return 0
    a = summary["all"].get("live_adjusted")
    pr = summary["all"].get("live_paired")
    loads = [m.get("other_load_cores", 0.0) for p in points for m in p["live"].values()]
    prof_host = load_profile(args.profile).host
    write_result(name, {
        "policy": repo_path(Path(args.policy).resolve()),
        "profile": args.profile,
        "host": None if ctx.host is None else dataclasses.asdict(ctx.host),
        "profile_host": None if prof_host is None else dataclasses.asdict(prof_host),
        "host_differences": ctx.host_differences,
        "load_scale": scale,
        "trained_on": f"simulator only (profile {args.profile}, {trained_on(Path(args.policy))})",
        "controllers": ["policy", *ANALYTICAL],
        "workloads": {w.name: {"scenario": str(Path(w.scenario).relative_to(ROOT)), "knob": w.knob,
                               "values": list(w.values), "requests": w.requests} for w in chosen},
        "target": "policy mean latency <= 1.00x the best analytical controller on the live engine",
        "mean_ratio_vs_best": s["mean_ratio_vs_best"],
        "max_ratio_vs_best": s["max_ratio_vs_best"],
        "sum_ratio_vs_best": s["sum_ratio_vs_best"],
        "mean_ratio_vs_goodput": s["mean_ratio_vs_goodput"],
        "holds": s["mean_ratio_vs_best"] <= 1.0,
        "holds_every_point": s["max_ratio_vs_best"] <= 1.0,
        "repeat_spread_median": s["repeat_spread_median"],
        "step_time_vs_profile_mean": s["step_time_vs_profile_mean"],
        "engines": args.engines,
        "warm_runs": args.warm_runs,
        "turn_s": args.turn_s,
        "paired": None if pr is None else {
            "how": (f"{args.engines} live engines taking turns "
                    + (f"of {args.turn_s:g} s of iterations " if args.turn_s else "one iteration at a time ")
                    + "(rlspec.calibration.interleave): the policy beside each group of analytical controllers, "
                    "on engine (group + point + seat offset) mod engines (an episode's `together` lists its "
                    "group in engine order), policy / controller from the episodes they ran together"),
            "groups": [["policy", *g] for g in analytical_groups(args.engines)],
            "policy_engine": "rotated",
            "seat_offset": args.seat_offset,
            "mean_ratio_vs_best": pr["mean_ratio_vs_best"], "max_ratio_vs_best": pr["max_ratio_vs_best"],
            "sum_ratio_vs_best": pr["sum_ratio_vs_best"], "mean_ratio_vs_goodput": pr["mean_ratio_vs_goodput"],
            "points_at_most_1": pr["points_at_most_1"], "holds": pr["mean_ratio_vs_best"] <= 1.0,
            "holds_every_point": pr["max_ratio_vs_best"] <= 1.0},
        "speed_adjusted": None if a is None else {
            "how": "each live episode moved to the point's mean engine speed (rlspec.calibration.engine_speed)",
            "mean_ratio_vs_best": a["mean_ratio_vs_best"], "max_ratio_vs_best": a["max_ratio_vs_best"],
            "sum_ratio_vs_best": a["sum_ratio_vs_best"], "mean_ratio_vs_goodput": a["mean_ratio_vs_goodput"],
            "points_at_most_1": a["points_at_most_1"], "holds": a["mean_ratio_vs_best"] <= 1.0,
            "slope_median": a["slope_median"], "r2_median": a["r2_median"]},
        "summary": summary,
        "other_load_cores_mean": statistics.fmean(loads) if loads else 0.0,
        "rerun_log": earlier_log + ctx.log,
        "sim_seeds": args.sim_seeds,
        "repeats": args.repeats,
        "resumed_points": len(done),
        "wall_s": round(time.perf_counter() - t0, 1),  # this invocation's, when resumed
        "points": points,
    })  # fmt: skip
    partial.unlink(missing_ok=True)
    if a is not None:
        plot_all(json.loads((RESULTS / f"{name}.json").read_text()), name)
    print(f"live: policy / best analytical mean latency = {s['mean_ratio_vs_best']:.3f}x on average, "
          f"worst {s['max_ratio_vs_best']:.3f}x, {s['points_at_most_1']}/{s['points']} points <= 1.00x; "
          f"vs goodput {s['mean_ratio_vs_goodput']:.3f}x; repeated episodes spread "
          f"{s['repeat_spread_median'] or 0:.1%} (median); live steps "
          f"{s['step_time_vs_profile_mean'] or 0:.2f}x the profile's")  # fmt: skip
    if s.get("speed_by_engine"):
        print("step time by engine, over the point's mean: "
              + ", ".join(f"engine {e} {x:.3f}" for e, x in s["speed_by_engine"].items()))  # fmt: skip
    if pr is not None:
        print(f"paired (engines in turns): {pr['mean_ratio_vs_best']:.3f}x on average, worst "
              f"{pr['max_ratio_vs_best']:.3f}x, {pr['points_at_most_1']}/{pr['points']} points <= 1.00x; "
              f"vs goodput {pr['mean_ratio_vs_goodput']:.3f}x")  # fmt: skip
    if a is not None:
        print(f"speed-adjusted: {a['mean_ratio_vs_best']:.3f}x on average, worst {a['max_ratio_vs_best']:.3f}x, "
              f"{a['points_at_most_1']}/{a['points']} points <= 1.00x; vs goodput {a['mean_ratio_vs_goodput']:.3f}x "
              f"(speed explains {a['r2_median']:.0%} of the repeats' variance, median)")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    profile_help = "the calibrated host (default: %(default)s)"
    t = sub.add_parser("train")
    t.add_argument("--profile", default="cpu-tiny", help=profile_help)
    t.add_argument("--config", default=str(CONFIG), help="agent config (default: %(default)s)")
    t.add_argument("--timesteps", type=int, default=None, help="PPO steps (default: the config's)")
    t.add_argument("--run-dir", default=None, help="default: checkpoints/<profile>-oracle-ppo")
    t.add_argument("--distribution", default=None,
                   help="training scenarios (default: envs/distributions/<profile>-train.yaml)")  # fmt: skip
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--learning-rate", type=float, default=None, help="default: the config's")
    t.add_argument("--ent-coef", type=float, default=None)
    t.add_argument("--clip-range", type=float, default=None)
    e = sub.add_parser("eval")
    e.add_argument("--profile", default="cpu-tiny", help=profile_help)
    e.add_argument("--policy", default=None, help="default: checkpoints/<profile>-oracle-ppo")
    e.add_argument("--requests", default="40",
                   help="requests per live episode: N, or name=N,... per workload (others 40)")  # fmt: skip
    e.add_argument("--sim-seeds", type=int, default=3)
    e.add_argument("--wait-quiet", type=float, default=None, metavar="CORES")
    e.add_argument("--workloads", default=",".join(w.name for w in WORKLOADS),
                   help="comma-separated, run in this order (default: %(default)s)")  # fmt: skip
    e.add_argument("--sim-only", action="store_true")
    e.add_argument("--resume", action="store_true",
                   help="keep the points an interrupted live run saved (results/<name>.partial.json)")
    e.add_argument("--allow-host-mismatch", action="store_true",
                   help="evaluate live against a profile fitted on another kind of host")  # fmt: skip
    e.add_argument("--engines", type=int, default=3,
                   help="live engines run in turns per iteration: the policy beside groups of engines-1 "
                        "analytical controllers (~6 GB each for the tiny pair); 1: one engine, "
                        "controllers one after another")  # fmt: skip
    e.add_argument("--repeats", type=int, default=1,
                   help="live episodes per controller and point, averaged (same requests)")  # fmt: skip
    e.add_argument("--load-scale", default="auto",
                   help="times the load levels (auto: the profile's capacity over cpu-tiny's, rounded); "
                        "a number repeats an earlier run's loads after a refit moved the capacity")  # fmt: skip
    e.add_argument("--warm-runs", type=int, default=1,
                   help="unmeasured serves of each live episode (group) before the measured one, so every "
                        "engine has met the point's token counts (rlspec.calibration.sweep); 0: as before "
                        "2026-12-06")  # fmt: skip
    e.add_argument("--turn-s", type=float, default=0.5,
                   help="engines in turns: each turn runs the iterations that start within this many seconds "
                        "(default: %(default)s; 0: one iteration per turn, as every run before 2026-12-06 noon, "
                        "which favours controllers with longer steps: bench/turns_bias.py)")  # fmt: skip
    e.add_argument("--seat-offset", type=int, default=0,
                   help="engines in turns: seat every group this many engines further round; runs with "
                        "offsets 0..engines-1 pooled seat each controller beside the policy on every pair of "
                        "engines at every point (`pool` reports whether its runs are balanced)")  # fmt: skip
    e.add_argument("--out", default=None, metavar="NAME",
                   help="results/NAME.json (default: sim_to_real[-P]); another live run of one policy "
                        "keeps the first")  # fmt: skip
    pl = sub.add_parser("plot", help="redraw results/sim_to_real[-P]*.png from its json")
    pl.add_argument("--profile", default="cpu-tiny", help=profile_help)
    pl.add_argument("--out", default=None, metavar="NAME", help="results/NAME.json (default: sim_to_real[-P])")
    po = sub.add_parser("pool", help="pool live runs of one policy: results/NAME.json from results/RUN.json ...")
    po.add_argument("--runs", nargs="+", required=True, metavar="RUN",
                    help="results/RUN.json of each live run; RUN1+RUN2 joins one run's workloads saved apart")  # fmt: skip
    po.add_argument("--out", required=True, metavar="NAME")
    args = ap.parse_args(argv)
    if args.cmd == "pool":
        pooled = pool_runs([joined_run(r) for r in args.runs])
        write_result(args.out, {"pooled_from": [" + ".join(f"results/{n}.json" for n in r.split("+")) for r in args.runs],
                                **pooled})  # fmt: skip
        by_engine = ", ".join(f"engine {e} {v['latency']:.3f} / {v['step_time']:.3f}"
                              for e, v in pooled["policy_by_engine"]["all"].items())
        print(f"seat offsets {pooled['seat_offsets']} ({'' if pooled['seat_balanced'] else 'not '}balanced); the policy's "
              f"latency / step time by engine, over its mean at each point: {by_engine}")  # fmt: skip
        for scope, sides in pooled["summary"].items():
            for side, f in sides.items():
                print(f"{scope:10s} {side:13s} policy / best analytical {f['mean_ratio_vs_best']:.3f}x "
                      f"+- {f['standard_error']:.3f} (runs: {', '.join(f'{x:.3f}' for x in f['per_run_mean_ratio_vs_best'])}), "
                      f"{f['points_at_most_1']}/{f['points']} points <= 1.00x, worst {f['max_ratio_vs_best']:.3f}x; "
                      f"vs best single ({f['best_single_controller']}) {f['mean_ratio_vs_best_single']:.3f}x; "
                      f"vs the best the other runs found {f['mean_ratio_vs_best_held_out']:.3f}x "
                      f"+- {f['standard_error_held_out']:.3f}, {f['points_at_most_1_held_out']}/{f['points']} points; "
                      f"the per-point best's expected optimism {f['selection_optimism']:.3f}")  # fmt: skip
        return 0
    kv_pool_of(args.profile)
    if args.cmd == "plot":
        name = args.out or result_name(args.profile)
        plot_all(json.loads((RESULTS / f"{name}.json").read_text()), name)
        return 0
    if args.cmd == "train":
        over = {k: v for k, v in (("learning_rate", args.learning_rate), ("ent_coef", args.ent_coef),
                                  ("clip_range", args.clip_range)) if v is not None}  # fmt: skip
        train_policy(args.timesteps, Path(args.run_dir) if args.run_dir else run_dir_of(args.profile), args.seed,
                     over, Path(args.config), Path(args.distribution) if args.distribution else None,
                     args.profile)  # fmt: skip
        return 0
    args.policy = args.policy or str(run_dir_of(args.profile))
    RESULTS.mkdir(exist_ok=True)
    return evaluate_live(args)


if __name__ == "__main__":
    raise SystemExit(main())
