# syntax=docker/dockerfile:1
# The agent image: a virtualenv with the wheels `make docker-build` builds on the host
# (dist/wheels: the project and requirements.lock's pins, for the image's Python), installed
# with --no-index - so the build needs no network (air-gapped builds work) - and every
# dependency checked against the lock's hashes (--require-hashes). dist/wheels/extra holds
# what EXTRA_WHEELS adds for development images (nx-27017 for docker-compose): unhashed,
# never in a production image. No compiler, no pip cache; runs as uid 10001.
#   make docker-build                                  # on python:3.12-slim
#   make docker-build BASE_IMAGE=pulling-agent-base:bookworm IMAGE_PYTHON=3.11
# BASE_IMAGE may be pinned by digest: BASE_IMAGE=python:3.12-slim@sha256:...
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    HEALTH_DIR=/tmp/health \
    CONTROL_FILE=/tmp/control/state
COPY dist/wheels /wheels
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --no-cache-dir --find-links /wheels \
        --require-hashes -r /wheels/requirements.lock \
    && /opt/venv/bin/pip install --no-index --no-cache-dir --no-deps /wheels/pulling_agent-*.whl \
    && if ls /wheels/extra/*.whl >/dev/null 2>&1; then \
        /opt/venv/bin/pip install --no-index --no-cache-dir --find-links /wheels/extra \
            /wheels/extra/*.whl; fi \
    && /opt/venv/bin/pip uninstall --yes pip \
    && rm -rf /wheels
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["pulling-agent", "health", "--max-age", "30"]
ENTRYPOINT ["pulling-agent"]
CMD ["run"]
