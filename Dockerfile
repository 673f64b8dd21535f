# syntax=docker/dockerfile:1
# The Sluice gateway image. Two stages: `build` makes a virtualenv from hash-locked wheels
# (requirements.lock) and Sluice's own wheel; `runtime` copies only that virtualenv onto the same
# slim base, so no compiler, pip cache, build backend or source tree reaches the final image.
#
#   docker build -t sluice:0.1.0 .
#   docker run -p 8080:8080 -e SLUICE_AUDIT_HMAC_KEY="$(openssl rand -hex 32)" -v sluice-data:/var/lib/sluice sluice:0.1.0
#
# Pin the base by digest for a reproducible build (docs/deployment.md, "Trusting a release"):
#   docker build --build-arg BASE=python:3.12-slim-bookworm@sha256:<digest> .
ARG BASE=python:3.12-slim-bookworm

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements.lock deploy/build-requirements.lock ./
# Wheels only (--only-binary): nothing is compiled, so the build needs no toolchain, and every
# file installed is one whose sha256 is in the lock (--require-hashes).
RUN python3 -m venv /opt/sluice \
 && /opt/sluice/bin/pip install --require-hashes --only-binary=:all: --no-deps -r requirements.lock \
 && python3 -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --only-binary=:all: --no-deps -r build-requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY sluice ./sluice
# Sluice's own wheel, built by `python -m build` with the locked setuptools (no unpinned build
# isolation), installed without resolving anything more: the lock is the whole dependency set.
# The .pyc files pip wrote stay: the root filesystem is read-only at run time, so without them
# every start would compile every module again in memory.
RUN /opt/build/bin/python -m build --wheel --no-isolation --outdir /dist . \
 && /opt/sluice/bin/pip install --no-deps /dist/sluice-*.whl \
 && /opt/sluice/bin/pip uninstall --yes pip

FROM ${BASE} AS runtime
LABEL org.opencontainers.image.title="sluice" \
      org.opencontainers.image.description="Sluice: the AI gateway that governs every coding agent" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, unprivileged uid/gid (10001), the same one the Helm chart's securityContext names.
RUN groupadd --system --gid 10001 sluice \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sluice --no-create-home \
      --shell /usr/sbin/nologin sluice \
 && mkdir -p /etc/sluice /var/lib/sluice \
 && chown 10001:10001 /var/lib/sluice \
 && chmod 0750 /var/lib/sluice
COPY --from=build /opt/sluice /opt/sluice
COPY deploy/sluice.yaml /etc/sluice/sluice.yaml
# Defaults for every `env.NAME` the bundled config reads; SLUICE_AUDIT_HMAC_KEY has none on purpose.
ENV PATH=/opt/sluice/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SLUICE_HOST=0.0.0.0 \
    SLUICE_PORT=8080 \
    SLUICE_STORE_URL=sqlite+aiosqlite:////var/lib/sluice/sluice.db \
    SLUICE_COUNTERS=local \
    SLUICE_REDIS_URL=redis://redis:6379/0
# The working directory is the data volume: the request-log spill, the spend journal, the audit
# checkpoints and the SQLite store (when used) all live there, so the root filesystem can be read-only.
WORKDIR /var/lib/sluice
VOLUME ["/etc/sluice", "/var/lib/sluice"]
USER 10001:10001
EXPOSE 8080
# Readiness, not liveness: Docker has no separate probe, and a gateway that cannot reach its
# store cannot serve. python3 is already in the image (no curl to add); the answer is cached for a
# second by the gateway, so this probe costs nothing.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('SLUICE_PORT', '8080'), timeout=2)"]
# SIGTERM starts the graceful drain of `sluice serve`; give the container a stop timeout at least
# as long as its grace period (`docker stop -t`, compose `stop_grace_period`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["sluice"]
CMD ["serve", "--config", "/etc/sluice/sluice.yaml"]
