"""Acceptance by draft position, measured on the live engine, as the simulator's model.

vLLM counts, per verify step, the drafts proposed and accepted at each position j
(position j is accepted only if 0..j-1 were). Summed over a run they give the marginal
rate r_j = accepted_j / drafted_j = P(the first j+1 drafts are all accepted).

The simulator draws a per-request acceptance probability a ~ Beta(m c, (1 - m) c) and
accepts position j (given the earlier ones) with probability a d^j, so

    r_j = E[a^(j+1)] d^(j(j+1)/2),    E[a^n] = prod_{i<n} (m c + i) / (c + i).

`fit_acceptance` picks the mean m and position decay d (concentration c given) that
reproduce the measured r_j, weighting each position by its drafted count.

Acceptance is a property of the pair *and the data* (the design's per-dataset Beta).
`WorkloadAcceptance` holds the drafts counted while a workload's own (held-out) requests ran
to completion on the engine at a static k. Requests that accept more finish in fewer steps,
so their drafts are under-counted and the closed form above would read a low mean from such
a run; `WorkloadAcceptance.fit` takes the position decay from the workload's own counts and
then finds the mean (pooled concentration held) for which the simulator, serving the same
requests the same way, verifies the measured share.
A matched simulator of that workload uses it.

The concentration c says how much requests differ from one another, which no pooled count
can show: position rates cannot tell a spread of a from a position decay. Where the engine
reports each request's verify steps (vLLM's per-request speculative-decoding metrics),
`fit_concentration` finds (m, c, d) by maximum likelihood on them, integrating each
request's unknown a over the Beta; the stopping rule (a request ends when its tokens are out) depends
only on what was observed, so it does not bias the likelihood as it biases the pooled share.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rlspec.control.action import Action
from rlspec.perf.acceptance import AcceptanceConfig
from rlspec.perf.profile import Profile
from rlspec.sim.config import EngineConfig
from rlspec.sim.simulator import Simulator
from rlspec.workload.request import Request


@dataclass
class PositionCounts:
    drafted: list[int]
    accepted: list[int]

    @classmethod
    def total(cls, pairs: Iterable[tuple[Sequence[int], Sequence[int]]]) -> PositionCounts:
        """Sum (drafted_per_pos, accepted_per_pos) pairs of any lengths."""
        d: list[int] = []
        a: list[int] = []
        for dp, ap in pairs:
            for acc, new in ((d, dp), (a, ap)):
                if len(acc) < len(new):
                    acc.extend([0] * (len(new) - len(acc)))
                for i, v in enumerate(new):
                    acc[i] += int(v)
        n = max(len(d), len(a))
        return cls(d + [0] * (n - len(d)), a + [0] * (n - len(a)))

    @property
    def mean(self) -> float:
        """accepted / drafted over every position (what `acceptance` means in reports)."""
        return sum(self.accepted) / sum(self.drafted) if sum(self.drafted) else float("nan")

    @property
    def marginal(self) -> list[float]:
        return [a / d if d else float("nan") for a, d in zip(self.accepted, self.drafted, strict=True)]

    @property
    def conditional(self) -> list[float]:
        """P(position j accepted | 0..j-1 accepted)."""
        r = self.marginal
        return [r[0]] + [r[j] / r[j - 1] if r[j - 1] else float("nan") for j in range(1, len(r))]


def marginal_rates(mean: float, decay: float, concentration: float, positions: int) -> np.ndarray:
    """r_j of the simulator's acceptance model for j = 0..positions-1 (vectorised over
    array-valued mean/decay)."""
    m = np.asarray(mean, dtype=np.float64)
    d = np.asarray(decay, dtype=np.float64)
    c = float(concentration)
    out = []
    moment = np.ones_like(m * d)
    for j in range(positions):
        moment = moment * (m * c + j) / (c + j)  # E[a^(j+1)]
        out.append(moment * d ** (j * (j + 1) / 2))
    return np.stack(out, axis=-1)


@dataclass(frozen=True)
class AcceptanceFit:
    mean: float  # the simulator's acceptance.mean
    position_decay: float
    concentration: float
    measured: PositionCounts
    predicted_marginal: tuple[float, ...]

    @property
    def max_abs_error(self) -> float:
        return float(
            max(abs(p - m) for p, m in zip(self.predicted_marginal, self.measured.marginal, strict=True))
        )

    def as_dict(self) -> dict:
        return {
            "mean": round(self.mean, 4),
            "position_decay": round(self.position_decay, 4),
            "concentration": self.concentration,
            "measured_mean_accepted_over_drafted": round(self.measured.mean, 4),
            "measured_marginal_by_position": [round(x, 4) for x in self.measured.marginal],
            "measured_conditional_by_position": [round(x, 4) for x in self.measured.conditional],
            "predicted_marginal_by_position": [round(x, 4) for x in self.predicted_marginal],
            "drafted_by_position": self.measured.drafted,
            "accepted_by_position": self.measured.accepted,
        }


def fit_acceptance(
    counts: PositionCounts,
    concentration: float = 20.0,
    fit_decay: bool = True,
    decay: float = 1.0,
) -> AcceptanceFit:
    """Least-squares (mean, position_decay) for the measured per-position rates; with
    `fit_decay` False the decay is held at `decay`."""
    use = [j for j, d in enumerate(counts.drafted) if d > 0]
    if not use or counts.drafted[0] == 0:
        raise ValueError("no drafts were verified: measure with k >= 1")
    n = use[-1] + 1
    r = np.array(counts.marginal[:n])
    w = np.array(counts.drafted[:n], dtype=np.float64)
    w = np.where(np.isnan(r), 0.0, w)
    r = np.nan_to_num(r)

    def solve(m_grid: np.ndarray, d_grid: np.ndarray) -> tuple[float, float]:
        mm, dd = np.meshgrid(m_grid, d_grid, indexing="ij")
        pred = marginal_rates(mm, dd, concentration, n)
        err = ((pred - r) ** 2 * w).sum(axis=-1)
        i, j = np.unravel_index(int(np.argmin(err)), err.shape)
        return float(m_grid[i]), float(d_grid[j])

    d_lo = 0.3
    d_grid = np.linspace(d_lo, 1.0, 141) if fit_decay else np.array([decay])
    m, d = solve(np.linspace(0.005, 0.995, 199), d_grid)
    for step in (0.005, 0.0005):
        m_grid = np.clip(np.linspace(m - 10 * step, m + 10 * step, 41), 1e-4, 1 - 1e-4)
        if fit_decay:
            d_grid = np.clip(np.linspace(d - 10 * step, d + 10 * step, 41), d_lo, 1.0)
        m, d = solve(m_grid, d_grid)
    pred = marginal_rates(m, d, concentration, len(counts.drafted))
    return AcceptanceFit(m, d, concentration, counts, tuple(float(x) for x in pred))


# One request's verify steps: (drafts proposed per step, drafts accepted per step).
RequestDrafts = tuple[tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class ConcentrationFit:
    """Maximum-likelihood acceptance from each request's verify steps."""

    mean: float
    concentration: float  # the grid's largest value means "no spread found" (a lower bound)
    concentration_interval: tuple[float, float]  # 95% profile-likelihood interval (grid ends)
    position_decay: float  # fitted with them, or held
    requests: int
    steps: int
    log_likelihood: float
    log_likelihood_gain: float  # over the grid's largest c (one a for every request)

    def as_dict(self) -> dict:
        lo, hi = self.concentration_interval
        return {"mean": round(self.mean, 4), "concentration": round(self.concentration, 2),
                "concentration_interval_95": [round(lo, 2), round(hi, 2)],
                "position_decay": round(self.position_decay, 4), "requests": self.requests,
                "steps": self.steps, "log_likelihood": round(self.log_likelihood, 2),
                "log_likelihood_gain_over_no_spread": round(self.log_likelihood_gain, 2)}  # fmt: skip


