# Two entry points for a fresh machine (see README.md): `make demo` and `make test`.
# Both create a virtual environment with Python >= 3.12 (the newest scverse stack) and install the package into it.
# `make test-min` checks the oldest supported versions on Python 3.11 (.ci/min-constraints.txt).

PYTHON ?= $(shell for p in python3.12 python3.13 $$HOME/.pyenv/versions/3.12*/bin/python3 $$HOME/.pyenv/versions/3.13*/bin/python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { echo $$p; break; }; done)
PYTHON_MIN ?= python3.11
VENV ?= .venv
VENV_MIN ?= .venv-min

.PHONY: demo test test-slow test-min lint docs

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python >= 3.12 not found: install it or run 'make PYTHON=/path/to/python3.12 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test,dev]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/python -m scvi_networkvi demo

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest

test-slow: $(VENV)/.installed
	$(VENV)/bin/python -m pip install --quiet -e ".[doc]"  # the docs-build tests are slow tests too; without Sphinx they skip
	$(VENV)/bin/python -m pytest -m slow

test-min:
	$(PYTHON_MIN) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_MIN)/bin/python -m pip install --quiet -c .ci/min-constraints.txt -e ".[test]"
	$(VENV_MIN)/bin/python -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

docs: $(VENV)/.installed
	$(VENV)/bin/python -m pip install --quiet -e ".[doc]"
	rm -rf docs/_build docs/generated
	$(VENV)/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html
