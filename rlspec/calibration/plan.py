"""What to measure on the live engine, and how measured iterations become fit samples.

A measurement plan is a list of probes. A probe is a small episode the live backend runs:

* **grid probes**: `batch` requests of `prompt_len` tokens arrive together; after their
  prefill (chunked under the token budget) the decode phase runs a *k schedule*, e.g.
  `k=0` for 5 steps, `k=1` for 5, ... `k=k_max` for 5, then the drafter offloaded for 5.
  Batch sizes x prompt lengths span batch, draft length, drafter placement and context;
  the prefill steps span prefill chunks.
* **stream probes**: requests of mixed lengths arrive one by one at a fixed static k (or
  with the drafter offloaded), so prefill chunks land in running decode batches (the mixed
  iterations real workloads have).
* **prefill probes**: grid probes that stop after their prefill (one output token), over
  many prompt lengths, run several times per repeat. A grid probe yields a prefill
  iteration or two against dozens of decode steps, yet prefill is most of a long-prompt
  workload's time, and its attention is quadratic in the prompt: the term with the fewest
  measurements and the most curvature gets its own probes.

Every iteration the backend runs becomes a `StepRecord` (what was scheduled, the cached
tokens the batch attended, the measured time, the drafts verified by position). Records
turn into `IterationSample`s (`samples_from_records`): idle and transfer steps are
dropped, so are steps whose verified drafts do not match the k drafted (the step after a
k switch: vLLM verifies at step t+1 what it drafted at step t), and repeats of the same
iteration are merged by their median (the machine may be shared; interference only ever
slows a step down). `robust_fit` then calls `rlspec.perf.fit.fit_step_time` (relative errors), drops the
iterations the first fit misses by more than `clip` robust standard deviations
(interference spikes, first-time kernel shapes), and fits again.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rlspec.perf.fit import TERMS, FitReport, IterationSample, design_row, fit_step_time
from rlspec.workload.request import Request

OFF = -1  # k-schedule entry: drafter offloaded


@dataclass(frozen=True)
class Probe:
    """One measurement episode."""

    name: str
    batch: int  # requests (grid) or total requests (stream)
    prompt_len: int  # grid: every prompt; stream: the largest (lengths are spread below it)
    output_len: int
    schedule: tuple[tuple[int, int], ...]  # ((k or OFF, decode steps), ...); stream: ((k, 0),)
    spacing_s: float = 0.0  # arrival spacing; 0 = all at t=0 (grid)
    seed: int = 0
    runs: int = 1  # times per plan repeat (the extra runs spread through the repeat)

    def __post_init__(self) -> None:
        if self.batch < 1 or self.prompt_len < 1 or self.output_len < 1:
            raise ValueError(f"probe {self.name}: batch, prompt_len, output_len must be >= 1")
        if not self.schedule:
            raise ValueError(f"probe {self.name}: empty k schedule")
        if self.runs < 1:
            raise ValueError(f"probe {self.name}: runs must be >= 1, got {self.runs}")

    @property
    def stream(self) -> bool:
        return self.spacing_s > 0

    def requests(self) -> list[Request]:
        if not self.stream:
            return [Request(i, 0.0, self.prompt_len, self.output_len) for i in range(self.batch)]
        rng = np.random.default_rng(self.seed)
        lo = max(8, self.prompt_len // 32)
        prompts = np.exp(rng.uniform(np.log(lo), np.log(self.prompt_len), self.batch))
        outputs = rng.integers(max(4, self.output_len // 4), self.output_len + 1, self.batch)
        return [
            Request(i, i * self.spacing_s, int(prompts[i]), int(outputs[i]))
            for i in range(self.batch)
        ]

    def action_at(self, decode_step: int) -> int:
        """k (or OFF) for the `decode_step`-th step after the prefill phase; None past the end."""
        n = 0
        for k, steps in self.schedule:
            n += steps
            if decode_step < n:
                return k
        return self.schedule[-1][0] if self.stream else None  # type: ignore[return-value]

    @property
    def decode_steps(self) -> int:
        return sum(s for _, s in self.schedule)


@dataclass(frozen=True)
class MeasurementPlan:
    probes: tuple[Probe, ...]
    repeats: int = 2  # every probe runs this many times (order reversed on odd repeats)
    warmup: int = 1  # probes run first and discarded (kernel warm-up)

    def order(self) -> list[tuple[int, Probe]]:
        """(repeat, probe) in run order: repeats interleaved, alternate ones reversed; a
        probe's extra `runs` follow in passes over the probes that have them."""
        out: list[tuple[int, Probe]] = [(-1, p) for p in self.probes[: self.warmup]]
        passes = max((p.runs for p in self.probes), default=1)
        for r in range(self.repeats):
            seq = self.probes if r % 2 == 0 else tuple(reversed(self.probes))
            out += [(r, p) for j in range(passes) for p in seq if p.runs > j]
        return out


