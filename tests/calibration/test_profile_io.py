"""Profile writing and loading, the saved-measurement round trip and `rlspec calibrate
--from-measurements`, all without vLLM."""

from __future__ import annotations

import argparse
import json
import struct

import pytest

from rlspec.calibration.acceptance import PositionCounts, WorkloadAcceptance
from rlspec.calibration.calibrate import fit_measurement, held_out_requests
from rlspec.calibration.cli import add_arguments, run
from rlspec.calibration.live import EngineFacts, LiveMeasurement
from rlspec.calibration.matching import Tally, matched_scenario, measured_acceptance
from rlspec.calibration.profile_writer import (
    build_profile,
    model_profile_from_hf,
    write_profile,
)
from rlspec.calibration.sweep import SweepContext
from rlspec.config import ConfigError
from rlspec.evaluate import evaluate
from rlspec.perf.checkpoint import checkpoint_param_count
from rlspec.perf.fit import TERMS
from rlspec.perf.profile import KVPool, available_profiles, load_profile
from rlspec.perf.step_time import StepTimeModel
from rlspec.scenario import load_scenario
from rlspec.sim.kv import BlockPool
from rlspec.sim.simulator import Simulator
from tests.calibration.test_plan_and_samples import TRUTH, synthetic_records


def fake_hf(path, layers: int, hidden: int = 64, heads: int = 4, kv_heads: int = 2,
            vocab: int = 128, dtype: str = "bfloat16"):  # fmt: skip
    path.mkdir(parents=True)
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "num_hidden_layers": layers,
        "vocab_size": vocab,
        "torch_dtype": dtype,
    }
    (path / "config.json").write_text(json.dumps(cfg))
    shapes = {"embed": [vocab, hidden], "head": [vocab, hidden],
              **{f"l{i}": [hidden, hidden] for i in range(layers)}}  # fmt: skip
    header, off = {}, 0
    for name, shape in shapes.items():
        n = shape[0] * shape[1] * 2
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header).encode()
    (path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(off))
    return path, sum(a * b for a, b in shapes.values())


def test_model_profile_from_hf_config(tmp_path):
    d, n = fake_hf(tmp_path / "t", layers=3)
    assert checkpoint_param_count(d) == n
    m = model_profile_from_hf(d)
    assert (m.params, m.layers, m.kv_heads, m.head_dim, m.dtype_bytes) == (n, 3, 2, 16, 2)
    assert model_profile_from_hf(d, dtype="float32").dtype_bytes == 4


def test_profile_round_trip_is_usable_everywhere(tmp_path):
    t, _ = fake_hf(tmp_path / "t", layers=4)
    dr, _ = fake_hf(tmp_path / "d", layers=1)
    prof = build_profile("unit-cpu", model_profile_from_hf(t), model_profile_from_hf(dr), TRUTH,
                         transfer_s=0.03, host_bandwidth=10e9, sources={"fitted": "synthetic"})  # fmt: skip
    path = write_profile(tmp_path / "unit-cpu.yaml", prof, header="a test profile")
    assert path.read_text().startswith("# a test profile\n")
    loaded = load_profile(path)
    assert loaded == prof and loaded.kind == "fitted" and loaded.iteration_overhead_s == 0.0
    cost = StepTimeModel(loaded)
    assert cost.transfer_s == pytest.approx(0.03)
    f = TRUTH
    want = (f.target_base_s + f.target_per_token_s * 13 + f.target_per_context_s * 500
            + 2 * f.draft_base_s + f.draft_per_token_s * (13 + 4) + 2 * f.draft_per_context_s * 500
            + f.draft_propose_s)  # fmt: skip
    assert cost.iteration(4, 2, 1, 500, True) == pytest.approx(want)
    # A scenario names it by path and the simulator runs on it.
    sc = load_scenario("envs/live/tiny-poisson.yaml").replace(profile=str(path), base_dir="")
    res = evaluate(sc.shortened(5.0), ["static:0", "static:3", "goodput"])
    assert all(m.completed == m.arrived > 0 for m in res.values())


