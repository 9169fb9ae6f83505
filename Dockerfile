# OPEVA job controller: controller + API in one lean image.
#
#   docker build -t opeva:latest .                                   # from python:3.11-slim (Docker Hub)
#   docker build --network host --build-arg BASE_IMAGE=opeva-test/base:bookworm -t opeva:latest .
#                                                                    # from a local base (scripts/build-base-image.sh)
#
# BASE_IMAGE needs python3 (3.11+) with the venv module; both stages use it, so the venv's interpreter path is the
# same at build and run time. The builder installs the package and its runtime dependencies into /opt/opeva (a
# venv); the runtime stage copies only that venv: no compilers, no pip, no build or test dependencies.
#
# Runs as the non-root user `opeva` (uid OPEVA_UID, default 10001). To reach the Docker socket it must be in the
# socket's group: give its gid at run time (compose: `group_add: ["${DOCKER_GID}"]`, docker run: `--group-add GID`)
# or bake it in with --build-arg DOCKER_GID=$(stat -c %g /var/run/docker.sock). The data folder must be writable
# by OPEVA_UID (chown it, or run with `user:` set to its owner).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first (from pyproject.toml alone), so editing the sources does not reinstall them.
# Behind a TLS-intercepting proxy, put its CA bundle in the build context as `pip-ca.pem`: pip trusts it here, in
# the builder only (the pattern matches nothing when the file is absent).
COPY pyproject.toml pip-ca.pe[m] /src/
RUN if [ -f pip-ca.pem ]; then export PIP_CERT=/src/pip-ca.pem; fi \
 && python3 -m venv /opt/opeva \
 && /opt/opeva/bin/pip install -q --upgrade pip "setuptools>=68" \
 && /opt/opeva/bin/python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); \
print('\\n'.join(d['project']['dependencies']))" > /tmp/requirements.txt \
 && /opt/opeva/bin/pip install -q -r /tmp/requirements.txt
COPY README.md /src/
COPY controller /src/controller
COPY api /src/api
COPY cli /src/cli
# A non-editable install of the package itself, then compile bytecode once (the runtime user cannot write
# /opt/opeva) and drop the installers: the runtime needs neither pip nor setuptools.
RUN /opt/opeva/bin/pip install -q --no-deps --no-build-isolation /src \
 && /opt/opeva/bin/pip uninstall -q -y pip setuptools wheel \
 && find /opt/opeva -name '__pycache__' -prune -exec rm -rf {} + \
 && /opt/opeva/bin/python -m compileall -q -j 0 /opt/opeva/lib >/dev/null \
 && /opt/opeva/bin/opeva --help >/dev/null

FROM ${BASE_IMAGE}
ARG OPEVA_UID=10001
ARG DOCKER_GID=999
# The user, its own group, and membership of DOCKER_GID (created as group `docker` when the base has no such gid).
# git, for a data folder that follows a repository (OPEVA_GIT_REPO); skipped when the base already has it.
RUN if ! command -v git >/dev/null; then \
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends git \
      ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*; \
    fi
RUN groupadd --gid "${OPEVA_UID}" opeva \
 && if ! getent group "${DOCKER_GID}" >/dev/null; then groupadd --gid "${DOCKER_GID}" docker; fi \
 && useradd --uid "${OPEVA_UID}" --gid opeva --groups "${DOCKER_GID}" --create-home --shell /usr/sbin/nologin opeva \
 && mkdir -p /opt/opeva_shared_data && chown opeva:opeva /opt/opeva_shared_data
COPY --from=builder /opt/opeva /opt/opeva
ENV PATH=/opt/opeva/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPEVA_DATA=/opt/opeva_shared_data \
    OPEVA_PORT=8000
USER opeva
WORKDIR /home/opeva
EXPOSE 8000
# Healthy when the API answers and reports the controller alive and Docker reachable (status "ok").
# In a controller-only container (--no-api) override it (see docker-compose.split.yml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import json, os, sys, urllib.request as u; r = u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('OPEVA_PORT', '8000'), timeout=4); sys.exit(0 if json.load(r).get('status') == 'ok' else 1)"]
# Listening beyond loopback needs OPEVA_API_TOKEN (the API refuses to start without one); more flags go in CMD,
# e.g. `--no-api`, `--network opeva_network`, `--port 8001`.
ENTRYPOINT ["opeva", "run", "--host", "0.0.0.0"]
