# The two commands: `make demo` and `make test` (each creates .venv and installs first).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Until the online-loop demo lands: the HumanEval canonical solutions through the sandbox.
demo: $(STAMP)
	$(BIN)/codeloop tasks canonical humaneval --out runs/demo/canonical.jsonl
	$(BIN)/codeloop eval --tasks humaneval --samples runs/demo/canonical.jsonl --out runs/demo/results.jsonl

test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/sandbox_throughput.py
	$(BIN)/python benchmarks/crosscheck_humaneval.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
