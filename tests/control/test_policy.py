"""The frozen policy file and its controller, without torch (policies built from numpy)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rlspec.config import ConfigError
from rlspec.control.action import Action
from rlspec.control.base import ControlContext
from rlspec.control.policy import FrozenPolicy, PolicyController, PolicyLoadError, save_policy
from rlspec.control.registry import make_controller
from rlspec.evaluate import evaluate
from rlspec.features import FEATURE_NAMES, NUM_FEATURES, FeatureTracker
from rlspec.perf.profile import load_profile
from rlspec.perf.step_time import StepTimeModel
from rlspec.scenario import load_scenario


def write_policy(path, k_max=4, sizes=(64, 64), activation="tanh", normalize=True, seed=0):
    rng = np.random.default_rng(seed)
    dims = [NUM_FEATURES, *sizes]
    hidden = [
        (rng.normal(0, 1 / np.sqrt(i), (o, i)).astype(np.float32), rng.normal(0, 0.1, o))
        for i, o in zip(dims[:-1], dims[1:], strict=True)
    ]
    head = (rng.normal(0, 1, (k_max + 2, dims[-1])), rng.normal(0, 0.1, k_max + 2))
    stats = {}
    if normalize:
        stats = dict(
            obs_mean=rng.normal(size=NUM_FEATURES), obs_var=rng.uniform(0.1, 4, NUM_FEATURES)
        )
    return save_policy(path, hidden, head, activation, obs_clip=3.0, **stats)


def rewrite(path, drop=(), **meta_changes):
    """Re-save `path` with meta keys changed and arrays dropped (what another version wrote)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    for key, value in meta_changes.items():
        if isinstance(value, dict):
            meta[key].update(value)
        else:
            meta[key] = value
    arrays["meta"] = np.array(json.dumps(meta))
    arrays = {k: v for k, v in arrays.items() if k not in drop}
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def reference_act(path, obs):
    """The decision spelled out plainly from the file."""
    with np.load(path) as z:
        a = {k: z[k] for k in z.files}
    m = json.loads(str(a["meta"]))
    x = obs.astype(np.float64)
    if m["normalize"]:
        x = np.clip(
            (x - a["obs_mean"]) / np.sqrt(a["obs_var"] + m["epsilon"]),
            -m["obs_clip"],
            m["obs_clip"],
        )
    f = np.tanh if m["activation"] == "tanh" else (lambda v: np.maximum(v, 0))
    i = 0
    while f"w{i}" in a:
        x = f(a[f"w{i}"] @ x + a[f"b{i}"])
        i += 1
    return int(np.argmax(a["w_out"] @ x + a["b_out"]))


@pytest.fixture
def ctx(h100):
    return ControlContext(k_max=4, max_num_seqs=256, cost=StepTimeModel(h100), decision_interval=8)


@pytest.mark.parametrize(
    "sizes, activation, normalize",
    [
        ((64, 64), "tanh", True),
        ((32, 32, 32), "relu", True),
        ((8,), "tanh", False),
        ((), "relu", True),
    ],
)
def test_act_is_the_plain_mlp_argmax(tmp_path, sizes, activation, normalize):
    path = write_policy(tmp_path / "p.npz", sizes=sizes, activation=activation, normalize=normalize)
    p = FrozenPolicy(path)
    assert (p.k_max, p.activation, p.normalize, p.hidden_sizes) == (
        4,
        activation,
        normalize,
        list(sizes),
    )
    obs = (np.random.default_rng(1).normal(size=(500, NUM_FEATURES)) * 3).astype(np.float32)
    got = [p.act(o) for o in obs]
    assert got == [reference_act(path, o) for o in obs]
    assert len(set(got)) > 2
    with pytest.raises(ValueError, match="shape"):
        p.act(np.zeros(NUM_FEATURES + 1, np.float32))


def test_other_schema_version_is_refused_with_a_clear_message(tmp_path):
    path = rewrite(write_policy(tmp_path / "p.npz"), schema={"version": 99})
    with pytest.raises(PolicyLoadError, match=r"v99.*rlspec-features' v1.*retrain") as e:
        FrozenPolicy(path)
    assert str(path) in str(e.value)


def test_other_feature_list_is_refused_naming_the_difference(tmp_path):
    feats = [*FEATURE_NAMES[:-1], "queue_age"]
    path = rewrite(write_policy(tmp_path / "p.npz"), schema={"features": feats})
    with pytest.raises(
        PolicyLoadError, match=rf"not expected: \['queue_age'\].*{FEATURE_NAMES[-1]}"
    ):
        FrozenPolicy(path)
    path = rewrite(
        write_policy(tmp_path / "q.npz"), schema={"features": list(reversed(FEATURE_NAMES))}
    )
    with pytest.raises(PolicyLoadError, match="order"):
        FrozenPolicy(path)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(format="something-else"), "format"),
        (dict(format_version=2), "format_version 2"),
        (dict(k_max=3), "action_map.*k_max=3"),
        (dict(k_max=3, action_map=["k=0", "k=1", "k=2", "k=3", "offload"]), "6 outputs, k_max=3"),
        (dict(activation="gelu"), "activation"),
    ],
)
def test_bad_meta_is_refused(tmp_path, change, match):
    path = rewrite(write_policy(tmp_path / "p.npz"), **change)
    with pytest.raises(PolicyLoadError, match=match):
        FrozenPolicy(path)


