import dataclasses
from pathlib import Path

import numpy as np
import pytest

from rlspec.config import ConfigError
from rlspec.engines.factory import make_backend
from rlspec.envs.distribution import load_distribution
from rlspec.perf.step_time import SpeedDrift
from rlspec.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
CPU_TINY = ROOT / "envs/distributions/cpu-tiny-train.yaml"
CPU_TINY_DRIFT = ROOT / "envs/distributions/cpu-tiny-train-drift.yaml"


def test_speed_drift_is_drawn_within_its_ranges():
    dist = load_distribution(CPU_TINY_DRIFT)
    assert dist.speed_drift
    rng = np.random.default_rng(0)
    drifts = [dist.sample(rng).speed_drift for _ in range(200)]
    for name, (lo, hi) in dist.speed_drift.items():
        vals = [getattr(d, name) for d in drifts]
        assert lo <= min(vals) and max(vals) <= hi
        assert max(vals) - min(vals) > 0.8 * (hi - lo)  # the range is covered, not one value


def test_without_speed_drift_the_base_scenarios_drift_is_kept():
    dist = load_distribution(CPU_TINY)
    assert not dist.speed_drift
    assert all(
        dist.sample(np.random.default_rng(i)).speed_drift == SpeedDrift() for i in range(5)
    )


@pytest.mark.parametrize(
    "drift, match",
    [({"speed": [1.0, 2.0]}, "speed_drift.speed: unknown field"),
     ({"first_meeting": [1.0, 2.0]}, "speed_drift.first_meeting: unknown field"),
     ({"scale": [1.5, 1.0]}, "speed_drift.scale: expected")],  # fmt: skip
)
def test_bad_speed_drift_names_the_field(drift, match):
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(load_distribution(CPU_TINY), speed_drift=drift)


def test_first_meeting_is_given_to_every_sampled_engine_and_checked():
    plain = load_distribution(CPU_TINY)
    bands = [[0, 1.2], [512, 1.1]]
    met = dataclasses.replace(plain, first_meeting=bands)
    for i in range(5):
        assert met.sample(np.random.default_rng(i)).speed_drift.first_meeting == ((0, 1.2), (512, 1.1))
        assert plain.sample(np.random.default_rng(i)).speed_drift.first_meeting == ()
    with pytest.raises(ConfigError, match="speed_drift.first_meeting"):
        dataclasses.replace(plain, first_meeting=[[64, 1.2]])


def test_acceptance_change_moves_the_mean_over_the_episode_and_is_drawn_only_when_asked():
    plain = load_distribution(CPU_TINY)
    moving = dataclasses.replace(plain, acceptance_change=[-0.2, 0.1])
    for i in range(40):
        sc = moving.sample(np.random.default_rng(i))
        (t0, start), (t1, end) = sc.acceptance.drift
        assert t0 == 0.0 and t1 == sc.workload.duration_s and start == sc.acceptance.mean
        assert 0.05 <= end <= 0.95 and -0.2 - 1e-9 <= end - start <= 0.1 + 1e-9
        # The simulator draws the episode's requests around the moving mean.
        sim = make_backend(sc, "sim", seed=i)
        assert np.allclose(sim._acc.mean_at(np.array([0.0, t1])), [start, end])
        # Everything else is drawn as without it: the change is drawn last.
        same = plain.sample(np.random.default_rng(i))
        assert same.acceptance.drift == [] and same.replace(acceptance=sc.acceptance) == sc
    with pytest.raises(ConfigError, match="acceptance_change"):
        dataclasses.replace(plain, acceptance_change=[-2.0, 0.0])


def test_a_live_engine_refuses_a_speed_drift_before_starting():
    sc = load_scenario(ROOT / "envs/live/tiny-poisson.yaml").replace(speed_drift=SpeedDrift(scale=1.2))
    with pytest.raises(ConfigError, match="speed_drift applies to the simulator"):
        make_backend(sc, "vllm")


def test_extends_takes_the_parents_keys_and_overrides_them(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"name: child\nextends: {CPU_TINY}\nduration_s: [5, 5]\n")
    parent, dist = load_distribution(CPU_TINY), load_distribution(child)
    assert dist.name == "child" and dist.duration_s == [5, 5]
    assert dist.workloads == parent.workloads and dist.prompt_mean == parent.prompt_mean
    # the parent's relative `base:` still names its scenario from another folder
    sc, ref = dist.sample(np.random.default_rng(0)), parent.sample(np.random.default_rng(0))
    assert sc.profile == ref.profile and sc.engine.num_kv_blocks == ref.engine.num_kv_blocks
    assert sc.workload.duration_s == 5


