"""Measure -> fit -> profile: the pieces `rlspec calibrate` strings together."""

from __future__ import annotations

import dataclasses
import functools
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlspec.calibration.acceptance import (
    AcceptanceFit,
    ConcentrationFit,
    PositionCounts,
    WorkloadAcceptance,
    fit_acceptance,
)
from rlspec.calibration.plan import (
    MeasurementPlan,
    ResidualGroup,
    RobustFit,
    SampleSet,
    default_plan,
    fit_residuals,
    robust_fit,
    samples_from_records,
)
from rlspec.calibration.profile_writer import (
    build_profile,
    host_memory_bytes,
    model_profile_from_hf,
)
from rlspec.perf.fit import TERMS
from rlspec.perf.host import copy_bandwidth
from rlspec.perf.profile import Profile
from rlspec.sim.config import EngineConfig
from rlspec.workload.request import Request

if TYPE_CHECKING:
    from rlspec.calibration.live import LiveMeasurement


def measure_live_engine(
    model: str,
    draft_model: str,
    *,
    k_max: int = 4,
    max_num_seqs: int = 16,
    max_num_batched_tokens: int = 2048,
    max_model_len: int = 2048,
    gpu_memory_utilization: float = 0.3,
    kv_cache_memory_bytes: int | None = None,
    block_size: int | None = None,
    dtype: str = "auto",
    seed: int = 0,
    plan: MeasurementPlan | None = None,
    quick: bool = False,
    repeats: int | None = None,
    progress: bool = True,
    quiet_threshold: float | None = None,
    quiet_timeout_s: float = 60.0,
    retries: int = 2,
    workloads: Sequence[tuple[str, list[Request]]] = (),
    grid: bool = True,
) -> LiveMeasurement | list[WorkloadAcceptance]:
    """Start the live engine on the pair and run the measurement plan on it, then each
    workload's requests (`held_out_requests`) for its acceptance. `grid` False runs the
    workloads alone (to add their acceptance to saved measurements) and returns theirs."""
    import rlspec.engines.vllm as rv  # Intel OpenMP before vLLM
    from rlspec.calibration.live import measure_live, measure_workload_acceptance

    cfg = rv.VLLMBackendConfig(
        model=str(model),
        draft_model=str(draft_model),
        k_max=k_max,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
        kv_cache_memory_bytes=kv_cache_memory_bytes,
        block_size=block_size,
        dtype=dtype,
        seed=seed,
        # Each request's verify steps, for the spread of acceptance between requests.
        extra_engine_args={"per_request_spec_decode_metrics": "detailed"},
    )
    plan = plan or default_plan(
        k_max, max_num_seqs, max_num_batched_tokens, max_model_len, quick=quick, repeats=repeats
    )
    from rlspec.engines.vllm.backend import VLLMBackend

    with VLLMBackend(cfg) as backend:
        backend.open()
        found = [
            measure_workload_acceptance(backend, name, reqs, k_max, HELD_OUT_SEED)
            for name, reqs in workloads
        ]
        if not grid:
            return found
        m = measure_live(
            backend,
            plan,
            progress=progress,
            quiet_threshold=quiet_threshold,
            quiet_timeout_s=quiet_timeout_s,
            retries=retries,
        )
        m.workload_acceptance = found
        return m


# The prompt-token seed of the acceptance workloads: the live backend draws a request's
# tokens from (seed, request id), and scenarios run with small seeds, so these prompts are
# ones no evaluation episode sees.
HELD_OUT_SEED = 1_000_003


def held_out_requests(scenario: Any, count: int = 80) -> list[Request]:
    """`count` requests with the workload's lengths, all arriving at once: acceptance is a
    property of the data, not of the load, and a batch measures it fastest. Their prompt
    tokens come from HELD_OUT_SEED.

    The lengths are drawn with the scenario's next seeds, as many as `count` needs: a
    synthetic workload draws new lengths from each, a trace replays its own rows again (with
    other tokens, their ids being new). The Azure code scenario's 2-7 output tokens per
    request give 80 requests only 236 verify steps, too few to pin its acceptance; rows
    further into the trace would be more, but not the lengths its evaluations serve
    (notes/calibration.md section 23)."""
    reqs: list[Request] = []
    for seed in range(scenario.seed + 1, scenario.seed + 1 + count):
        drawn = scenario.requests(seed)
        if not drawn:
            break
        reqs += drawn[: count - len(reqs)]
        if len(reqs) == count:
            break
    if not reqs:
        raise ValueError(f"acceptance workload {scenario.name!r}: it has no requests")
    return [Request(i, 0.0, r.prompt_len, r.output_len) for i, r in enumerate(reqs)]


