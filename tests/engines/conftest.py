"""Fixtures for the live-vLLM tests: one tiny model pair per session (built locally)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """(target_dir, draft_dir) of the small test pair (TEST_SPEC), built once per session."""
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from rlspec.engines.tiny_models import TEST_SPEC, build_from_spec

    out = tmp_path_factory.mktemp("tiny_pair")
    target, draft = build_from_spec(out, TEST_SPEC)
    return str(target), str(draft)