def default_plan(
    k_max: int = 4,
    max_num_seqs: int = 16,
    max_num_batched_tokens: int = 2048,
    max_model_len: int = 2048,
    *,
    quick: bool = False,
    repeats: int | None = None,
) -> MeasurementPlan:
    """Batch sizes x prompt lengths, each decoding through k = 0..k_max and offloaded,
    prefill probes (`prefill_shapes`), and streams of mixed requests at a few static k.
    `quick` is a small plan for tests."""
    steps = 3 if quick else 5
    schedule = tuple((k, steps) for k in range(k_max + 1)) + ((OFF, steps),)
    out_len = sum((k + 1) * steps for k in range(k_max + 1)) + 2 * steps + 8
    if quick:
        batches = sorted({1, min(4, max_num_seqs), max_num_seqs})
        prompts = [16, max(16, min(256, max_model_len // 4))]
        max_prefill = 4 * max_num_batched_tokens
    else:
        batches = sorted({b for b in (1, 2, 4, 8, 12, 16, 24, 32) if b <= max_num_seqs}
                         | {max_num_seqs})  # fmt: skip
        prompts = [32, 256, 768, 1536]
        max_prefill = 4 * max_num_batched_tokens
    probes: list[Probe] = []
    for p in prompts:
        if p + out_len > max_model_len:
            continue
        for b in batches:
            if b * p > max_prefill and b > 1:
                continue
            probes.append(Probe(f"grid-b{b}-p{p}", b, p, out_len, schedule))
    for b, p in prefill_shapes(max_num_batched_tokens, max_model_len, quick=quick):
        probes.append(Probe(f"prefill-b{b}-p{p}", b, p, 1, ((0, 1),), runs=1 if quick else 3))
    stream_k = [0, k_max // 2, k_max, OFF] if not quick else [0, k_max]
    n_stream = 8 if quick else 24
    longest = min(1536 if not quick else 128, max_model_len - 96)
    for i, k in enumerate(stream_k):
        for spacing in ((0.02,) if quick else (0.05, 0.15)):
            probes.append(
                Probe(
                    f"stream-{'off' if k == OFF else f'k{k}'}-s{spacing:g}",
                    n_stream,
                    longest,
                    64 if not quick else 16,
                    ((k, 0),),
                    spacing_s=spacing,
                    seed=i,
                )
            )
    return MeasurementPlan(tuple(probes), repeats=repeats or (1 if quick else 2))


def prefill_shapes(max_num_batched_tokens: int, max_model_len: int, *, quick: bool = False) -> list[tuple[int, int]]:
    """(batch, prompt length) of the prefill probes: one prompt of every length in steps of
    256 up to the longest one that fits, and two or four prompts sharing a chunk, each within
    one chunk (a chunked prompt's continuation is measured by the grid's large batches)."""
    longest = min(max_model_len - 1, max_num_batched_tokens)
    if quick:
        return [(1, p) for p in (32, min(256, longest))]
    lengths = [*range(128, longest, 256), longest]
    return [(b, p) for b in (1, 2, 4) for p in lengths if b * p <= max_num_batched_tokens]


@dataclass(frozen=True)
class StepRecord:
    """One measured iteration of the live engine (plain data: no vLLM types)."""

    probe: str
    repeat: int
    index: int  # iteration within the probe
    decode_reqs: int
    k: int  # draft length drafted after this step (0 when offloaded)
    spec_tokens: int  # draft tokens verified this step (over all decode requests)
    prefill_tokens: int
    context: int  # cached tokens the scheduled requests attend to (before this step)
    scheduled_tokens: int
    resident: bool
    transition: bool  # an offload or reload happened in this step (its stall is included)
    step_time_s: float
    drafted_per_pos: tuple[int, ...] = ()
    accepted_per_pos: tuple[int, ...] = ()
    drafter_time_s: float | None = None  # of step_time_s, in the drafter's proposals (None: not timed)
    prefill_pairs: int | None = None  # query-key pairs of the prefill chunks (None: not recorded)

    @property
    def consistent(self) -> bool:
        """Verified drafts match the k drafted (so the step is `decode_reqs` x (k + 1))."""
        if self.decode_reqs == 0:
            return True
        return self.spec_tokens == self.decode_reqs * (self.k if self.resident else 0)


@dataclass
class SampleSet:
    samples: list[IterationSample]
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> records
    merged: int = 0  # records merged into another's median


def samples_from_records(records: Sequence[StepRecord], merge: str = "median") -> SampleSet:
    """Usable iterations, repeats of the same iteration merged (`median` or `min`)."""
    dropped: dict[str, int] = defaultdict(int)
    groups: dict[tuple, list[tuple[float, float | None]]] = defaultdict(list)
    for r in records:
        if r.repeat < 0:
            dropped["warm-up"] += 1
        elif r.scheduled_tokens <= 0:
            dropped["idle"] += 1
        elif r.transition:
            dropped["drafter transfer"] += 1
        elif not r.consistent:
            dropped["k switch (verified != drafted)"] += 1
        elif r.step_time_s <= 0:
            dropped["no time"] += 1
        else:
            k = r.k if r.resident else 0
            drafter = r.drafter_time_s if r.resident else 0.0
            key = (r.decode_reqs, k, r.prefill_tokens, r.context, r.resident, r.prefill_pairs)
            groups[key].append((r.step_time_s, drafter))
    agg = np.median if merge == "median" else np.min

    def merged_drafter(ts: list[tuple[float, float | None]]) -> float | None:
        times = [d for _, d in ts]
        return None if any(d is None for d in times) else float(agg(times))

    samples = [
        IterationSample(b, k, p, c, res, float(agg([t for t, _ in ts])), merged_drafter(ts), pairs)
        for (b, k, p, c, res, pairs), ts in sorted(groups.items(), key=lambda g: g[0][:5] + (g[0][5] or 0,))
    ]
    merged = sum(len(ts) - 1 for ts in groups.values())
    return SampleSet(samples, dict(dropped), merged)


def predict(report: FitReport, samples: Sequence[IterationSample]) -> np.ndarray:
    coef = np.array([getattr(report.fitted, n) for n in TERMS], dtype=np.float64)
    return np.array([design_row(s) for s in samples], dtype=np.float64) @ coef


@dataclass
class RobustFit:
    report: FitReport
    kept: list[IterationSample]
    outliers: list[IterationSample]
    first: FitReport  # the fit before outliers were dropped


@dataclass(frozen=True)
class ResidualGroup:
    """How the fit does on one group of the iterations it kept."""

    n: int  # kept iterations in the group
    outliers: int  # iterations of the group the robust fit dropped
    abs_error: float  # mean |predicted - measured| / measured
    bias: float  # mean measured / predicted - 1: > 0, such steps run slower than the profile says


# Iterations by the prefill tokens they carry: a mean error can hide a band the line misses.
PREFILL_BANDS: tuple[tuple[int, int | None], ...] = ((1, 256), (256, 768), (768, 1600), (1600, None))
_BAND_LABELS = [f"{lo}+" if hi is None else f"{lo}-{hi - 1}" for lo, hi in PREFILL_BANDS]


def _kind(s: IterationSample) -> str:
    key = "offloaded" if not s.drafter_resident else f"resident k={s.k}"
    return key + (" + prefill" if s.prefill_tokens else "")


def _band(s: IterationSample) -> str | None:
    for (lo, hi), label in zip(PREFILL_BANDS, _BAND_LABELS, strict=True):
        if s.prefill_tokens >= lo and (hi is None or s.prefill_tokens < hi):
            return label
    return None


def fit_residuals(fit: RobustFit) -> dict[str, dict[str, ResidualGroup]]:
    """The fit's error and its sign per kind of iteration (`by_kind`, by name) and per band of
    prefill tokens (`by_prefill_tokens`, in band order). The sign matters to the simulator: a
    group the fit underestimates makes every workload rich in it run slower live than simulated."""
    out: dict[str, dict[str, ResidualGroup]] = {}
    pred = predict(fit.report, fit.kept) if fit.kept else np.zeros(0)
    for name, group_of in (("by_kind", _kind), ("by_prefill_tokens", _band)):
        ratios: dict[str, list[float]] = defaultdict(list)
        for smp, p in zip(fit.kept, pred, strict=True):
            if (g := group_of(smp)) is not None:
                ratios[g].append(smp.step_time_s / float(p))
        dropped = Counter(g for smp in fit.outliers if (g := group_of(smp)) is not None)
        order = sorted(ratios) if name == "by_kind" else [b for b in _BAND_LABELS if b in ratios]
        out[name] = {
            g: ResidualGroup(len(ratios[g]), dropped[g], float(np.mean([abs(1 - 1 / x) for x in ratios[g]])),
                             float(np.mean(ratios[g])) - 1)  # fmt: skip
            for g in order
        }
    return out


def robust_fit(
    samples: Sequence[IterationSample], clip: float = 4.0, relative: bool = True
) -> RobustFit:
    """`fit_step_time` (relative errors by default: CPU step times span 20 ms to 2 s),
    then again without the iterations the first fit misses by more than `clip` robust
    standard deviations of the relative residual."""
    samples = list(samples)
    first = fit_step_time(samples, relative=relative)
    y = np.array([s.step_time_s for s in samples])
    rel = (y - predict(first, samples)) / y
    med = float(np.median(rel))
    mad = 1.4826 * float(np.median(np.abs(rel - med))) or 1e-9
    keep = np.abs(rel - med) <= clip * mad
    kept = [s for s, ok in zip(samples, keep, strict=True) if ok]
    outliers = [s for s, ok in zip(samples, keep, strict=True) if not ok]
    if len(kept) == len(samples):
        return RobustFit(first, kept, outliers, first)
    try:
        report = fit_step_time(kept, relative=relative)
    except ValueError:  # dropping outliers lost a term: keep the first fit
        return RobustFit(first, samples, [], first)
    return RobustFit(report, kept, outliers, first)
