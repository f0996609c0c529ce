# The README's commands. `make predict` sets up and runs the main job; `make test` sets up
# and runs the test suite (what CI runs through .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
KERAS := $(SHARED)/reference/mesonet-keras

.PHONY: setup predict test lint format paper clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	touch $@

# Main job: prediction with the bundled model (meso4.dfdc) on the authors' four test images
# and four FaceForensics++ videos from ../shared.
predict: setup
	$(BIN)/mesonet predict $(KERAS)/test_images --recursive
	$(BIN)/mesonet predict $(SHARED)/datasets/ffpp-c40-videos --recursive --vlimit 4

test: setup
	$(BIN)/ruff check src tests tools benchmarks
	$(BIN)/ruff format --check src tests tools benchmarks
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint format:
	$(BIN)/ruff check --fix src tests tools benchmarks
	$(BIN)/ruff format src tests tools benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
