"""Shared builders: small, fast scenarios made in code so tests read on their own."""

from __future__ import annotations

import numpy as np
import pytest

from rlspec.perf.acceptance import AcceptanceConfig
from rlspec.perf.profile import load_profile
from rlspec.sim.config import EngineConfig
from rlspec.sim.simulator import Simulator
from rlspec.workload import Request


def poisson_requests(n: int, rate: float, seed: int = 0, prompt=(64, 512), output=(8, 200)):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    return [
        Request(i, float(t[i]), int(rng.integers(*prompt)), int(rng.integers(*output)))
        for i in range(n)
    ]


@pytest.fixture(scope="session")
def h100():
    return load_profile("h100-llama8b-1b")


@pytest.fixture
def make_sim(h100):
    def build(seed: int = 0, acceptance: float = 0.8, **engine) -> Simulator:
        return Simulator(h100, EngineConfig(**engine), AcceptanceConfig(mean=acceptance), seed=seed)

    return build


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """(target_dir, draft_dir) of the small test pair (TEST_SPEC) for the live-vLLM tests,
    built once per session."""
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from rlspec.engines.tiny_models import TEST_SPEC, build_from_spec

    out = tmp_path_factory.mktemp("tiny_pair")
    target, draft = build_from_spec(out, TEST_SPEC)
    return str(target), str(draft)
