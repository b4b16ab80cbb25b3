from pathlib import Path

import numpy as np
import pytest

from rlspec.workload import Request, TraceError, generate

from ._configs import load as cfg
from ._configs import synthetic

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", ["poisson", "gamma", "onoff", "ramp", "diurnal", "flash"])
def test_synthetic_requests(kind):
    reqs = generate(cfg(synthetic(kind)), np.random.default_rng(0))
    assert reqs and all(isinstance(r, Request) for r in reqs)
    assert [r.request_id for r in reqs] == list(range(len(reqs)))
    times = [r.arrival_s for r in reqs]
    assert times == sorted(times) and 0.0 <= times[0] and times[-1] < 120.0
    assert all(r.prompt_len == 100 and 1 <= r.output_len <= 50 for r in reqs)
    assert all(type(r.arrival_s) is float and type(r.prompt_len) is int for r in reqs)


def test_same_seed_same_list_different_seed_different():
    c = cfg(synthetic("gamma"))
    assert generate(c, np.random.default_rng(7)) == generate(c, np.random.default_rng(7))
    assert generate(c, np.random.default_rng(7)) != generate(c, np.random.default_rng(8))


def test_max_requests_and_length_scale_apply_to_synthetic():
    reqs = generate(
        cfg(synthetic("poisson", max_requests=25, length_scale=0.25)), np.random.default_rng(0)
    )
    assert len(reqs) == 25
    assert {r.prompt_len for r in reqs} == {25}


def test_trace_path_resolved_against_base_dir():
    c = cfg({"kind": "trace", "path": "../traces/azure_llm_2023_code.csv", "max_requests": 3})
    reqs = generate(c, np.random.default_rng(0), base_dir=REPO / "envs")
    assert len(reqs) == 3


def test_trace_path_relative_to_cwd(monkeypatch):
    monkeypatch.chdir(REPO)
    c = cfg({"kind": "trace", "path": "traces/azure_llm_2023_code.csv", "rate_scale": 4.0})
    reqs = generate(c, np.random.default_rng(0))
    assert reqs[-1].arrival_s == pytest.approx(3435.948 / 4, abs=0.01)


def test_missing_trace_names_resolved_path(tmp_path):
    c = cfg({"kind": "trace", "path": "missing.csv"})
    with pytest.raises(TraceError, match=f"{tmp_path}/missing.csv: trace file not found"):
        generate(c, np.random.default_rng(0), base_dir=tmp_path)


def test_100k_requests_are_sorted_with_dense_ids():
    c = cfg(synthetic("gamma", rate=1000.0, duration_s=100.0))
    reqs = generate(c, np.random.default_rng(0))
    assert len(reqs) > 90_000
    assert [r.request_id for r in reqs] == list(range(len(reqs)))
    assert all(a.arrival_s <= b.arrival_s for a, b in zip(reqs, reqs[1:], strict=False))


@pytest.mark.parametrize("kind", ["poisson", "gamma", "onoff", "ramp", "diurnal", "flash"])
def test_at_load_scales_the_arrival_rate_and_keeps_the_lengths(kind):
    c = cfg(synthetic(kind, duration_s=6000.0))  # long enough for on-off's few busy periods
    half = c.at_load(0.5)
    assert (half.prompt, half.output, half.duration_s, half.kind) == (c.prompt, c.output, c.duration_s, c.kind)
    n, n_half = len(generate(c, np.random.default_rng(0))), len(generate(half, np.random.default_rng(0)))
    assert n_half / n == pytest.approx(0.5, rel=0.1)
    assert c.at_load(1.0) == c


def test_at_load_replays_a_trace_faster_or_slower():
    c = cfg({"kind": "trace", "path": "../traces/azure_llm_2023_code.csv", "max_requests": 50})
    base = generate(c, np.random.default_rng(0), REPO / "envs")
    slow = generate(c.at_load(0.5), np.random.default_rng(0), REPO / "envs")
    assert [r.arrival_s for r in slow] == pytest.approx([2 * r.arrival_s for r in base])
    assert c.at_load(0.5).at_load(4.0).rate_scale == pytest.approx(2.0)
