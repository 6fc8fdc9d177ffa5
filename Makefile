# make demo   set up .venv, run SGD / SAM / XSAM x 3 seeds on the embedded digits, print the table
# make test   set up .venv and run the test suite
# make test-fast   the suite without the `slow` end-to-end runs: the inner loop while editing
# make wheelhouse   (networked machine) the wheel folder for make gpu-check on an offline GPU node
# make gpu-check    (GPU node, its own Python with torch) tests and measures what a GPU shows: docs/GPU_CHECK.md
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TABLE ?= demo

WHEELHOUSE ?= wheelhouse
GPU_CHECK_OUT ?= gpu-check-report
GPU_CHECK_BUDGET ?= 480

.PHONY: install demo test test-fast lint bench clean-demo wheelhouse gpu-check

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: install
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python scripts/sweep.py $(TABLE) -- progress=false
	$(BIN)/python scripts/aggregate.py $(TABLE)
	$(BIN)/python scripts/plot_curves.py $(TABLE)
	cat results/$(TABLE).md

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m 'not slow'

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python scripts/bench_optim.py
	$(BIN)/python scripts/bench_train.py

wheelhouse:
	PYTHON=$(PYTHON) bash scripts/wheelhouse.sh $(WHEELHOUSE)

gpu-check:  # no venv: the node's Python, with what is missing from $(WHEELHOUSE) when it exists
	PYTHON=$(PYTHON) bash scripts/gpu_check.sh $(GPU_CHECK_OUT) --budget $(GPU_CHECK_BUDGET) \
		$(if $(wildcard $(WHEELHOUSE)),--wheelhouse $(WHEELHOUSE))
