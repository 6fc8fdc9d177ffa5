# make demo   set up .venv, run SGD / SAM / XSAM x 3 seeds on the embedded digits, print the table
# make test   set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TABLE ?= demo

.PHONY: install demo test lint bench clean-demo

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

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python scripts/bench_optim.py
	$(BIN)/python scripts/bench_train.py