@dataclass
class CalibrationResult:
    profile: Profile
    fit: RobustFit
    sample_set: SampleSet
    acceptance: AcceptanceFit
    workload_acceptance: dict[str, AcceptanceFit]  # scenario name -> its mean (pooled decay)
    offload_s: float  # median measured
    reload_s: float
    host_bandwidth: float
    measurement: Any  # LiveMeasurement
    # scenario name -> maximum likelihood over its requests' own steps (where they were recorded)
    workload_spread: dict[str, ConcentrationFit] = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def residuals(self) -> dict[str, dict[str, ResidualGroup]]:
        """`fit_residuals` of the fit, shared by the printed report and the JSON summary."""
        return fit_residuals(self.fit)

    def per_term(self) -> list[dict[str, float]]:
        r = self.fit.report
        return [
            {
                "term": n,
                "value": getattr(r.fitted, n),
                "std_error": r.std_error[n],
                "rel_error": r.rel_error[n],
            }
            for n in TERMS
        ]

    def summary(self) -> dict[str, Any]:
        m = self.measurement
        return {
            "profile": self.profile.name,
            "samples": self.fit.report.samples,
            "outliers_dropped": len(self.fit.outliers),
            "records": len(m.records),
            "records_dropped": self.sample_set.dropped,
            "records_merged": self.sample_set.merged,
            "fit_mape": self.fit.report.mape,
            "drafter_timed": self.fit.report.drafter_timed,
            "prefill_pairs_recorded": self.fit.report.pairs_recorded,
            "first_fit_mape": self.fit.first.mape,
            "terms": self.per_term(),
            "fit_residuals": {name: {g: dataclasses.asdict(r) for g, r in groups.items()}
                              for name, groups in self.residuals.items()},  # fmt: skip
            "acceptance": self.acceptance.as_dict(),
            "acceptance_by_workload": {
                w.workload: {**self.workload_acceptance[w.workload].as_dict(), "requests": w.requests, "k": w.k}
                for w in self.measurement.workload_acceptance
            },
            "acceptance_spread_by_workload": {n: f.as_dict() for n, f in self.workload_spread.items()},
            "offload_s_median": self.offload_s,
            "reload_s_median": self.reload_s,
            "transfers": len(m.transfers),
            "host_bandwidth_bytes_s": self.host_bandwidth,
            "host": dataclasses.asdict(self.profile.host) if self.profile.host else None,
            "engine": dataclasses.asdict(m.facts),
            "measure_wall_s": m.wall_s,
            "other_load_cores_mean": statistics.fmean(m.other_load) if m.other_load else 0.0,
            "reruns": m.reruns,
        }