@pytest.mark.parametrize("field,value", [("block_size", 0), ("num_blocks", 1), ("block_bytes", 0)])
def test_kv_pool_rejects_an_impossible_pool(field, value):
    kw = {"block_size": 128, "num_blocks": 279, "block_bytes": 1024, field: value}
    with pytest.raises(ConfigError, match=f"kv_pool.{field}"):
        KVPool(**kw)


def test_every_shipped_kv_pool_holds_both_models_kv_per_block():
    """A recorded pool's block is the target's and the drafter's K and V for block_size
    tokens at the profile's dtype: the bytes vLLM reported are the models' own."""
    pools = {n: load_profile(n) for n in available_profiles() if load_profile(n).kv_pool is not None}
    assert {"cpu-tiny", "cpu-tiny-avx2", "cpu-tiny-avx512", "cpu-tiny-amx"} <= set(pools)
    for name, prof in pools.items():
        per_token = prof.target.kv_bytes_per_token + prof.draft.kv_bytes_per_token
        assert prof.kv_pool.block_bytes == per_token * prof.kv_pool.block_size, name


def test_measurement_round_trip_and_fit(tmp_path, h100):
    facts = EngineFacts(128, 233, 5, 8912896, "bfloat16", 9.0, 4, 16, 2048, 2048)
    recs = synthetic_records(h100, noise=0.002, spikes=0.0)
    m = LiveMeasurement(recs, [("offload", 0.01), ("reload", 0.05), ("reload", 0.07)], facts, 12.0,
                        other_load=[0.0], reruns=0)  # fmt: skip
    back = LiveMeasurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back.records == m.records and back.facts == facts and back.transfers == m.transfers
    t, _ = fake_hf(tmp_path / "t", layers=4)
    dr, _ = fake_hf(tmp_path / "d", layers=1)
    # Synthetic records carry no drafts; give one step per-position counts.
    recs[-5] = recs[-5].__class__(**{**recs[-5].__dict__, "drafted_per_pos": (10, 10),
                                     "accepted_per_pos": (6, 3)})  # fmt: skip
    m.records = recs
    res = fit_measurement(m, t, dr, name="x", host_bandwidth=10e9)
    for name in TERMS:
        assert getattr(res.profile.fitted, name) == pytest.approx(getattr(TRUTH, name), rel=0.05)
    assert (res.offload_s, res.reload_s) == pytest.approx((0.01, 0.06))
    assert StepTimeModel(res.profile).transfer_s == pytest.approx(0.035)
    # The engine's KV pool travels with the profile, so a live run can start the same one.
    assert res.profile.kv_pool == KVPool(128, 233, 8912896)
    assert load_profile(write_profile(tmp_path / "x.yaml", res.profile)).kv_pool == res.profile.kv_pool
    assert (res.profile.kv_pool.usable_blocks, res.profile.kv_pool.memory_bytes) == (232, 233 * 8912896)
    acc = measured_acceptance(res.profile)
    assert acc is not None and acc.mean == pytest.approx(res.acceptance.mean, abs=1e-4)


def _measured_with(h100, workload: WorkloadAcceptance) -> LiveMeasurement:
    """Synthetic calibration iterations (one step with drafts counted by position) and one
    workload's held-out acceptance, through a JSON round trip as `--from-measurements` reads them."""
    facts = EngineFacts(128, 233, 5, 8912896, "bfloat16", 9.0, 4, 16, 2048, 2048)
    recs = synthetic_records(h100, noise=0.002, spikes=0.0)
    recs[-5] = recs[-5].__class__(**{**recs[-5].__dict__, "drafted_per_pos": (1000, 1000),
                                     "accepted_per_pos": (560, 320)})  # fmt: skip
    m = LiveMeasurement(recs, [("offload", 0.01), ("reload", 0.05)], facts, 1.0, workload_acceptance=[workload])
    return LiveMeasurement.from_dict(json.loads(json.dumps(m.to_dict())))


