"""Fit the step-time model to measured iterations (`rlspec calibrate`).

The fitted model is linear in its eight coefficients, so ordinary least squares recovers them
from iterations measured over batch sizes, draft lengths, prefill chunks and contexts. Each
row of the design matrix is what one iteration did (DESIGN section 4):

    t = tb + tt*T + tc*C + tp*P                           target pass over T new tokens
      + n*db + dt*(T + (n-1)*B) + n*dc*C + q*dq   (resident)

with T = B*(k+1) + prefill tokens, C the cached tokens attended, P the query-key pairs
the prefill chunks' causal attention scores (quadratic in a chunk's length), n the drafter's
passes (1, and k-1 more when decodes draft) and q 1 when the step proposes drafts
(`rlspec.perf.step_time.draft_schedule`): a drafting step's fixed cost, told apart from
db by steps at k = 0 and k >= 1. `tb` absorbs the per-iteration overhead, so fitted
profiles carry `iteration_overhead_s: 0`. Samples measured before P was recorded
(`prefill_pairs` None) fit without it (`tp` = 0).

Fitted jointly, target and drafter terms are nearly collinear wherever the drafter is
resident (both grow with T and C), and only offloaded iterations tell them apart: the
2026-12-01 fit put 1.8x the drafter's timed share of an Azure-code iteration on the drafter
(notes/calibration.md section 6). When the samples carry the time the drafter's proposals
took (`drafter_time_s`, timed around vLLM's propose()), the two parts are fitted apart:
the target's terms on step time minus drafter time, the drafter's on drafter time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rlspec.perf.profile import FittedStepTime
from rlspec.perf.step_time import draft_schedule

TARGET_TERMS = (
    "target_base_s",
    "target_per_token_s",
    "target_per_context_s",
    "target_per_prefill_pair_s",
)
DRAFT_TERMS = ("draft_base_s", "draft_per_token_s", "draft_per_context_s", "draft_propose_s")
TERMS = TARGET_TERMS + DRAFT_TERMS  # the columns of `design_row`, in order
PAIRS = TERMS.index("target_per_prefill_pair_s")


@dataclass(frozen=True)
class IterationSample:
    decode_reqs: int  # B
    k: int
    prefill_tokens: int
    context: int  # cached tokens attended by the batch
    drafter_resident: bool
    step_time_s: float  # measured
    drafter_time_s: float | None = None  # of step_time_s, the drafter's (None: not timed)
    prefill_pairs: int | None = None  # query-key pairs of the prefill chunks (None: not recorded)


@dataclass(frozen=True)
class FitReport:
    fitted: FittedStepTime
    std_error: dict[str, float]  # standard error of each coefficient (seconds per unit)
    rel_error: dict[str, float]  # std error / |coefficient|
    mape: float  # mean absolute percentage error of the fitted step times
    samples: int
    drafter_timed: bool = False  # drafter terms fitted on timed drafter passes, apart
    pairs_recorded: bool = True  # False: samples without prefill pairs, that term held at 0


def design_row(s: IterationSample) -> list[float]:
    tokens = s.decode_reqs * (s.k + 1) + s.prefill_tokens
    target = [1.0, tokens, s.context, float(s.prefill_pairs or 0)]
    if not s.drafter_resident:
        return target + [0.0] * len(DRAFT_TERMS)
    chained, proposes = draft_schedule(s.decode_reqs, s.k)
    passes = 1 + chained
    return target + [passes, tokens + chained * s.decode_reqs, passes * s.context, float(proposes)]


def fit_step_time(samples: Sequence[IterationSample], relative: bool = False) -> FitReport:
    """Least squares over the measured iterations (target and drafter apart when every
    sample carries its drafter time).

    `relative=True` minimises relative instead of absolute errors (each row weighted by
    1 / measured step time), so a few long prefill iterations do not outweigh the many
    short decode steps; measured step times spanning 20 ms to 2 s on a CPU engine need it.
    """
    if len(samples) < len(TERMS) * 2:
        raise ValueError(f"need at least {len(TERMS) * 2} measured iterations, got {len(samples)}")
    x = np.array([design_row(s) for s in samples], dtype=np.float64)
    y = np.array([s.step_time_s for s in samples], dtype=np.float64)
    paired = all(s.prefill_pairs is not None for s in samples)
    cols = np.array([paired or n != PAIRS for n in range(len(TERMS))])  # the terms fitted
    if np.linalg.matrix_rank(x[:, cols]) < cols.sum():
        raise ValueError(
            "measurements do not separate the terms: vary batch size, k (including 0 and >1), "
            "prefill (short and long prompts), context and drafter placement"
        )
    w = 1.0 / y if relative else np.ones_like(y)
    timed = all(s.drafter_time_s is not None for s in samples)
    coef, std = np.zeros(len(TERMS)), np.zeros(len(TERMS))
    if timed:
        d = np.array([s.drafter_time_s for s in samples], dtype=np.float64)
        resident = np.array([s.drafter_resident for s in samples])
        drf = x[resident][:, len(TARGET_TERMS) :]
        if np.linalg.matrix_rank(drf) < len(DRAFT_TERMS):
            raise ValueError("timed drafter passes do not separate the drafter's terms: vary "
                             "k (including 0 and >1), batch size and context while resident")  # fmt: skip
        t_idx = np.flatnonzero(cols[: len(TARGET_TERMS)])
        coef[t_idx], std[t_idx] = _weighted_lstsq(x[:, t_idx], y - d, w)
        d_idx = slice(len(TARGET_TERMS), None)
        coef[d_idx], std[d_idx] = _weighted_lstsq(drf, d[resident], w[resident])
    else:
        idx = np.flatnonzero(cols)
        coef[idx], std[idx] = _weighted_lstsq(x[:, idx], y, w)
    resid = y - x @ coef
    fitted = FittedStepTime(**{name: float(c) for name, c in zip(TERMS, coef, strict=True)})
    return FitReport(
        fitted=fitted,
        std_error={n: float(e) for n, e in zip(TERMS, std, strict=True)},
        rel_error={n: float(e / abs(c)) if c else float("inf") for n, e, c in zip(TERMS, std, coef, strict=True)},
        mape=float(np.mean(np.abs(resid) / y)),
        samples=len(y),
        drafter_timed=timed,
        pairs_recorded=paired,
    )


def _weighted_lstsq(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative coefficients of `y ~ x` under row weights `w`, and their standard errors."""
    xw, yw = x * w[:, None], y * w
    # Scale columns so the solve is well conditioned (tokens and contexts span 1e0..1e5).
    scale = np.abs(xw).max(axis=0)
    scale[scale == 0] = 1.0
    coef_s, *_ = np.linalg.lstsq(xw / scale, yw, rcond=None)
    coef = np.clip(coef_s / scale, 0.0, None)
    resid = (y - x @ coef) * w
    dof = max(len(y) - x.shape[1], 1)
    sigma2 = float(resid @ resid) / dof
    cov = sigma2 * np.linalg.pinv((xw / scale).T @ (xw / scale))
    std = np.sqrt(np.clip(np.diag(cov), 0.0, None)) / scale
    return coef, std
