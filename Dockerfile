# syntax=docker/dockerfile:1
# mlcp: one image for the web, the gate workers, the rollout controller and the model server
# (docker/entrypoint.sh picks the process; k8s/manifests pass it as `args`).
#
#   docker build -t ghcr.io/example/mlcp:0.1.0 .
#   docker build -t ghcr.io/example/mlcp-cuda:0.1.0 \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130 \
#       --build-arg ONNXRUNTIME=onnxruntime-gpu .
#
# The default image carries the CPU build of torch (the CUDA wheels weigh gigabytes). The CUDA variant
# takes torch's CUDA wheels, which bring their own CUDA libraries, and onnxruntime-gpu for the validation
# gate; the node's NVIDIA container runtime provides the driver. Nothing runs as root.
# onnxruntime-gpu is pinned on its own: it is not published at every onnxruntime version (1.32.0 has no
# GPU build), and its CUDA provider links one CUDA major (1.31: CUDA 13), which torch's cu130 wheels bring.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: a virtual environment in /opt/mlcp
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG ONNXRUNTIME=onnxruntime
ARG ONNXRUNTIME_GPU_VERSION=1.31.1
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/sh", "-eu", "-c"]
RUN python -m venv /opt/mlcp
ENV PATH=/opt/mlcp/bin:$PATH
# torch first, from its own index: resolving it from PyPI alongside mlcp would pull the CUDA build.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
WORKDIR /src
# The context is what .dockerignore leaves (no tests, devtools, local data); pyproject.toml decides which
# packages install, so the `dev` extra and devtools/ never reach the image.
COPY . .
RUN pip install . \
    && if [ "${ONNXRUNTIME}" != onnxruntime ]; then \
         pip uninstall --yes onnxruntime; \
         pip install "${ONNXRUNTIME}==${ONNXRUNTIME_GPU_VERSION}"; \
       fi \
    && python -m compileall -q /opt/mlcp/lib

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
SHELL ["/bin/sh", "-eu", "-c"]
# tini: PID 1 that forwards signals and reaps; bubblewrap: the gate sandbox (workers/sandbox).
# Debian's security updates would break exact version pins; the base image's tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini bubblewrap \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 mlcp \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin mlcp \
    && install -d -o 10001 -g 10001 /var/lib/mlcp
COPY --from=build /opt/mlcp /opt/mlcp
WORKDIR /app
COPY manage.py ./
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/mlcp-entrypoint
ENV PATH=/opt/mlcp/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=controlplane.settings \
    MLCP_APP_DIR=/app \
    MLCP_DATA_DIR=/var/lib/mlcp \
    MLCP_STATIC_ROOT=/app/static \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# Static files for whitenoise, collected into the image: the root filesystem is read-only in the pods.
RUN python manage.py collectstatic --noinput --verbosity=0
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["tini", "--", "mlcp-entrypoint"]
CMD ["web"]