def _fit(tmp_path, measurement: LiveMeasurement):
    t, _ = fake_hf(tmp_path / "t", layers=4)
    dr, _ = fake_hf(tmp_path / "d", layers=1)
    return fit_measurement(measurement, t, dr, name="x", host_bandwidth=10e9)


def test_a_workloads_measured_acceptance_reaches_its_matched_scenario(tmp_path, h100):
    lengths = tuple((400, 6) for _ in range(80))
    azure = WorkloadAcceptance("tiny-azure-code", lengths, 4, PositionCounts([2000] * 4, [1300, 880, 600, 420]))
    back = _measured_with(h100, azure)
    assert back.workload_acceptance == [azure]
    res = _fit(tmp_path, back)
    path = write_profile(tmp_path / "x.yaml", res.profile)
    prof = load_profile(path)
    pooled, own = measured_acceptance(prof), measured_acceptance(prof, "tiny-azure-code")
    assert own.mean == pytest.approx(res.workload_acceptance["tiny-azure-code"].mean, abs=1e-4)
    assert own.mean > pooled.mean + 0.05  # it accepts more than the pooled probes
    assert own.concentration == pooled.concentration
    assert own.position_decay == pytest.approx(res.workload_acceptance["tiny-azure-code"].position_decay, abs=1e-4)
    assert own.position_decay != pooled.position_decay  # its own counts decay otherwise
    assert measured_acceptance(prof, "tiny-poisson") == pooled  # not measured on its own
    assert res.summary()["acceptance_by_workload"]["tiny-azure-code"]["requests"] == 80
    ctx = SweepContext.open(load_scenario("envs/live/tiny-poisson.yaml"), path, live=False)
    assert ctx.match(load_scenario("envs/live/tiny-azure-code.yaml")).acceptance == own
    assert ctx.match(load_scenario("envs/live/tiny-poisson.yaml")).acceptance == pooled


def test_a_workloads_spread_between_requests_reaches_its_matched_scenario(tmp_path, h100):
    """Where the engine reported each request's verify steps, the profile keeps the spread
    they show, and a matched simulator of that workload draws its requests' acceptance so."""
    # 120 requests whose steps are alike: no spread between them to find.
    steps = ((4,) * 10, (1, 0, 2, 1, 0, 4, 0, 1, 3, 0))
    drafted, accepted = steps
    counts = PositionCounts([120 * len(drafted)] * 4, [120 * sum(a > j for a in accepted) for j in range(4)])
    chat = WorkloadAcceptance("tiny-poisson", tuple((96, 22) for _ in range(120)), 4, counts, (steps,) * 120)
    back = _measured_with(h100, chat)
    assert back.workload_acceptance == [chat] and back.workload_acceptance[0].per_request == (steps,) * 120
    res = _fit(tmp_path, back)
    spread = res.workload_spread["tiny-poisson"]
    assert spread.concentration > 1000 and spread.requests == 120 and spread.steps == 1200
    assert res.workload_acceptance["tiny-poisson"].concentration == spread.concentration
    assert res.summary()["acceptance_spread_by_workload"]["tiny-poisson"]["requests"] == 120
    prof = load_profile(write_profile(tmp_path / "x.yaml", res.profile))
    own = measured_acceptance(prof, "tiny-poisson")
    assert own.concentration == pytest.approx(spread.concentration, rel=1e-3)
    assert measured_acceptance(prof).concentration == 20.0  # the pooled probes keep theirs