def fit_measurement(
    measurement: LiveMeasurement,
    target_dir: str | Path,
    draft_dir: str | Path,
    *,
    name: str = "calibrated",
    concentration: float = 20.0,
    host_bandwidth: float | None = None,
    clip: float = 4.0,
) -> CalibrationResult:
    """Fit the step-time coefficients and acceptance; build the profile (not written)."""
    sset = samples_from_records(measurement.records)
    fit = robust_fit(sset.samples, clip=clip)
    counts = PositionCounts.total(
        (r.drafted_per_pos, r.accepted_per_pos)
        for r in measurement.records
        if r.repeat >= 0 and r.drafted_per_pos
    )
    acc = fit_acceptance(counts, concentration=concentration)
    offs = [s for k, s in measurement.transfers if k == "offload"]
    rels = [s for k, s in measurement.transfers if k == "reload"]
    off_s = statistics.median(offs) if offs else 0.0
    rel_s = statistics.median(rels) if rels else 0.0
    facts = measurement.facts
    target = model_profile_from_hf(target_dir, dtype=facts.dtype)
    draft = model_profile_from_hf(draft_dir, dtype=facts.dtype)
    # Saved measurements carry their host's copy bandwidth: a refit elsewhere keeps its costs.
    host = measurement.host
    bw = host_bandwidth or (host.copy_bandwidth if host else copy_bandwidth())
    r = fit.report
    date = time.strftime("%Y-%m-%d")
    terms = ", ".join(
        f"{n} {getattr(r.fitted, n):.4g} +- {r.std_error[n]:.2g}" for n in TERMS
    )
    p0, p_rest = acc.measured.marginal[0], acc.measured.conditional[1:]
    sources = {
        "fitted": (
            f"measured: least-squares fit (rlspec.perf.fit.fit_step_time) of {r.samples} live vLLM "
            f"iterations ({facts.dtype}, block {facts.block_size}, {date}), batch 1-{facts.max_num_seqs}, "
            f"k 0-{facts.k_max} and drafter offloaded, prefill chunks, contexts; "
            + ("target terms on step time less the timed drafter proposals, drafter terms on "
               "those; " if r.drafter_timed else "target and drafter terms jointly; ")
            + ("" if r.pairs_recorded else "prefill attention pairs not recorded, that term held at 0; ")
            + f"{len(fit.outliers)} outliers dropped; fit MAPE {r.mape:.1%}; {terms}"
        ),
        "iteration_overhead_s": "0: per-iteration overhead is inside the fitted target_base_s",
        "draft_pass_overhead_s": "0: per-pass launch cost is inside the fitted draft_base_s",
        "offload_fixed_s": (
            f"measured: the drafter transfer is charged at offload and at reload alike, so it is "
            f"the mean of the median offload ({off_s * 1e3:.1f} ms, n={len(offs)}) and median reload "
            f"({rel_s * 1e3:.1f} ms, n={len(rels)}, weights rebuilt by vLLM's loader) less the copy "
            "time at host_link_bandwidth"
        ),
        "hardware.name": "measured: /proc/cpuinfo",
        "hardware.peak_flops": (
            "derived: 2 x target params / fitted target_per_token_s (effective FLOP/s of the "
            "engine; not a datasheet peak; unused by the fitted step time)"
        ),
        "hardware.mem_bandwidth": (
            "derived: target weight bytes / fitted target_base_s (effective; unused by the fitted "
            "step time)"
        ),
        "hardware.host_link_bandwidth": "measured: host memory copy bandwidth (numpy copy, best of 5)",
        "hardware.memory_bytes": "measured: host RAM (sysconf)",
        "hardware.efficiency": "1.0: the derived figures above are already achieved rates",
        "target": f"HF config.json of {Path(target_dir).name} (params from safetensors headers), dtype as vLLM ran it",
        "draft": f"HF config.json of {Path(draft_dir).name} (params from safetensors headers), dtype as vLLM ran it",
        "acceptance": (
            f"measured (for scenarios, not used by the profile): accepted/drafted "
            f"{acc.measured.mean:.3f}; P(pos 0) {p0:.3f}, then given earlier accepted "
            + ", ".join(f"{x:.3f}" for x in p_rest)
            + f"; as scenario acceptance: mean {acc.mean:.3f}, position_decay "
            f"{acc.position_decay:.3f}, concentration {acc.concentration:g}"
        ),
        "acceptance.mean": f"{acc.mean:.4f}",
        "acceptance.position_decay": f"{acc.position_decay:.4f}",
        "acceptance.concentration": f"{acc.concentration:g}",
        "acceptance.measured_mean": f"{acc.measured.mean:.4f}",
        "kv_cache": (
            f"live engine: block_size {facts.block_size}, {facts.num_gpu_blocks - 1} usable blocks "
            f"({facts.kv_bytes_per_block} B each), drafter hold-back {facts.holdback_blocks} blocks; "
            f"a matched simulator uses engine.block_size {facts.block_size} and num_kv_blocks "
            f"{facts.num_gpu_blocks - 1}"
        ),
    }
    profile = build_profile(
        name,
        target,
        draft,
        r.fitted,
        transfer_s=(off_s + rel_s) / 2,
        host_bandwidth=bw,
        hardware_name=f"{host.cpu} x{host.cores} cores" if host else None,
        memory_bytes=host_memory_bytes(),
        host=host,
        kv_pool=facts.kv_pool,
        sources=sources,
    )
    engine = EngineConfig(
        max_num_seqs=facts.max_num_seqs,
        max_num_batched_tokens=facts.max_num_batched_tokens,
        block_size=facts.block_size,
        k_max=facts.k_max,
        num_kv_blocks=facts.usable_blocks,
    )
    by_workload = {w.workload: w.fit(acc, profile, engine) for w in measurement.workload_acceptance}
    if by_workload:
        profile = dataclasses.replace(
            profile, sources={**profile.sources, **_workload_sources(measurement, by_workload)}
        )
    spread = {w.workload: f for w in measurement.workload_acceptance if (f := w.spread) is not None}
    return CalibrationResult(profile, fit, sset, acc, by_workload, off_s, rel_s, bw, measurement, spread)


