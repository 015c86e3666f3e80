# Task Engine server image. Not built in CI (no Docker engine there); see docs/DEPLOYMENT.md.
# The same install steps as `make run`: a virtualenv, then `pip install .`.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /venv
COPY pyproject.toml README.md ./
COPY src ./src
RUN /venv/bin/pip install --no-cache-dir '.[redis,postgres]'

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 taskengine
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TASKENGINE_DATA_DIR=/data \
    TASKENGINE_BROKER_URL=sqlite:////data/taskengine.db
RUN mkdir /data && chown taskengine /data
USER taskengine
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
# Listening beyond loopback needs TASKENGINE_API_TOKENS (admin:<32+ random characters>).
CMD ["taskengine", "serve", "--host", "0.0.0.0", "--port", "8080"]