def test_extends_reports_a_missing_parent_and_a_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\nextends: b.yaml\n")
    with pytest.raises(ConfigError, match="extends: no distribution file"):
        load_distribution(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("name: b\nextends: a.yaml\n")
    with pytest.raises(ConfigError, match="extends: cycle"):
        load_distribution(tmp_path / "a.yaml")


def test_a_template_can_have_its_own_lengths(tmp_path):
    """Code-completion-like templates (long prompts, a few output tokens) draw their own
    length means; the others keep the distribution's."""
    dist = load_distribution(CPU_TINY)
    code = [t for t in dist.workloads if t.prompt_mean is not None]
    assert code and all(t.output_mean is not None for t in code)
    only_code = dataclasses.replace(dist, workloads=code)
    rng = np.random.default_rng(0)
    for _ in range(20):
        w = only_code.sample(rng).workload
        assert code[0].prompt_mean[0] <= w.prompt.mean <= code[0].prompt_mean[1]
        assert code[0].output_mean[0] <= w.output.mean <= code[0].output_mean[1]
        assert w.output.min <= max(1, round(w.output.mean / 2))  # a mean of 4 allows 2-token outputs
    others = dataclasses.replace(dist, workloads=[t for t in dist.workloads if t.prompt_mean is None])
    for _ in range(20):
        w = others.sample(rng).workload
        assert dist.prompt_mean[0] <= w.prompt.mean <= dist.prompt_mean[1]
    with pytest.raises(ConfigError, match=r"workloads\[\].output_mean: expected"):
        dataclasses.replace(code[0], output_mean=[12, 3])


def test_a_template_can_have_its_own_episode_length():
    """Long code-completion episodes (deep queues) beside the distribution's chat-length ones;
    a template without its own length draws exactly as before (one draw either way)."""
    dist = load_distribution(ROOT / "envs/distributions/cpu-tiny-longcode-train.yaml")
    parent = load_distribution(CPU_TINY)
    long = [t for t in dist.workloads if t.duration_s is not None]
    assert long and all(t.prompt_mean is not None for t in long)  # the code-like templates
    rng = np.random.default_rng(0)
    for _ in range(20):
        d = dataclasses.replace(dist, workloads=long).sample(rng).workload.duration_s
        assert long[0].duration_s[0] <= d <= long[0].duration_s[1] and d > parent.duration_s[1]
    chat = [t for t in dist.workloads if t.duration_s is None]
    a = dataclasses.replace(dist, workloads=chat).sample(np.random.default_rng(3))
    b = dataclasses.replace(parent, workloads=chat).sample(np.random.default_rng(3))
    assert a.workload == b.workload
    with pytest.raises(ConfigError, match=r"workloads\[\].duration_s: expected"):
        dataclasses.replace(long[0], duration_s=[240, 60])


def test_another_hosts_distribution_draws_the_same_scenarios_on_its_profile_at_its_loads():
    """cpu-tiny-avx2-train is cpu-tiny-train on the AVX2 host's profile with every rate
    x0.58: the same seed draws the same scenario, rates scaled, lengths and times kept."""
    here = load_distribution(CPU_TINY)
    there = load_distribution(ROOT / "envs/distributions/cpu-tiny-avx2-train.yaml")
    assert (there.profile, there.load_scale) == ("cpu-tiny-avx2", 0.58)
    rates = ("rate", "rate_on", "base_rate", "spike_rate")
    for seed in range(12):
        a, b = here.sample(np.random.default_rng(seed)), there.sample(np.random.default_rng(seed))
        assert (a.profile, b.profile) == ("cpu-tiny", "cpu-tiny-avx2")
        assert a.workload.kind == b.workload.kind and a.workload.prompt == b.workload.prompt
        assert a.workload.duration_s == b.workload.duration_s and a.engine == b.engine
        for name in rates:
            if getattr(a.workload, name) is not None:
                assert getattr(b.workload, name) == pytest.approx(0.58 * getattr(a.workload, name))
        assert b.load_profile().name == "cpu-tiny-avx2"


def test_a_bad_load_scale_names_the_field(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"name: child\nextends: {CPU_TINY}\nload_scale: 0\n")
    with pytest.raises(ConfigError, match="load_scale"):
        load_distribution(child)
