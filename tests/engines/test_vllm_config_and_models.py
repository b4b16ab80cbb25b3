"""Backend config validation and the tiny model pair (no vLLM needed for most of it)."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest

from rlspec.config import ConfigError
from rlspec.engines.vllm.config import VLLMBackendConfig


@pytest.fixture
def model_dirs(tmp_path):
    t, d = tmp_path / "t", tmp_path / "d"
    t.mkdir()
    d.mkdir()
    return str(t), str(d)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model": ""}, "vllm.model"),
        ({"draft_model": ""}, "vllm.draft_model"),
        ({"k_max": 0}, "vllm.k_max"),
        ({"max_num_seqs": 0}, "vllm.max_num_seqs"),
        ({"max_model_len": 4}, "vllm.max_model_len"),
        ({"max_num_batched_tokens": 1}, "vllm.max_num_batched_tokens"),
        ({"gpu_memory_utilization": 1.5}, "vllm.gpu_memory_utilization"),
        ({"kv_cache_memory_bytes": 10}, "vllm.kv_cache_memory_bytes"),
        ({"block_size": 0}, "vllm.block_size"),
        ({"initial_k": 9}, "vllm.initial_k"),
        ({"dtype": "int3"}, "vllm.dtype"),
        ({"enable_prefix_caching": True}, "vllm.enable_prefix_caching"),
    ],
)
def test_config_errors_name_the_field(model_dirs, changes, field):
    t, d = model_dirs
    kwargs = {"model": t, "draft_model": d, **changes}
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        VLLMBackendConfig(**kwargs)


def test_missing_model_folders_are_reported_when_the_backend_is_built(model_dirs):
    from rlspec.engines.vllm.backend import VLLMBackend

    t, d = model_dirs
    cfg = VLLMBackendConfig(model="/nonexistent/model", draft_model=d)  # parses fine
    with pytest.raises(ConfigError, match=r"vllm\.model"):
        VLLMBackend(cfg)
    (Path(t) / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"vllm\.draft_model"):
        VLLMBackend(VLLMBackendConfig(model=t, draft_model=d))


def test_config_from_scenario_and_yaml_mapping(model_dirs):
    from rlspec.config import from_dict
    from rlspec.sim.config import EngineConfig

    t, d = model_dirs

    class Scn:  # the attributes `from_scenario` reads
        engine = EngineConfig(max_num_seqs=8, max_num_batched_tokens=1024, k_max=3)
        seed = 7

    cfg = VLLMBackendConfig.from_scenario(Scn(), t, d, block_size=32)
    assert (cfg.k_max, cfg.max_num_seqs, cfg.max_num_batched_tokens, cfg.seed) == (3, 8, 1024, 7)
    assert cfg.block_size == 32 and cfg.speculative
    cfg2 = from_dict(VLLMBackendConfig, {"model": t, "k_max": 2})
    assert cfg2.k_max == 2 and not cfg2.speculative
    with pytest.raises(ConfigError, match="unknown"):
        from_dict(VLLMBackendConfig, {"model": t, "kmax": 2})


def test_vllm_backend_error_types():
    import rlspec.engines.vllm as rv

    assert issubclass(rv.RequestRejectedError, ValueError)
    for cls in (rv.VLLMStartupError, rv.EngineDiedError, rv.RequestRejectedError):
        assert issubclass(cls, rv.VLLMBackendError)


# ---------------------------------------------------------------------------- tiny pair
def _digest(folder) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


SMALL = dict(target_layers=3, hidden=128, num_heads=4, vocab_size=256, max_position_embeddings=256)


def test_tiny_pair_is_deterministic_and_drafter_is_the_targets_prefix(tmp_path):
    pytest.importorskip("transformers")
    from safetensors.torch import load_file

    from rlspec.engines.tiny_models import build_tiny_pair

    t1, d1 = build_tiny_pair(tmp_path / "a", seed=3, acceptance_knob=0.5, **SMALL)
    t2, d2 = build_tiny_pair(tmp_path / "b", seed=3, acceptance_knob=0.5, **SMALL)
    t3, _ = build_tiny_pair(tmp_path / "c", seed=4, acceptance_knob=0.5, **SMALL)
    assert _digest(t1) == _digest(t2) and _digest(d1) == _digest(d2)
    assert _digest(t1) != _digest(t3)
    tw = load_file(str(t1 / "model.safetensors"))
    dw = load_file(str(d1 / "model.safetensors"))
    assert set(dw) < set(tw)
    for name, w in dw.items():  # embeddings, layer 0, final norm, head: copied exactly
        assert (w == tw[name]).all(), name
    assert tw["model.layers.1.mlp.down_proj.weight"].abs().max() > 0
    assert (t1 / "tokenizer.json").is_file() and (d1 / "tokenizer.json").is_file()


def test_tiny_pair_tokenizer_round_trips(tmp_path):
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from rlspec.engines.tiny_models import build_tiny_pair

    target, _ = build_tiny_pair(tmp_path, **SMALL)
    tok = AutoTokenizer.from_pretrained(target)
    ids = tok("t10 t11 t200", add_special_tokens=False)["input_ids"]
    assert ids == [10, 11, 200]
    assert tok.decode(ids) == "t10 t11 t200"
    assert tok.eos_token_id == 2 and len(tok) == SMALL["vocab_size"]


def test_acceptance_knob_tunes_agreement(tmp_path):
    pytest.importorskip("transformers")
    from rlspec.engines.tiny_models import build_tiny_pair, greedy_agreement

    agree = {}
    for knob in (0.0, 0.05, 1.0):
        t, d = build_tiny_pair(tmp_path / str(knob), acceptance_knob=knob, **SMALL)
        agree[knob] = greedy_agreement(t, d, num_prompts=4, prompt_len=8, gen_len=24)
    assert agree[0.0] == 1.0  # later layers silenced: the target computes the drafter
    assert agree[0.0] > agree[0.05] > agree[1.0]


def test_tiny_pair_rejects_bad_shapes(tmp_path):
    from rlspec.engines.tiny_models import build_tiny_pair

    with pytest.raises(ValueError, match="hidden"):
        build_tiny_pair(tmp_path, hidden=64, num_heads=4)  # head dim 16 < 32
    with pytest.raises(ValueError, match="draft_layers"):
        build_tiny_pair(tmp_path, target_layers=2, draft_layers=2)
    with pytest.raises(ValueError, match="acceptance_knob"):
        build_tiny_pair(tmp_path, acceptance_knob=1.5)


def test_models_tiny_cli_entry(tmp_path, capsys):
    pytest.importorskip("transformers")
    from rlspec.engines import tiny_models

    parser = argparse.ArgumentParser()
    tiny_models.add_arguments(parser)
    args = parser.parse_args(
        [
            "--out",
            str(tmp_path),
            "--target-layers",
            "2",
            "--hidden",
            "64",
            "--num-heads",
            "2",
            "--vocab-size",
            "128",
            "--acceptance-knob",
            "0.2",
        ]
    )
    assert tiny_models.run(args) == 0
    out = capsys.readouterr().out
    assert "target:" in out and "draft:" in out
    assert (tmp_path / "target" / "config.json").is_file()
    assert (tmp_path / "draft" / "config.json").is_file()
