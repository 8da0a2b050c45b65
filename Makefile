# Thin entry points: each target calls one script or tool.
#   make demo    build both images, train on the bundled sample in the train container, serve the
#                model from the serve container and print a prediction
#   make test    every test (unit, integration, and e2e on a real Docker engine)
# Variables: BASE_IMAGE=auto|official|standin|<image> (see scripts/build_images.sh), TAG=latest
SHELL := /bin/bash
PY := .venv/bin/python
BASE_IMAGE ?= auto
TAG ?= latest

.PHONY: int8-check venv test test-fast e2e arm64-check images standin-base demo push bench lint format gpu-check gpu-check-dry

venv:
	scripts/dev_env.sh

test: venv
	$(PY) -m pytest

test-fast: venv
	$(PY) -m pytest -m "not e2e and not slow"

e2e: venv
	$(PY) -m pytest tests/e2e

# The slim serve image for linux/arm64 (Graviton), built and served under qemu: many minutes.
# int8 against fp32 on a model trained at 224 px (handwritten digit scans): ~30 min on 2 cores.
int8-check: venv
	DOGBREED_TEST_INT8_DIGITS=1 $(PY) -m pytest tests/train/test_export.py -k digits -s

arm64-check: venv
	DOGBREED_TEST_ARM64=1 $(PY) -m pytest tests/e2e/test_arm64_slim.py -s

images:
	scripts/build_images.sh --base-image $(BASE_IMAGE) --tag $(TAG)

standin-base:
	scripts/build_standin_base.sh

demo:
	BASE_IMAGE=$(BASE_IMAGE) TAG=$(TAG) local_test/demo.sh

push:
	scripts/build_and_push.sh --base-image $(BASE_IMAGE) --tag $(TAG)

bench: venv
	@set -e; for bench in benchmarks/bench_*.py; do \
	  if [[ $$bench == */bench_front.py ]] && ! command -v nginx >/dev/null; then \
	    echo "== $$bench skipped: it needs nginx (apt-get install -y nginx)"; continue; fi; \
	  echo "== $$bench"; $(PY) "$$bench"; done

# One GPU, under 8 minutes, offline; figures to $OUT/ or build/gpu-check.json (docs/development.md).
# No `venv` prerequisite: a GPU machine has its venv and may have no network.
gpu-check:
	$(PY) benchmarks/gpu_check.py

gpu-check-dry:
	$(PY) benchmarks/gpu_check.py --dry

lint: venv
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

format: venv
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks
