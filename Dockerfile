# Stub until the container issue: a slim, non-root image with the core package and CLI only (no torch).
# The gateway (`relevance serve`), the baked-in model repository and the healthcheck arrive with later issues.
FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY relevance ./relevance
COPY mkd ./mkd
COPY service ./service
COPY export ./export
COPY loadtest ./loadtest
COPY data ./data
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 app
USER app
ENTRYPOINT ["relevance"]
CMD ["--help"]
