# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_PIN ?= torch==2.13.0

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# Torch first, pinned to the CPU build; a looser range pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet "$(TORCH_PIN)"
	$(BIN)/pip install --quiet -e ".[train,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python tools/demo.py

# Everything but the heavy tests runs first, one test at a time as before (timing-sensitive tests included); then the
# heavy ones (minutes of training each, results independent of machine load) run two at a time, one per core.
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not heavy" tests
	$(BIN)/python -m pytest -q -p no:cacheprovider -m heavy -n 2 --dist worksteal tests

lint: $(STAMP)
	$(BIN)/ruff check robodyna tests tools
	$(BIN)/mypy robodyna

clean:
	rm -rf $(VENV) runs
