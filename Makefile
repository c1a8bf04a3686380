# minicnn — the README names these targets. Every target sets up .venv first if it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3
# the extras `make setup` installs: dev (TensorFlow, the tests) and jax (Keras on JAX, in CI)
EXTRAS ?= dev,jax
# the Keras, TensorFlow, JAX and PyTorch versions the parity tolerances were set against
CONSTRAINTS := reference/constraints.txt
# PyTorch's CPU-only wheel index, for setup-torch on a machine without the wheel at hand
TORCH_INDEX ?=

.PHONY: setup setup-torch train test test-fast lint format parity parity-all bench bench-train \
	figures clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]' -c $(CONSTRAINTS)
	touch $@

setup-torch: setup     ## add PyTorch (CPU build, pinned) for parity against Keras on PyTorch
	$(PY) -m pip install --quiet -e '.[torch]' -c $(CONSTRAINTS) \
		$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))

train: setup           ## the seed tutorial's run: 6 epochs, batch 128, test accuracy
	$(PY) -m minicnn train

test: setup            ## the whole suite (what CI runs)
	$(PY) -m pytest -q

test-fast: setup       ## without the Keras parity tests
	$(PY) -m pytest -q -m "not keras"

lint: setup
	$(VENV)/bin/ruff check minicnn reference benchmarks tests

format: setup
	$(VENV)/bin/ruff format minicnn reference benchmarks tests

parity: setup          ## full layer-by-layer comparison with Keras (on TensorFlow)
	$(PY) -m minicnn parity

parity-all: setup-torch  ## the same against Keras on TensorFlow, JAX and PyTorch, one column each
	$(PY) -m minicnn parity --keras-backend all

bench: setup           ## conv kernels side by side (PyTorch, JAX rows with the anchors extra)
	$(PY) -m benchmarks.conv --json bench-results/conv.json --plot bench-results/conv.png

bench-train: setup     ## epoch, predict, RSS: minicnn vs Keras (TF, JAX), PyTorch (eager, compile)
	$(PY) -m benchmarks.train_epoch --json bench-results/train_epoch.json

figures: setup         ## the seed tutorial's figures
	$(PY) -m minicnn figures --out figures

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
