# syntax=docker/dockerfile:1
# Build: wheels in a builder stage; the final image has no compilers and runs as non-root.
# BASE_IMAGE may be pinned by digest: --build-arg BASE_IMAGE=python:3.12-slim@sha256:...
# Dependencies are installed at the versions of requirements.lock (reproducible images).
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE} AS builder
WORKDIR /build
COPY pyproject.toml README.md LICENSE requirements.lock ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels --constraint requirements.lock .

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTH_DIR=/tmp/health \
    CONTROL_FILE=/tmp/control/state
RUN groupadd --system --gid 10001 agent \
    && useradd --system --uid 10001 --gid agent --home-dir /app --no-create-home agent
WORKDIR /app
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["pulling-agent", "health", "--max-age", "30"]
ENTRYPOINT ["pulling-agent"]
CMD ["run"]
