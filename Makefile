# The README's commands. `make predict` sets up and runs the main job; `make test` sets up
# and runs the fast tier of the test suite (the tests not marked slow: every module, about
# 2.5 minutes on two pytest-xdist workers); `make test-all` runs the whole suite (what CI runs through .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
FFPP := $(SHARED)/datasets/ffpp-c40-videos
# With ../shared beside the project, a balanced choice of its FaceForensics++ videos: two real,
# and two forged by different methods. Without it, none (the package's samples still run).
VIDEOS := $(wordlist 1,2,$(sort $(wildcard $(FFPP)/real/*.mp4))) \
	$(firstword $(sort $(wildcard $(FFPP)/fake/Deepfakes__*.mp4))) \
	$(firstword $(sort $(wildcard $(FFPP)/fake/Face2Face__*.mp4)))

.PHONY: setup setup-dev predict test test-all check-wheel graphs lint format clean

# Two installs into one .venv, each with its own stamp so that either order works:
# `setup` is what prediction needs (`pip install -e .`: predict, serve, scan, models);
# `setup-dev` adds the tests' and tools' needs (`.[dev,ray]`; dev brings the train extra).
setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	touch $@

# Main job: prediction with the bundled default model on the samples shipped in the package
# (the MesoNet authors' four test images: two forged, two real) and, where ../shared is
# present, four FaceForensics++ videos (two real, two forged).
predict: setup
	$(if $(strip $(VIDEOS)),,@echo "$(FFPP) not found: predicting on the packaged samples only")
	$(BIN)/mesonet predict --samples $(VIDEOS)

test: setup-dev
	$(BIN)/ruff check src tests tools benchmarks
	$(BIN)/ruff format --check src tests tools benchmarks
	$(BIN)/python -m pytest -q -rs -p no:cacheprovider -m "not slow" -n 2

test-all: setup-dev
	$(BIN)/ruff check src tests tools benchmarks
	$(BIN)/ruff format --check src tests tools benchmarks
	$(BIN)/python -m pytest -q -rs -p no:cacheprovider

# Build the wheel, install it into a fresh venv (no source tree on the path) and run
# `mesonet predict --samples` and `mesonet serve` with one request from it.
check-wheel: setup-dev
	$(BIN)/python tools/check_wheel.py

# The OpenVINO graphs shipped in the package (src/mesonet/models/graphs/), rebuilt from the
# bundled weights: what an install without PyTorch runs. After bundling or changing a model,
# or upgrading OpenVINO or NNCF; tests/test_graphs.py checks they are up to date.
graphs: setup-dev
	$(BIN)/python tools/build_graphs.py

lint format: setup-dev
	$(BIN)/ruff check --fix src tests tools benchmarks
	$(BIN)/ruff format src tests tools benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
