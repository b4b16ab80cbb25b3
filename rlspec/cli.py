"""The `rlspec` command: demo, eval, sweep, train, export, serve, calibrate, models."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlspec.config import ConfigError
from rlspec.metrics import EpisodeMetrics

TABLE_COLUMNS = (
    ("mean_latency_s", "mean lat s", "{:.3f}"),
    ("p99_latency_s", "p99 lat s", "{:.3f}"),
    ("ttft_p50_s", "TTFT p50", "{:.3f}"),
    ("tpot_p50_s", "TPOT p50", "{:.4f}"),
    ("throughput_tok_s", "tok/s", "{:.0f}"),
    ("slo_attainment", "SLO", "{:.3f}"),
    ("completed", "done", "{}"),
    ("preemptions", "preempt", "{}"),
    ("mean_k", "mean k", "{:.2f}"),
    ("offload_frac", "offload", "{:.2f}"),
)


def format_table(results: dict[str, EpisodeMetrics], title: str = "") -> str:
    rows = [["controller", *(h for _, h, _ in TABLE_COLUMNS), "vs best"]]
    best = min(
        (m.mean_latency_s for m in results.values() if not math.isnan(m.mean_latency_s)),
        default=float("nan"),
    )
    for name, m in results.items():
        d = m.as_dict()
        rows.append(
            [name, *(fmt.format(d[key]) for key, _, fmt in TABLE_COLUMNS),
             f"{m.mean_latency_s / best:.2f}x"]
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [title] if title else []
    for i, r in enumerate(rows):
        lines.append(
            "  ".join(
                c.rjust(w) if j else c.ljust(w)
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _with_profile(scenario: Any, profile: str | None) -> Any:
    """`--profile NAME|YAML` replaces the scenario's cost model (a file path is taken
    relative to the working directory, a bare name is a shipped profile)."""
    if profile is None:
        return scenario
    path = Path(profile)
    value = str(path.resolve()) if path.suffix else profile
    scenario = scenario.replace(profile=value)
    scenario.load_profile()  # fail here, naming the flag's value, not mid-run
    return scenario


def _cmd_eval(args: argparse.Namespace) -> int:
    from rlspec.control.registry import parse_controllers
    from rlspec.evaluate import evaluate
    from rlspec.scenario import load_scenario

    scenario = _with_profile(load_scenario(args.scenario), args.profile)
    controllers = parse_controllers(args.controllers)
    baselines = _baselines(args)
    results = evaluate(
        scenario, controllers, seed=args.seed, backend=args.backend, baselines=baselines
    )
    seed = scenario.seed if args.seed is None else args.seed
    print(format_table(results, f"scenario {scenario.name} (seed {seed}, backend {args.backend})"))
    if args.json:
        _write_json(
            args.json,
            {"scenario": scenario.name, "seed": seed, "backend": args.backend,
             "results": {k: v.as_dict() for k, v in results.items()}},
        )  # fmt: skip
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from rlspec.control.registry import parse_controllers
    from rlspec.scenario import load_scenario
    from rlspec.sweep import plot_sweep, run_sweep

    scenario = _with_profile(load_scenario(args.scenario), args.profile)
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError as exc:
        raise ConfigError(f"--rates: expected comma-separated numbers, got {args.rates!r}") from exc
    if not rates or min(rates) <= 0:
        raise ConfigError(f"--rates: need positive rates, got {args.rates!r}")
    controllers = parse_controllers(args.controllers)
    sweep = run_sweep(scenario, rates, controllers, seed=args.seed, backend=args.backend,
                      baselines=_baselines(args), progress=True)  # fmt: skip
    for rate, results in zip(rates, sweep["results"], strict=True):
        print(format_table(results, f"\nrate {rate:g} req/s"))
    if args.json:
        _write_json(args.json, {
            "scenario": scenario.name, "seed": sweep["seed"], "rates": rates,
            "results": {c: [r[c].as_dict() for r in sweep["results"]] for c in controllers},
        })  # fmt: skip
    if args.plot:
        plot_sweep(rates, sweep["results"], controllers, args.plot, title=scenario.name)
        print(f"plot written to {args.plot}")
    return 0


def _baselines(args: argparse.Namespace):
    from rlspec.control.registry import BaselinesConfig

    return BaselinesConfig.load(args.baselines) if args.baselines else None


def _write_json(path: str, payload: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    print(f"results written to {path}")


DEMO_SCENARIOS = ("bursty", "flash-crowd", "kv-pressure")
DEMO_BASELINES = ("static:0", "static:2", "static:4", "goodput", "latency-model", "nightjar")
SHIPPED_POLICY = Path(__file__).resolve().parent.parent / "checkpoints" / "h100-oracle-ppo"


def _cmd_demo(args: argparse.Namespace) -> int:
    """Train a PPO controller for a few minutes, freeze it, and compare it with the shipped
    policy and the analytical baselines on the scenarios where control matters most."""
    import time

    from rlspec.agents.config import load_agent_config
    from rlspec.agents.export import export_policy
    from rlspec.agents.train import train
    from rlspec.evaluate import evaluate
    from rlspec.scenario import load_scenario

    run_dir = Path(args.runs) / time.strftime("demo-%Y%m%d-%H%M%S")
    cfg = load_agent_config(args.config)
    print(
        f"training PPO for {args.timesteps:,} steps on the randomized H100 simulator -> {run_dir}"
    )
    train(cfg, run_dir, timesteps=args.timesteps, progress=True)
    export_policy(run_dir)
    controllers = [*DEMO_BASELINES, f"policy:{run_dir}"]
    if (SHIPPED_POLICY / "policy.npz").is_file():
        controllers.append(f"policy:{os.path.relpath(SHIPPED_POLICY)}")
    for name in DEMO_SCENARIOS:
        scenario = load_scenario(name)
        results = evaluate(scenario, controllers)
        print(format_table(results, f"\n{name}: {scenario.description}"))
    print(
        f"\nthe demo policy ({args.timesteps:,} steps, cloned from goodput) is policy:{run_dir}; "
        f"the shipped one distils the lookahead oracle ({os.path.relpath(SHIPPED_POLICY)}/eval_report.json)"
    )
    print(f"inspect training:  .venv/bin/tensorboard --logdir {run_dir / 'tb'}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    from rlspec.agents.config import load_agent_config
    from rlspec.agents.train import train

    cfg = load_agent_config(args.config)
    changes = {}
    if args.scenarios:
        changes["distribution"] = str(Path(args.scenarios).resolve())
    if args.backend:
        changes["backend"] = args.backend
    if args.seed is not None:
        changes["seed"] = args.seed
    cfg = dataclasses.replace(cfg, **changes)
    run = args.run or time.strftime("ppo-%Y%m%d-%H%M%S")
    run_dir = Path(args.checkpoints) / run
    train(cfg, run_dir, timesteps=args.timesteps, resume=args.resume,
          progress=not args.no_progress, init=args.init)  # fmt: skip
    print(f"run written to {run_dir}/ (model.zip, vecnormalize.pkl, config.yaml)")
    print(f"inspect it:  tensorboard --logdir {run_dir / 'tb'}")
    print(f"freeze it:   rlspec export {run_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlspec", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--scenario", required=True, help="scenario YAML (or a name in envs/)")
        sp.add_argument("--controllers", default="static:0,static:4,goodput,latency-model,nightjar",
                        help="comma-separated: static:K, batch-table, goodput, latency-model, nightjar, policy:PATH")  # fmt: skip
        sp.add_argument(
            "--seed",
            type=int,
            default=None,
            help="workload and engine seed (default: the scenario's)",
        )
        sp.add_argument("--backend", default="sim", choices=["sim", "vllm"])
        sp.add_argument("--profile", default=None, metavar="NAME|YAML",
                        help="cost-model profile (shipped name or a YAML from `rlspec calibrate`); "
                             "default: the scenario's")  # fmt: skip
        sp.add_argument(
            "--baselines",
            default=None,
            help="analytical controllers' knobs (agents/baselines.yaml)",
        )
        sp.add_argument("--json", default=None, help="write the results as JSON here")

    d = sub.add_parser("demo", help="the main job on the embedded defaults: train, freeze, compare")
    d.add_argument("--config", default=str(SHIPPED_POLICY.parent.parent / "agents" / "ppo.yaml"))
    d.add_argument("--timesteps", type=int, default=60_000)
    d.add_argument("--runs", default="runs", help="where the demo's training run goes")
    d.set_defaults(func=_cmd_demo)

    e = sub.add_parser("eval", help="compare controllers on one scenario")
    common(e)
    e.set_defaults(func=_cmd_eval)

    t = sub.add_parser("train", help="train a PPO speculation controller")
    t.add_argument("--config", default="agents/ppo.yaml", help="agent config YAML")
    t.add_argument(
        "--scenarios", default=None, help="training distribution or scenario YAML (overrides the config's)"
    )
    t.add_argument("--timesteps", type=int, default=None, help="override total_timesteps")
    t.add_argument("--run", default=None, help="run name under --checkpoints (default: ppo-<time>)")
    t.add_argument("--checkpoints", default="checkpoints")
    t.add_argument("--resume", action="store_true", help="continue the run from its model.zip")
    t.add_argument("--backend", default=None, choices=["sim", "vllm"])
    t.add_argument("--init", default=None, type=Path,
                   help="start from another run's model.zip (online fine-tuning)")  # fmt: skip
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_cmd_train)

    from rlspec.agents import export
    from rlspec.calibration import cli as calibration
    from rlspec.engines import tiny_models

    c = sub.add_parser("calibrate", help="fit a cost-model profile to a live engine")
    calibration.add_arguments(c)
    c.set_defaults(func=calibration.run)
    sub.add_parser("serve", help="vLLM's OpenAI server with an rlspec controller (rlspec serve -h)")

    m = sub.add_parser("models", help="build local model pairs for the live vLLM backend")
    msub = m.add_subparsers(dest="models_command", required=True)
    tiny = msub.add_parser("tiny", help="a tiny HF Llama target/draft pair with a tokenizer")
    tiny_models.add_arguments(tiny)
    tiny.set_defaults(func=tiny_models.run)

    x = sub.add_parser("export", help="freeze a training run into a pure-numpy policy file")
    export.add_arguments(x)
    x.set_defaults(func=export.run)

    s = sub.add_parser("sweep", help="compare controllers over request rates")
    common(s)
    s.add_argument("--rates", required=True, help="comma-separated request rates (req/s)")
    s.add_argument("--plot", default=None, help="write a latency-vs-rate PNG here")
    s.set_defaults(func=_cmd_sweep)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        # `rlspec serve` passes every option it does not know on to `vllm serve`.
        from rlspec.serving.cli import main as serve_main

        return serve_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"rlspec {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