# Concentrations tried: from a wide spread (c = 1) to requests all but alike (c = 3000).
CONCENTRATION_GRID = np.geomspace(1.0, 3000.0, 121)


def _outcome_counts(requests: Sequence[RequestDrafts], positions: int) -> tuple[np.ndarray, np.ndarray]:
    """Per request and draft position: times it was accepted (S) and times it was the first
    draft rejected (F). Position j of a step with n drafts and j_acc accepted is accepted
    when j < j_acc and the first rejection when j == j_acc < n."""
    s = np.zeros((len(requests), positions))
    f = np.zeros((len(requests), positions))
    for i, (drafted, accepted) in enumerate(requests):
        for n, acc in zip(drafted, accepted, strict=True):
            if not 0 <= acc <= n <= positions:
                raise ValueError(f"request {i}: {acc} accepted of {n} drafts (k_max {positions})")
            s[i, :acc] += 1
            if acc < n:
                f[i, acc] += 1
    return s, f


def _profile_over_concentration(s: np.ndarray, f: np.ndarray, decay: float,
                                grid_points: int) -> list[tuple[float, float, float]]:  # fmt: skip
    """(log likelihood, best m, c) for every c of CONCENTRATION_GRID at this decay."""
    a = (np.arange(grid_points) + 0.5) / grid_points  # (G,) midpoints of the integral over a
    p = np.clip(a[:, None] * decay ** np.arange(s.shape[1])[None, :], 1e-12, 1 - 1e-12)  # (G, K)
    log_l = s @ np.log(p).T + f @ np.log1p(-p).T  # (R, G): log P(request's steps | a)
    top = log_l.max(axis=1)
    lik = np.exp(log_l - top[:, None])  # (R, G), scaled per request
    log_a, log_1a = np.log(a), np.log1p(-a)

    def total(m: float, c: float) -> float:
        log_w = (m * c - 1) * log_a + ((1 - m) * c - 1) * log_1a
        w = np.exp(log_w - log_w.max())
        w /= w.sum()  # the Beta's mass on the grid points
        return float((np.log(lik @ w) + top).sum())

    def best_m(c: float, grid: np.ndarray) -> tuple[float, float]:
        vals = [total(m, c) for m in grid]
        i = int(np.argmax(vals))
        return vals[i], float(grid[i])

    out = []
    for c in CONCENTRATION_GRID:
        ll, m = best_m(float(c), np.linspace(0.02, 0.98, 49))
        for step in (0.02, 0.002):
            ll, m = best_m(float(c), np.clip(np.linspace(m - step, m + step, 21), 0.005, 0.995))
        out.append((ll, m, float(c)))
    return out