def _workload_sources(measurement: LiveMeasurement, fits: dict[str, AcceptanceFit]) -> dict[str, str]:
    def spread(w: WorkloadAcceptance) -> str:
        f = w.spread
        if f is None:
            return "pooled concentration"
        lo, hi = f.concentration_interval
        return (f"concentration {f.concentration:.1f} (95% {lo:.1f}-{hi:.1f}) by maximum likelihood over its "
                f"requests' {f.steps} verify steps")  # fmt: skip

    described = "; ".join(
        f"{w.workload}: accepted/drafted {w.counts.mean:.3f} of {sum(w.counts.drafted)} drafts over "
        f"{w.requests} held-out requests at k={w.k}, {spread(w)} -> mean {fits[w.workload].mean:.3f}, "
        f"position_decay {fits[w.workload].position_decay:.3f}"
        for w in measurement.workload_acceptance
    )
    return {
        "acceptance.workloads": (
            "measured: each workload's own requests (its lengths, prompts no evaluation uses) run "
            "to completion at once; the spread between requests their own steps show (where the engine "
            "reported them; else the pooled concentration), the position decay their counts show at that "
            "spread, and the mean for which the simulator, serving them alike, verifies the same share: "
            f"{described}"
        ),
        **{f"acceptance.workload.{n}.mean": f"{f.mean:.4f}" for n, f in fits.items()},
        **{f"acceptance.workload.{n}.position_decay": f"{f.position_decay:.4f}" for n, f in fits.items()},
        **{f"acceptance.workload.{n}.concentration": f"{f.concentration:.1f}" for n, f in fits.items()},
    }


def format_report(res: CalibrationResult) -> str:
    r = res.fit.report
    lines = [
        f"fit: {r.samples} iterations ({len(res.fit.outliers)} outliers dropped, "
        f"{sum(res.sample_set.dropped.values())} records not usable: {res.sample_set.dropped}), "
        f"MAPE {r.mape:.2%} (before outlier removal {res.fit.first.mape:.2%}); "
        + ("drafter terms fitted on its timed proposals, target terms on the rest"
           if r.drafter_timed else "target and drafter terms fitted jointly (drafter not timed)"),
        "",
        f"  {'term':<27}{'value':>14}{'std error':>14}{'rel error':>11}",
    ]
    for t in res.per_term():
        if t["term"] == "target_per_prefill_pair_s" and not r.pairs_recorded:
            lines.append(f"  {t['term']:<27}{'held at 0':>14}  (measurements saved before prefill pairs were recorded)")
            continue
        lines.append(
            f"  {t['term']:<27}{t['value']:>14.4e}{t['std_error']:>14.2e}{t['rel_error']:>10.1%}"
        )
    a = res.acceptance
    lines += [
        "",
        f"acceptance: mean accepted/drafted {a.measured.mean:.3f} over {sum(a.measured.drafted)} drafts",
        "  by position (marginal):    " + "  ".join(f"{x:.3f}" for x in a.measured.marginal),
        "  by position (conditional): " + "  ".join(f"{x:.3f}" for x in a.measured.conditional),
        f"  simulator model: mean {a.mean:.3f}, position_decay {a.position_decay:.3f}, "
        f"concentration {a.concentration:g} -> marginal "
        + "  ".join(f"{x:.3f}" for x in a.predicted_marginal),
        *(f"  on {w.workload} ({w.requests} held-out requests, k={w.k}): accepted/drafted "
          f"{w.counts.mean:.3f} over {sum(w.counts.drafted)} drafts -> mean "
          f"{res.workload_acceptance[w.workload].mean:.3f} (simulator-matched at decay "
          f"{res.workload_acceptance[w.workload].position_decay:.3f}, concentration "
          f"{res.workload_acceptance[w.workload].concentration:.1f})"
          for w in res.measurement.workload_acceptance),
        *(f"  spread between {n}'s requests (maximum likelihood over {f.requests} requests' {f.steps} "
          f"verify steps): concentration {f.concentration:.1f} (95% {f.concentration_interval[0]:.1f}-"
          f"{f.concentration_interval[1]:.1f}), mean {f.mean:.3f}, position_decay {f.position_decay:.3f}"
          for n, f in res.workload_spread.items()),
        "",
        f"drafter transfer: offload {res.offload_s * 1e3:.1f} ms, reload {res.reload_s * 1e3:.1f} ms "
        f"(medians of {len(res.measurement.transfers)}); host copy bandwidth "
        f"{res.host_bandwidth / 1e9:.1f} GB/s",
        "",
        "host: " + (res.profile.host.describe() if res.profile.host else "not recorded (saved before hosts were)"),
    ]
    for name, groups in res.residuals.items():
        if groups:
            what = "kind of iteration" if name == "by_kind" else "prefill tokens in the iteration"
            lines += ["", f"fit error by {what} (mean |error| / measured; bias: mean measured / predicted - 1):"]
            lines += [f"  {g:<28}{r.abs_error:>7.1%}  bias {r.bias:+6.1%}  (n={r.n}, {r.outliers} outliers dropped)"
                      for g, r in groups.items()]  # fmt: skip
    return "\n".join(lines)
