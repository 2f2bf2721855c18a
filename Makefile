# Set-up and everyday commands. Only python3 is needed on a fresh machine: the first target
# that needs the environment creates .venv and installs artdiff into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Re-install whenever the dependency files change.
STAMP := $(VENV)/.installed
ARTWORKS ?= ../shared/data/artworks
DEMO_OUT ?= outputs/demo

.PHONY: install demo test test-slow bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing artdiff into $(VENV) (first time: a few minutes)"
	@# torch first, pinned: on a CPU machine this takes the local CPU build, not the CUDA one.
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	@# The paintings are beside a checkout of the project, not a user's clone: pass them only when present.
	$(PY) -m artdiff demo --out $(DEMO_OUT) $(if $(wildcard $(ARTWORKS)),--artworks $(ARTWORKS))

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	RUN_SLOW=1 $(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

clean:
	rm -rf $(VENV) outputs .pytest_cache
