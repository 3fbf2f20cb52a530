# Ingestion worker: Celery on the `ingestion` queue, blobs from Azure Storage into Postgres.
# Build from the repository root: docker build -f docker/ingestion.Dockerfile .  (compose.yaml does this)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtual environment holding only this service and ecg_shared, pinned by the constraints file --------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONSTRAINT=/src/requirements/constraints.txt
RUN python -m venv /opt/venv
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
COPY shared shared
COPY services/ingestion services/ingestion
# pip's download cache stays in BuildKit's cache (not in the image), so a rebuild after a code change is quick.
RUN --mount=type=cache,target=/root/.cache/pip /opt/venv/bin/pip install ./shared './services/ingestion' && /opt/venv/bin/pip check

# --- runtime: the slim base, the virtual environment, an unprivileged user ----------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 ecg && useradd --system --uid 10001 --gid ecg --create-home --home-dir /home/ecg ecg
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER ecg
CMD ["celery", "-A", "ecg_ingestion.worker", "worker", "-Q", "ingestion", "--concurrency", "2", "--loglevel", "INFO"]
