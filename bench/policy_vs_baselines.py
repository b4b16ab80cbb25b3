"""The shipped RL policy against every analytical controller, on every scenario in envs/
plus the held-out ones, measured side by side on identical workloads and engine seeds.

Also: throughput at saturation under KV pressure, the frozen policy's decision time, and
the training time and curve of the shipped run. Writes results/policy_vs_baselines.json,
results/training_curve.png and the run's eval_report.json.

    python bench/policy_vs_baselines.py [--policy checkpoints/h100-ppo]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml
from common import RESULTS, ROOT, repo_path, write_result
from tqdm import tqdm

from rlspec.control.policy import FrozenPolicy, PolicyController
from rlspec.control.registry import ANALYTICAL
from rlspec.evaluate import control_context, evaluate
from rlspec.scenario import load_scenario

TARGET_10PCT = ("bursty", "flash-crowd", "kv-pressure")
KV_SATURATION_RATE = 20.0


def scenario_paths() -> list[Path]:
    return sorted((ROOT / "envs").glob("*.yaml")) + sorted(
        (ROOT / "envs" / "held-out").glob("*.yaml")
    )


def decision_time(policy_dir: Path, n: int = 20_000) -> dict:
    """p50/p99 of one frozen decision, and of features + decision as serving does it."""
    from rlspec.engines.factory import make_backend

    scenario = load_scenario("bursty").shortened(20.0)
    backend = make_backend(scenario)
    ctx = control_context(scenario, backend)
    ctrl = PolicyController.load(str(policy_dir))
    ctrl.reset(ctx)
    tracker = ctx.tracker()
    tracker.update(backend.start(scenario.requests()))
    snaps = []
    while not backend.finished and len(snaps) < 2000:
        snaps.append(backend.step())
    for s in snaps[:200]:
        tracker.update(s)
    obs = tracker.vector()
    policy: FrozenPolicy = ctrl.policy
    act, decide = [], []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        policy.act(obs)
        t1 = time.perf_counter_ns()
        ctrl.decide(tracker)
        t2 = time.perf_counter_ns()
        act.append(t1 - t0)
        decide.append(t2 - t1)
    pct = lambda xs, q: float(np.percentile(xs, q)) / 1e3  # noqa: E731
    return {"act_p50_us": pct(act, 50), "act_p99_us": pct(act, 99),
            "features_and_act_p50_us": pct(decide, 50), "features_and_act_p99_us": pct(decide, 99)}  # fmt: skip


def training_record(policy_dir: Path) -> dict:
    cfg = yaml.safe_load((policy_dir / "config.yaml").read_text())
    sessions = cfg["provenance"]["sessions"]
    curve = []
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        for ev in sorted((policy_dir / "tb").rglob("events.out.tfevents.*")):
            acc = EventAccumulator(str(ev))
            acc.Reload()
            if "eval/latency_vs_best_baseline" in acc.Tags()["scalars"]:
                curve += [(e.step, e.value) for e in acc.Scalars("eval/latency_vs_best_baseline")]
    except ImportError:
        pass
    if curve:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
        steps, values = zip(*curve, strict=True)
        ax.plot(steps, values, marker=".")
        ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("policy / best baseline mean latency")
        ax.set_title("training curve of the shipped policy (eval scenarios)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(RESULTS / "training_curve.png")
        plt.close(fig)
    return {
        "timesteps": sum(s["timesteps"] for s in sessions),
        # PPO plus its warm start (oracle labelling dominates a distilled run)
        "wall_s": sum(s["wall_s"] + s.get("warm_start_wall_s", 0.0) for s in sessions),
        "sessions": sessions,
        "curve": curve,
    }


def _name(controller: str, policy: str, other: str | None) -> str:
    return {policy: "policy", other: "compared"}.get(controller, controller)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", default=str(ROOT / "checkpoints" / "h100-oracle-ppo"))
    ap.add_argument("--compare", default=str(ROOT / "checkpoints" / "h100-ppo"),
                    help="another policy run measured beside it ('' for none)")  # fmt: skip
    args = ap.parse_args()
    policy_dir = Path(args.policy)
    policy = f"policy:{policy_dir}"
    other = f"policy:{args.compare}" if args.compare else None
    controllers = [*ANALYTICAL, policy, *([other] if other else [])]
    paths = scenario_paths()
    per_scenario = {}
    bar = tqdm(total=len(paths) * len(controllers), desc="policy vs baselines", unit="run")
    for path in paths:
        scenario = load_scenario(path)
        res = evaluate(scenario, controllers, on_result=lambda *_: bar.update())
        best_name = min(ANALYTICAL, key=lambda c: res[c].mean_latency_s)
        p = res[policy]
        per_scenario[scenario.name] = {
            "held_out_dir": path.parent.name == "held-out",
            "best_analytical": best_name,
            "policy_latency_vs_best": p.mean_latency_s / res[best_name].mean_latency_s,
            "policy_p99_vs_best": p.p99_latency_s / res[best_name].p99_latency_s,
            "compared_latency_vs_best": other and res[other].mean_latency_s
            / res[best_name].mean_latency_s,
            "results": {_name(c, policy, other): m.as_dict() for c, m in res.items()},
        }
    bar.close()

    kv = load_scenario(ROOT / "envs" / "kv-pressure.yaml").with_rate(KV_SATURATION_RATE)
    kv_res = evaluate(kv, ["static:4", "goodput", "nightjar", policy, *([other] if other else [])])
    kv_ratio = kv_res[policy].throughput_tok_s / kv_res["static:4"].throughput_tok_s

    ratios = {n: d["policy_latency_vs_best"] for n, d in per_scenario.items()}
    targets = {
        "policy_at_most_best_everywhere": max(ratios.values()) <= 1.0,
        "policy_10pct_better_on_bursty_flash_kv": all(ratios[n] <= 0.9 for n in TARGET_10PCT),
        "kv_saturation_throughput_vs_static4_at_least_1.25": kv_ratio >= 1.25,
    }
    timing = decision_time(policy_dir)
    training = training_record(policy_dir)
    for n, r in ratios.items():
        print(f"{n:20s} policy / best analytical ({per_scenario[n]['best_analytical']}): {r:.3f}")
    print(
        f"KV pressure at {KV_SATURATION_RATE:g} req/s: policy throughput / static:4 = {kv_ratio:.3f}"
    )
    print(f"decision time: {timing}")
    print(f"training: {training['timesteps']} steps in {training['wall_s']:.0f} s")
    print("targets:", targets)
    payload = {
        "policy": repo_path(policy_dir),
        "compared_policy": other and repo_path(Path(args.compare)),
        "scenarios": per_scenario,
        "latency_vs_best": ratios,
        "kv_saturation": {
            "rate": KV_SATURATION_RATE,
            "throughput_tok_s": {
                _name(c, policy, other): m.throughput_tok_s for c, m in kv_res.items()
            },
            "policy_vs_static4": kv_ratio,
        },  # fmt: skip
        "decision_time": timing,
        "training": {k: v for k, v in training.items() if k != "curve"},
        "training_curve": training["curve"],
        "targets": targets,
    }
    write_result("policy_vs_baselines", payload)
    report = {
        k: payload[k] for k in ("latency_vs_best", "kv_saturation", "decision_time", "targets")
    }
    (policy_dir / "eval_report.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
