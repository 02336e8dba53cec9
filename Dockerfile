# learner-export: a slim image that installs the project's wheel and runs the service as a
# non-root user.
#   docker build -t learner-export .
#   docker run --rm -p 8000:8000 -e DATABASE_URL=... -e EXPORT_JWT_SECRET=... learner-export
# PORT (default 8000) moves the listening port, the HEALTHCHECK following it.

# An exact tag, so that a rebuild gets the same Python (pin its digest in your registry too).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# A C compiler for the rendering extension (learner_export/formats/_render.c); only the wheel it
# builds reaches the service's image.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY learner_export ./learner_export
# The wheel, as `pip install learner-export` would get it: package data (the SQL) included.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --home-dir /app exporter
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 PORT=8000
USER exporter
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=2).status != 200)"]
# One uvicorn worker per container: exports are I/O- and CPU-bound streams; scale with replicas.
# `exec`: the service replaces the shell as PID 1, so `docker stop`'s SIGTERM reaches it.
CMD ["sh", "-c", "exec learner-export serve --host 0.0.0.0 --port \"$PORT\""]
