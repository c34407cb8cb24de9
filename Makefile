# Quick start on a fresh machine:  make demo   then   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install sysdeps browser demo test lint bench clean

# torch goes in first and pinned: resolving a bare `torch` from other packages' requirements
# would pull the multi-GB CUDA build. Everything else resolves against constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

sysdeps:
	bash scripts/sysdeps.sh

# Debian's chromium, for the leaderboard site's browser tests (Playwright drives it directly).
browser:
	bash scripts/install_browser.sh

demo: install sysdeps
	$(BIN)/mmeval demo --output results/demo --site site/demo

test: install sysdeps browser
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check mmeval tests benchmarks

bench: install
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) results/demo site/demo .pytest_cache
