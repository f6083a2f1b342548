# syntax=docker/dockerfile:1
# The relevance gateway image: `relevance serve` (REST :8000, gRPC :50051) with the shipped model repository baked
# in, the `serving` extra only (ONNX Runtime, Redis, FAISS, FastAPI, gRPC, Triton client; no torch, no
# transformers), a non-root user and a stdlib healthcheck. BuildKit is required (the default since Docker 23).
#
#   docker build -t relevance:0.1.0 .                                # CPU, the default (last) target
#   docker build --target runtime-gpu -t relevance:0.1.0-gpu .       # onnxruntime-gpu + faiss-gpu on CUDA
#   docker run -p 8000:8000 -p 50051:50051 relevance:0.1.0
#   docker run -v "$PWD/other_repository:/models:ro" -e RELEVANCE_MODEL_REPOSITORY=/models relevance:0.1.0
#
# Every gateway setting is an environment variable RELEVANCE_* (service/settings.py); REDIS_URL selects Redis.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# ---- builder: the project wheel and a virtual environment with the serving extra ------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
# the gateway's packages only: the shared torch-free core and the service (`relevance` then offers `serve` alone;
# the offline packages mkd, export and loadtest stay out of the image)
COPY relevance ./relevance
COPY relevance_core ./relevance_core
COPY service ./service
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install "relevance[serving] @ file://$(ls /wheels/relevance-*.whl)"

# ---- builder-gpu: the same install on a relocatable CPython (the CUDA base has no Python 3.11), with ONNX
# Runtime and FAISS swapped for their GPU builds at the versions pinned in the `gpu` extra (TensorRT, also in
# that extra, is for building plans offline and stays out of the image)
FROM builder AS builder-gpu
ARG UV_VERSION=0.13.8
ENV UV_PYTHON_INSTALL_DIR=/opt/python UV_PYTHON_PREFERENCE=only-managed
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "uv==${UV_VERSION}" \
    && uv python install 3.11 \
    && uv venv --python 3.11 /opt/venv-gpu \
    && uv pip install --no-cache --python /opt/venv-gpu/bin/python \
        "relevance[serving] @ file://$(ls /wheels/relevance-*.whl)" \
    && uv pip uninstall --python /opt/venv-gpu/bin/python onnxruntime faiss-cpu \
    && python -c "import tomllib; extra = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['gpu']; print('\n'.join(r for r in extra if r.startswith(('onnxruntime-gpu', 'faiss-gpu'))))" \
        > /tmp/gpu-requirements.txt \
    && uv pip install --no-cache --python /opt/venv-gpu/bin/python -r /tmp/gpu-requirements.txt

# ---- runtime-gpu: `docker build --target runtime-gpu`; run with `--gpus all` (NVIDIA container toolkit) -------
FROM ${CUDA_IMAGE} AS runtime-gpu
RUN groupadd --system --gid 10001 relevance \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin relevance \
    && mkdir -p /app/data/index && chown -R 10001:10001 /app/data
COPY --from=builder-gpu /opt/python /opt/python
COPY --from=builder-gpu /opt/venv-gpu /opt/venv
COPY model_repository /app/model_repository
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    RELEVANCE_HOST=0.0.0.0 RELEVANCE_MODEL_REPOSITORY=/app/model_repository RELEVANCE_STORE_DIR=/app/data/index
WORKDIR /app
USER 10001:10001
EXPOSE 8000 50051
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('RELEVANCE_PORT', '8000') + '/healthz', timeout=4)"]
ENTRYPOINT ["relevance", "serve"]

# ---- runtime (default): slim Python, the venv, the model repository ---------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="relevance" \
      org.opencontainers.image.description="Explainable, LLM-distilled relevance gateway (ColBERT student, ONNX Runtime)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 relevance \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin relevance \
    && mkdir -p /app/data/index && chown -R 10001:10001 /app/data
COPY --from=builder /opt/venv /opt/venv
# the shipped repository, read-only for the service user; mount another one and point RELEVANCE_MODEL_REPOSITORY at it
COPY model_repository /app/model_repository
# RELEVANCE_STORE_DIR: the local item store (an index written by `relevance index`, or a volume); Redis replaces it
# when REDIS_URL is set
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    RELEVANCE_HOST=0.0.0.0 RELEVANCE_MODEL_REPOSITORY=/app/model_repository RELEVANCE_STORE_DIR=/app/data/index
WORKDIR /app
USER 10001:10001
EXPOSE 8000 50051
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('RELEVANCE_PORT', '8000') + '/healthz', timeout=4)"]
ENTRYPOINT ["relevance", "serve"]
