# One-command entry points of the README contract. Each creates .venv and installs
# what it needs on first use (and again whenever pyproject.toml changes). The dev extra includes
# Pythae and diffusers, so that the adapters' tests run; torch stays below 2.14 (pyproject.toml).
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed
# Debian's chromium drives the HTML report's browser test (tests/test_report_browser.py).
BROWSER       := /usr/bin/chromium
BROWSER_STAMP := $(VENV)/.chromium
# Pythae, for bench/bench_training.py only: its own environment, since it pins its own dependencies.
BENCH_VENV    := .bench-venv

.PHONY: demo test bench bench-venv clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; run 'make PYTHON=python3 ...'"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/collapsekit demo --out demo-output

# Installs chromium once when it is missing and we can (apt-get, root); never fails the test run:
# without it the browser test skips, or fails with the reason when CI is set.
$(BROWSER_STAMP): | $(STAMP)
	@if [ ! -x $(BROWSER) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "make: installing chromium for the HTML report test (apt-get)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
			>$(VENV)/chromium-install.log 2>&1 \
			|| echo "make: could not install chromium (see $(VENV)/chromium-install.log); the browser test will not run"; \
	fi
	@if [ -x $(BROWSER) ]; then touch $@; fi

test: $(STAMP) $(BROWSER_STAMP)
	$(VENV)/bin/python -m pytest -n 2 -q

bench: $(STAMP)
	$(VENV)/bin/python bench/bench_theory.py --write docs/benchmarks.md
	$(VENV)/bin/python bench/bench_training.py $(if $(wildcard $(BENCH_VENV)/bin/python),--pythae-python $(BENCH_VENV)/bin/python) --write docs/benchmarks.md
	$(VENV)/bin/python bench/bench_monitor.py --write docs/benchmarks.md
	$(VENV)/bin/python bench/bench_diagnostics.py --write docs/benchmarks.md
	$(VENV)/bin/python bench/bench_batched.py --write docs/benchmarks.md
	$(VENV)/bin/python bench/bench_batched.py --compare fast --epochs 2 --repeats 5 --write docs/benchmarks.md
	$(VENV)/bin/python bench/bench_checkpoint.py --write docs/benchmarks.md

# `make bench-venv` once, then `make bench` includes Pythae in the training benchmark. torch is
# installed first and pinned: a requirement that admits a newer torch downloads GBs of CUDA wheels.
bench-venv: $(BENCH_VENV)/.installed

$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet "torch>=2.4,<2.14"
	$(BENCH_VENV)/bin/python -m pip install --quiet pythae "torch>=2.4,<2.14"
	@touch $@

clean:
	rm -rf $(VENV) $(BENCH_VENV) demo-output .pytest_cache
