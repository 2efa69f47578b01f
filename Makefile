# Fresh-machine entry points. `make demo` trains the built-in recipe; `make test` runs the test suite.
# The demo's network is small: one compute thread per process (two OpenMP threads collapse when the other core is
# busy), and the minibatch OT solve runs in its own background thread.
# Both create .venv and install everything first. CPU-only machines get the pinned CPU build of torch
# (an unpinned torch would pull a multi-GB CUDA build); machines with nvidia-smi get torch from pyproject.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CPU := torch==2.13.0


.PHONY: setup demo test test-fast bench lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	command -v nvidia-smi >/dev/null 2>&1 || $(BIN)/python -m pip install --quiet $(TORCH_CPU)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		--num_cpu_threads_per_process 1 training/train_fm.py --overwrite_output_dir

test: export OMP_NUM_THREADS ?= 1
test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: export OMP_NUM_THREADS ?= 1
bench: setup
	$(BIN)/python benchmarks/bench_fm.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check hfgen pipelines training tests benchmarks

clean:
	rm -rf $(VENV) out build dist *.egg-info
