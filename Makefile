# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= examples/demo.yaml
E2E_NODE := tests/e2e/node_modules/.installed
OIDC_NODE := tests/integration/oidc_provider/node_modules/.installed

.PHONY: run test lint unit e2e-deps observability-deps bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	SLUICE_SHOW_SECRETS=1 $(VENV)/bin/sluice serve --config $(CONFIG)

# Real agent CLIs for the end-to-end tests (versions pinned in tests/e2e/package.json).
# Codex's native binary comes in an optional, per-platform dependency: check each CLI starts.
$(E2E_NODE): tests/e2e/package.json
	cd tests/e2e && npm install --no-audit --no-fund --loglevel=error
	cd tests/e2e && home=$$(mktemp -d) && for cli in claude codex gemini; do \
	  HOME=$$home ./node_modules/.bin/$$cli --version >/dev/null 2>&1 || { echo "$$cli does not start"; exit 1; }; \
	done; rm -rf $$home
	touch $@

# A real OpenID provider (oidc-provider, pinned in its package.json) for the SSO tests.
$(OIDC_NODE): tests/integration/oidc_provider/package.json
	cd tests/integration/oidc_provider && npm install --no-audit --no-fund --loglevel=error
	touch $@

e2e-deps: $(E2E_NODE) $(OIDC_NODE)

# A real Prometheus and promtool for tests/observability/test_prometheus.py (Debian's package; CI
# runs as root with apt-get). The tests skip, saying why, only where they cannot be installed.
observability-deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
	  || echo "prometheus could not be installed: its tests will skip"; }

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check sluice tests $(wildcard bench)
	$(VENV)/bin/ruff format --check sluice tests
	$(VENV)/bin/mypy sluice
	$(VENV)/bin/lint-imports

test: lint observability-deps $(E2E_NODE) $(OIDC_NODE)
	$(VENV)/bin/pytest -q

bench: $(VENV)/.dev
	$(PY) -m bench.proxy_overhead

clean:
	rm -rf $(VENV) tests/e2e/node_modules .pytest_cache .mypy_cache .ruff_cache