def test_held_out_requests_have_the_workloads_lengths_arriving_at_once():
    sc = load_scenario("envs/live/tiny-poisson.yaml")
    held = held_out_requests(sc, 30)
    assert len(held) == 30 and all(r.arrival_s == 0.0 for r in held)
    assert [r.request_id for r in held] == list(range(30))
    assert [(r.prompt_len, r.output_len) for r in held] != [(r.prompt_len, r.output_len) for r in sc.requests()[:30]]
    assert [(r.prompt_len, r.output_len) for r in held] == [
        (r.prompt_len, r.output_len) for r in sc.requests(sc.seed + 1)[:30]
    ]


def test_held_out_requests_beyond_a_trace_replay_its_rows_again_with_new_ids():
    """The Azure code scenario replays 150 trace rows; a larger acceptance sample serves
    those lengths again (new ids, so other prompt tokens), not rows its evaluations never see."""
    sc = load_scenario("envs/live/tiny-azure-code.yaml")
    own = [(r.prompt_len, r.output_len) for r in sc.requests()]
    assert len(own) == 150
    held = held_out_requests(sc, 400)
    assert [r.request_id for r in held] == list(range(400)) and all(r.arrival_s == 0.0 for r in held)
    assert [(r.prompt_len, r.output_len) for r in held] == (own * 3)[:400]


def test_cli_refits_saved_measurements(tmp_path, h100, capsys):
    facts = EngineFacts(128, 233, 5, 8912896, "bfloat16", 9.0, 4, 16, 2048, 2048)
    recs = synthetic_records(h100, noise=0.002, spikes=0.02)
    recs.append(recs[0].__class__(**{**recs[-1].__dict__, "repeat": 0, "drafted_per_pos": (8, 8, 8),
                                    "accepted_per_pos": (5, 3, 1)}))  # fmt: skip
    saved = tmp_path / "m.json"
    saved.write_text(json.dumps(LiveMeasurement(recs, [("offload", 0.01), ("reload", 0.05)], facts, 1.0).to_dict()))
    t, _ = fake_hf(tmp_path / "t", layers=4)
    dr, _ = fake_hf(tmp_path / "d", layers=1)
    p = argparse.ArgumentParser()
    add_arguments(p)
    out = tmp_path / "prof" / "cpu-unit.yaml"
    args = p.parse_args(["--model", str(t), "--draft-model", str(dr), "--from-measurements", str(saved),
                         "--out", str(out), "--json", str(tmp_path / "r.json")])  # fmt: skip
    assert run(args) == 0
    text = capsys.readouterr().out
    for name in TERMS:
        assert name in text
    assert "acceptance: mean accepted/drafted" in text
    prof = load_profile(out)
    assert prof.name == "cpu-unit" and prof.kind == "fitted"
    report = json.loads((tmp_path / "r.json").read_text())
    assert {t["term"] for t in report["terms"]} == set(TERMS)


def test_matched_scenario_has_the_live_kv_capacity_and_acceptance(tmp_path):
    t, _ = fake_hf(tmp_path / "t", layers=16, hidden=1024, heads=16, kv_heads=16)
    dr, _ = fake_hf(tmp_path / "d", layers=1, hidden=1024, heads=16, kv_heads=16)
    prof = build_profile("m", model_profile_from_hf(t), model_profile_from_hf(dr), TRUTH,
                         transfer_s=0.03, host_bandwidth=10e9,
                         sources={"acceptance.mean": "0.52", "acceptance.position_decay": "0.95"})  # fmt: skip
    path = write_profile(tmp_path / "m.yaml", prof)
    live = load_scenario("envs/live/tiny-poisson.yaml")
    acc = measured_acceptance(load_profile(path))
    assert (acc.mean, acc.position_decay, acc.concentration) == (0.52, 0.95, 20.0)
    sc = matched_scenario(live, block_size=128, num_kv_blocks=232, acceptance=acc, profile=path)
    assert sc.requests() == live.requests()  # same requests
    assert (sc.engine.max_num_seqs, sc.engine.max_num_batched_tokens) == (16, 2048)
    pool = BlockPool.for_profile(sc.load_profile(), sc.engine)
    assert pool.total_blocks * sc.engine.block_size == 232 * 128  # same KV tokens as live
    sim = Tally(Simulator(sc.load_profile(), sc.engine, sc.acceptance, seed=0))
    assert sim.cost is sim.inner.cost  # controllers see the simulator's cost model
    sim.start(sc.shortened(3.0).requests())
    from rlspec.control.action import Action

    sim.set_action(Action(k=3))
    while not sim.finished:
        sim.step()
    assert sim.drafted > 0 and 0.2 < sim.acceptance < 0.5


