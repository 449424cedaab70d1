# Two commands a new user needs: `make run` and `make test`. Both set up .venv when absent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# Local mode (no login, trusted checkpoints run code): loopback only unless you say otherwise.
ADDRESS ?= 127.0.0.1
# The bundled runs live inside the repo's ignored folder unless the user points elsewhere.
export CLASSLENS_RUNS_DIR ?= $(CURDIR)/.classlens/runs
export CLASSLENS_CACHE_DIR ?= $(CURDIR)/.classlens/cache

.PHONY: run test test-fast screenshots lint typecheck format sample bench clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

## Serve the dashboard on the bundled sample at http://localhost:$(PORT)
run: $(VENV)/.installed
	$(PY) -m core.hosting.settings --address $(ADDRESS)
	$(PY) -m core.engine.sample
	$(PY) -m streamlit run app.py --server.port $(PORT) --server.address $(ADDRESS) \
		--server.headless true \
		--browser.gatherUsageStats false

# Tests write bytecode even where the environment turns it off (PYTHONDONTWRITEBYTECODE=1):
# otherwise every xdist worker and every CLI child recompiles core/ and pytest re-rewrites the
# asserts of every test module, each run (about 7 s CPU per worker). __pycache__/ is ignored.
test test-fast screenshots: export PYTHONDONTWRITEBYTECODE =

## Lint, then the whole test suite (unit, CLI, sample models, app, browser) on two workers;
## every browser test runs in one of them (one server, one Chromium)
test: $(VENV)/.installed lint
	$(PY) -m pytest -q -n 2 --dist loadgroup

## Everything but the slow and browser marks: 35-40 s on a quiet 2-core box (BENCHMARKS.md, "Test suite")
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 -m "not slow and not browser"

## Browser tests with screenshots saved to tests/screenshots/ (README pictures come from there)
screenshots: $(VENV)/.installed
	CLASSLENS_SCREENSHOTS=1 $(PY) -m pytest -q -m browser

## Style, layers (import-linter contracts) and static types (mypy on core/ and ui/)
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

## Static types of core/ and ui/ ([tool.mypy] in pyproject.toml)
typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Benchmarks (prints ratios; figures recorded in BENCHMARKS.md)
bench: $(VENV)/.installed
	$(PY) -m bench

## Rebuild sample_data/ (images + three checkpoints) deterministically
sample: $(VENV)/.installed
	$(PY) sample_data/build_sample.py

clean:
	rm -rf .classlens .pytest_cache .ruff_cache
