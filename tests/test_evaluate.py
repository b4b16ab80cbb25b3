"""The comparison loop and the commands built on it."""

import json

import pytest

from rlspec.cli import main
from rlspec.evaluate import evaluate
from rlspec.scenario import load_scenario

KEYS = {"mean_latency_s", "p50_latency_s", "p99_latency_s", "ttft_p50_s", "ttft_p99_s",
        "tpot_p50_s", "tpot_p99_s", "throughput_tok_s", "slo_attainment", "arrived",
        "completed", "preemptions", "mean_k", "offload_frac"}  # fmt: skip


def short(name: str, **workload):
    s = load_scenario(name)
    return s.replace(workload=s.workload.__class__(**{**s.workload.__dict__, **workload}))


def test_speculation_wins_at_low_load_and_loses_near_saturation():
    low = evaluate(short("steady-low", duration_s=60), ["static:0", "static:4", "goodput"])
    assert low["static:0"].mean_latency_s >= 1.5 * low["goodput"].mean_latency_s
    high = evaluate(
        short("steady-low", duration_s=60, rate=30.0), ["static:0", "static:4", "goodput"]
    )
    assert high["static:4"].mean_latency_s > high["static:0"].mean_latency_s
    assert high["goodput"].mean_latency_s < high["static:0"].mean_latency_s


def test_same_seed_same_metrics_and_every_request_completes():
    s = short("bursty", duration_s=40)
    a = evaluate(s, ["nightjar", "latency-model"], seed=3)
    b = evaluate(s, ["nightjar", "latency-model"], seed=3)
    assert {k: v.as_dict() for k, v in a.items()} == {k: v.as_dict() for k, v in b.items()}
    for m in a.values():
        assert m.completed == m.arrived > 0


def test_eval_cli_writes_the_documented_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["eval", "--scenario", "envs/steady-low.yaml", "--controllers", "static:0,goodput",
               "--json", str(out)])  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["scenario"] == "steady-low"
    assert set(data["results"]) == {"static:0", "goodput"}
    for metrics in data["results"].values():
        assert set(metrics) == KEYS
    assert "goodput" in capsys.readouterr().out


def test_profile_flag_swaps_the_cost_model(tmp_path):
    """A fitted profile file (what `rlspec calibrate` writes) or a shipped name replaces the
    scenario's cost model: the CPU pair is far slower than the H100 one on the same work."""
    import shutil

    from rlspec.perf.profile import PROFILE_DIR

    fitted = tmp_path / "my-pair.yaml"
    shutil.copy(PROFILE_DIR / "cpu-tiny.yaml", fitted)
    lat = {}
    for name, profile in (("h100", None), ("file", str(fitted)), ("name", "cpu-tiny")):
        out = tmp_path / f"{name}.json"
        argv = ["eval", "--scenario", "envs/steady-low.yaml", "--controllers", "static:0",
                "--json", str(out)] + ([] if profile is None else ["--profile", profile])  # fmt: skip
        assert main(argv) == 0
        lat[name] = json.loads(out.read_text())["results"]["static:0"]["mean_latency_s"]
    assert lat["file"] == lat["name"]
    assert lat["file"] > 3 * lat["h100"]


def test_sweep_cli_plots_latency_vs_rate(tmp_path):
    png = tmp_path / "sweep.png"
    rc = main(["sweep", "--scenario", "envs/steady-low.yaml", "--rates", "2,10",
               "--controllers", "static:0,static:2", "--plot", str(png), "--json", str(tmp_path / "s.json")])  # fmt: skip
    assert rc == 0
    assert png.stat().st_size > 10_000
    data = json.loads((tmp_path / "s.json").read_text())
    assert len(data["results"]["static:0"]) == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--scenario", "envs/steady-low.yaml", "--controllers", "magic"], "allowed"),
        (["eval", "--scenario", "envs/nope.yaml"], "no such file"),
        (["sweep", "--scenario", "envs/steady-low.yaml", "--rates", "a,b"], "--rates"),
        (["eval", "--scenario", "envs/steady-low.yaml", "--profile", "no-such-gpu"], "unknown profile"),
    ],
)
def test_cli_errors_are_clear(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