def fit_concentration(requests: Sequence[RequestDrafts], decay: float | None = None,
                      grid_points: int = 400) -> ConcentrationFit:  # fmt: skip
    """(m, c) maximising the product over requests of the integral over a ~ Beta(mc, (1-m)c)
    of that request's step likelihood, prod_j (a d^j)^S_j (1 - a d^j)^F_j; the decay d too
    when `decay` is None (the order of rejections within a request shows it apart from c).

    The integral is a midpoint sum over `grid_points` values of a; m is searched on a grid
    refined twice around the best, c on CONCENTRATION_GRID, d over 0.8-1.0 in steps of 0.01,
    then 0.002 around the best."""
    used = [r for r in requests if len(r[0])]
    if not used:
        raise ValueError("no request had a verify step with drafts: measure with k >= 1")
    s, f = _outcome_counts(used, max(max(r[0]) for r in used))
    if decay is None:
        fits = {round(float(d), 6): _profile_over_concentration(s, f, float(d), grid_points)
                for d in np.linspace(0.8, 1.0, 21)}  # fmt: skip
        best = max(fits, key=lambda d: max(fits[d])[0])
        for d in np.clip(np.linspace(best - 0.01, best + 0.01, 11), 0.3, 1.0):
            if round(float(d), 6) not in fits:
                fits[round(float(d), 6)] = _profile_over_concentration(s, f, float(d), grid_points)
        decay = max(fits, key=lambda d: max(fits[d])[0])
        profile = fits[decay]
    else:
        profile = _profile_over_concentration(s, f, decay, grid_points)
    lls = np.array([x[0] for x in profile])
    ll, m, c = profile[int(np.argmax(lls))]
    # chi-square(1) 95% (3.84 / 2), widened to the first grid points outside: the bound
    # lies between them and the last inside.
    inside = np.flatnonzero(lls >= ll - 1.92)
    lo, hi = CONCENTRATION_GRID[max(inside[0] - 1, 0)], CONCENTRATION_GRID[min(inside[-1] + 1, len(lls) - 1)]
    return ConcentrationFit(m, c, (float(lo), float(hi)), decay, len(used),
                            sum(len(r[0]) for r in used), ll, ll - float(lls[-1]))  # fmt: skip