def test_a_measurements_host_reaches_its_profile_and_its_bandwidth_the_refit(tmp_path, h100):
    from rlspec.perf.host import HostFingerprint

    host = HostFingerprint("cpu", "AMD EPYC", 2, ("avx2", "fma"), 31.6e9, "float32")
    facts = EngineFacts(128, 233, 5, 8912896, "float32", 9.0, 4, 16, 2048, 2048)
    recs = synthetic_records(h100, noise=0.002, spikes=0.0)
    recs[-5] = recs[-5].__class__(**{**recs[-5].__dict__, "drafted_per_pos": (10, 10),
                                     "accepted_per_pos": (6, 3)})  # fmt: skip
    m = LiveMeasurement(recs, [("offload", 0.01), ("reload", 0.05)], facts, 1.0, host=host)
    back = LiveMeasurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back.host == host
    t, _ = fake_hf(tmp_path / "t", layers=4)
    dr, _ = fake_hf(tmp_path / "d", layers=1)
    res = fit_measurement(back, t, dr, name="x")  # no --host-bandwidth: the measured host's
    assert res.host_bandwidth == 31.6e9 and res.profile.hardware.host_link_bandwidth == 31.6e9
    assert res.profile.hardware.name == "AMD EPYC x2 cores" and list(res.summary()["host"]["isa"]) == ["avx2", "fma"]
    prof = load_profile(write_profile(tmp_path / "x.yaml", res.profile))
    assert prof.host == host
    old = m.to_dict()
    del old["host"]  # saved before hosts were recorded: the profile records none
    assert fit_measurement(LiveMeasurement.from_dict(old), t, dr, host_bandwidth=10e9).profile.host is None


def test_a_live_sweep_refuses_a_profile_of_another_kind_of_host(tmp_path, caplog):
    import dataclasses

    from rlspec.calibration.matching import at_profile_dtype
    from rlspec.calibration.sweep import HostMismatchError, check_host
    from rlspec.perf.host import local_device, this_host

    t, _ = fake_hf(tmp_path / "t", layers=4)
    dr, _ = fake_hf(tmp_path / "d", layers=1)
    here = this_host("float32", local_device())
    other = dataclasses.replace(here, isa=(*here.isa, "amx_bf16") if "amx_bf16" not in here.isa else ())
    base = build_profile("here", model_profile_from_hf(t), model_profile_from_hf(dr), TRUTH,
                         transfer_s=0.03, host_bandwidth=10e9)  # fmt: skip
    same, elsewhere = dataclasses.replace(base, host=here), dataclasses.replace(base, host=other)
    assert check_host(same) == []
    with pytest.raises(HostMismatchError, match="fitted on another kind of host .*--allow-host-mismatch"):
        check_host(elsewhere)
    assert check_host(elsewhere, allow=True)[0].startswith("CPU ")
    assert "another kind of host" in caplog.text
    assert check_host(base) == [] and "records no host fingerprint" in caplog.text
    # The live engine runs at the dtype the profile was fitted at, and a matched scenario too.
    live = load_scenario("envs/live/tiny-poisson.yaml")
    assert live.live.dtype == "auto" and at_profile_dtype(live, same).live.dtype == "float32"
    assert at_profile_dtype(live, base) == live
    path = write_profile(tmp_path / "here.yaml", same)
    assert matched_scenario(live, block_size=128, num_kv_blocks=232, profile=path).live.dtype == "float32"
