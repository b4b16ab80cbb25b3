"""Engine start-up failures become VLLMStartupError and leave nothing behind."""

from __future__ import annotations

import json
import shutil

import pytest

import rlspec.engines.vllm as rv  # loads Intel OpenMP before vLLM (see _preload.py)

pytest.importorskip("vllm")

from rlspec.engines.vllm.backend import VLLMBackend  # noqa: E402
from rlspec.workload.request import Request  # noqa: E402

pytestmark = pytest.mark.vllm

SMALL_ENGINE = dict(
    k_max=2,
    max_num_seqs=4,
    max_model_len=256,
    block_size=32,
    kv_cache_memory_bytes=8 << 20,
    dtype="float32",
)


def _children() -> list:
    import psutil

    return psutil.Process().children(recursive=True)


def test_broken_model_folder_raises_startup_error_then_engine_works(tiny_pair, tmp_path):
    target, draft = tiny_pair
    broken = tmp_path / "broken"
    shutil.copytree(target, broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["num_attention_heads"] = 3  # hidden 256 is not divisible by 3
    (broken / "config.json").write_text(json.dumps(cfg))
    before = _children()
    b = VLLMBackend(rv.VLLMBackendConfig(model=str(broken), draft_model=draft, **SMALL_ENGINE))
    with pytest.raises(rv.VLLMStartupError, match="failed to start"):
        b.start([Request(0, 0.0, 4, 4)])
    b.close()
    assert len(_children()) == len(before)  # in-process engine: no orphans

    # the process is clean: a good engine starts and runs afterwards
    with VLLMBackend(
        rv.VLLMBackendConfig(model=target, draft_model=draft, **SMALL_ENGINE), start_engine=True
    ) as ok:
        ok.start([Request(0, 0.0, 8, 6), Request(1, 0.01, 8, 6)])
        while not ok.finished:
            ok.step()
        assert [r.num_generated for r in ok.records()] == [6, 6]
    assert len(_children()) == len(before)
