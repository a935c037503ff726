# Two entry points: `make demo` (install + end-to-end demo) and `make test` (install + checks + tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch and torchvision first, pinned to the builds this machine (and CI) carries locally.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[dev,onnx,lite0,all]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/geoposenet demo --out demo_run

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src

test: lint
	$(BIN)/pytest -n 2 --dist loadfile

clean:
	rm -rf $(VENV) demo_run .mypy_cache .ruff_cache .pytest_cache