def test_corrupt_files_are_refused_naming_the_file(tmp_path):
    good = write_policy(tmp_path / "good.npz")
    cases = {
        "random.npz": np.random.default_rng(0).bytes(4096),
        "truncated.npz": good.read_bytes()[: good.stat().st_size // 2],
        "empty.npz": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    np.save(tmp_path / "array.npy", np.zeros(3))
    paths = [tmp_path / n for n in cases] + [tmp_path / "array.npy", tmp_path / "absent.npz"]
    paths.append(rewrite(write_policy(tmp_path / "no_head.npz"), drop=("w_out",)))
    paths.append(rewrite(write_policy(tmp_path / "no_b0.npz"), drop=("b0",)))
    paths.append(rewrite(write_policy(tmp_path / "no_meta.npz"), drop=("meta",)))
    for path in paths:
        with pytest.raises(PolicyLoadError) as e:
            FrozenPolicy(path)
        assert str(path) in str(e.value), str(e.value)
    with pytest.raises(PolicyLoadError, match="w_out"):
        FrozenPolicy(tmp_path / "no_head.npz")


def test_registry_loads_a_run_directory_or_a_file(tmp_path, ctx):
    run = tmp_path / "run"
    run.mkdir()
    write_policy(run / "policy.npz")
    for spec in (f"policy:{run}", f"policy:{run / 'policy.npz'}"):
        c = make_controller(spec)
        assert isinstance(c, PolicyController) and c.name == spec
        c.reset(ctx)
        assert isinstance(c.decide(FeatureTracker(4, 256, 16, StepTimeModel(load_profile("h100-llama8b-1b")))), Action)


def test_run_directory_without_export_says_how_to_export(tmp_path):
    (tmp_path / "model.zip").write_bytes(b"PK")
    with pytest.raises(PolicyLoadError, match=f"run `rlspec export {tmp_path}`"):
        make_controller(f"policy:{tmp_path}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no policy.npz") as e:
        make_controller(f"policy:{empty}")
    assert "rlspec export" not in str(e.value)


def test_k_max_mismatch_is_a_config_error(tmp_path, ctx):
    c = PolicyController.load(write_policy(tmp_path / "p.npz", k_max=3))
    with pytest.raises(ConfigError, match="k_max=3.*k_max=4"):
        c.reset(ctx)


class FixedObs:
    def __init__(self, v):
        self.v = v

    def vector(self):
        return self.v


def test_decide_returns_valid_actions_including_offload(tmp_path, ctx):
    c = PolicyController.load(write_policy(tmp_path / "p.npz"))
    c.reset(ctx)
    obs = (np.random.default_rng(2).normal(size=(300, NUM_FEATURES)) * 3).astype(np.float32)
    actions = [c.decide(FixedObs(o)) for o in obs]
    assert all(isinstance(a, Action) and 0 <= a.index(4) <= 5 for a in actions)
    assert [a.index(4) for a in actions] == [c.policy.act(o) for o in obs]
    assert any(a.offload for a in actions) and any(a.k > 0 for a in actions)


def test_policy_runs_an_evaluation_episode(tmp_path):
    write_policy(tmp_path / "policy.npz")
    s = load_scenario("steady-low")
    s = s.replace(workload=s.workload.__class__(**{**s.workload.__dict__, "duration_s": 5}))
    m = evaluate(s, [f"policy:{tmp_path}"])[f"policy:{tmp_path}"]
    assert m.completed == m.arrived > 0


def test_deciding_needs_neither_torch_nor_sb3(tmp_path):
    path = write_policy(tmp_path / "p.npz")
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from rlspec.control.base import ControlContext
        from rlspec.control.registry import make_controller
        from rlspec.features import FeatureTracker
        from rlspec.perf.profile import load_profile
        from rlspec.perf.step_time import StepTimeModel
        c = make_controller("policy:{path}")
        c.reset(ControlContext(k_max=4, max_num_seqs=256, cost=None, decision_interval=8))
        c.decide(FeatureTracker(4, 256, 16, StepTimeModel(load_profile("h100-llama8b-1b"))))
        bad = [m for m in ("torch", "stable_baselines3") if m in sys.modules]
        assert not bad, bad
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