def mean_for_share(share: Callable[[float], float], target: float, iterations: int = 14) -> float:
    """The acceptance mean for which a simulator verifies `target` accepted / drafted, by
    bisection on [0.01, 0.99]. `share(mean)` must be monotone in the mean: serve the same
    requests with common seeds, so only the mean moves the draws."""
    lo, hi = 0.01, 0.99
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if share(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class WorkloadAcceptance:
    """Drafts verified while one workload's held-out requests ran at a static k."""

    workload: str  # the scenario's name (a matched simulator of it uses this acceptance)
    lengths: tuple[tuple[int, int], ...]  # (prompt_len, output_len) of the requests, all at t=0
    k: int
    counts: PositionCounts
    # Each request's verify steps, in `lengths` order (empty: the engine did not report them;
    # measurements saved before they were recorded).
    per_request: tuple[RequestDrafts, ...] = ()

    @property
    def requests(self) -> int:
        return len(self.lengths)

    def to_dict(self) -> dict:
        d = {"workload": self.workload, "lengths": [list(x) for x in self.lengths], "k": self.k,
             "drafted_per_pos": self.counts.drafted, "accepted_per_pos": self.counts.accepted}  # fmt: skip
        if self.per_request:
            d["per_request"] = [[list(dr), list(ac)] for dr, ac in self.per_request]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> WorkloadAcceptance:
        per_request = tuple((tuple(map(int, dr)), tuple(map(int, ac))) for dr, ac in d.get("per_request", ()))
        return cls(str(d["workload"]), tuple((int(p), int(o)) for p, o in d["lengths"]), int(d["k"]),
                   PositionCounts(list(d["drafted_per_pos"]), list(d["accepted_per_pos"])), per_request)  # fmt: skip

    @functools.cached_property
    def spread(self) -> ConcentrationFit | None:
        """The spread of acceptance between this workload's requests, with its mean and
        decay, by maximum likelihood (None when the engine did not report each request's
        steps)."""
        return fit_concentration(self.per_request) if self.per_request else None

    def simulated_share(self, acceptance: AcceptanceConfig, profile: Profile, engine: EngineConfig,
                        seeds: int = 8) -> float:  # fmt: skip
        """accepted / drafted when the simulator serves these requests at this k."""
        reqs = [Request(i, 0.0, p, o) for i, (p, o) in enumerate(self.lengths)]
        drafted = accepted = 0
        for seed in range(seeds):
            sim = Simulator(profile, engine, acceptance, seed=seed)
            sim.start(reqs)
            while not sim.finished:
                sim.set_action(Action(k=self.k))
                snap = sim.step()
                drafted += snap.num_drafted
                accepted += snap.num_accepted
        return accepted / drafted if drafted else float("nan")

    def fit(self, pooled: AcceptanceFit, profile: Profile, engine: EngineConfig,
            seeds: int = 8) -> AcceptanceFit:  # fmt: skip
        """This workload's acceptance: the position decay its own counts show (least squares
        on its marginals, the pooled concentration held), then the mean for which the
        simulator, serving these requests at that decay, verifies the measured share (found
        by bisection; common seeds keep it monotone in the mean).

        The decay is the workload's own because the pooled probes' decay misses it by enough
        to matter: on the tiny pair the pooled 0.958 made a Poisson chat run at k=3 read 0.367
        in the simulator against 0.344 live, where the workload's own marginals imply 0.347.
        The mean is not taken from the same least squares: it is biased low on requests
        served to completion (see the module's docstring).

        The concentration is the workload's own where its requests' steps were recorded
        (`spread`), else the pooled one. It matters for the decay: a spread of a
        raises the later positions' conditional rates (the requests that got that far accept
        more), which a fit assuming too much spread reads as a decay below 1."""
        spread = self.spread
        conc = spread.concentration if spread is not None else pooled.concentration
        decay = fit_acceptance(self.counts, concentration=conc).position_decay
        mean = mean_for_share(
            lambda m: self.simulated_share(AcceptanceConfig(mean=m, concentration=conc, position_decay=decay),
                                           profile, engine, seeds),
            self.counts.mean,
        )  # fmt: skip
        pred = marginal_rates(mean, decay, conc, len(self.counts.drafted))
        return AcceptanceFit(mean, decay, conc, self.counts, tuple(float(x) for x in pred))
