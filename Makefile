# Two commands (see README): `make demo` runs the main job, `make test` runs the tests.
# Both create and reuse a virtualenv with the pinned dependencies of requirements.lock.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.privlab-installed

.PHONY: demo test lint bench paper clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)  ## train natural + 3 robust models on digits, attack them, write runs/demo/report.html
	$(BIN)/privlab demo

test: $(STAMP)  ## the full test suite (what CI runs)
	$(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff (style, imports, complexity) and mypy, as CI runs them
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

bench: $(STAMP)  ## speed and attack-strength benchmarks (not run by CI)
	$(BIN)/python benchmarks/bench_pgd_training_cost.py
	$(BIN)/python benchmarks/bench_ia_scoring.py

paper: $(STAMP)  ## re-run every paper-claim config into results/paper/
	benchmarks/run_paper_configs.sh

clean:
	rm -rf $(VENV) runs .pytest_cache
