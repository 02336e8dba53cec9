# learner-export: a slim image that runs the service as a non-root user.
#   docker build -t learner-export .
#   docker run --rm -p 8000:8000 -e DATABASE_URL=... -e EXPORT_JWT_SECRET=... learner-export

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY learner_export ./learner_export
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app exporter
WORKDIR /app
COPY --from=build /install /usr/local
ENV PYTHONUNBUFFERED=1
USER exporter
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
# One uvicorn worker per container: exports are I/O- and CPU-bound streams; scale with replicas.
CMD ["learner-export", "serve", "--host", "0.0.0.0", "--port", "8000"]
