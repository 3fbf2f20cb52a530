# Inference service for NVIDIA hosts (compose.gpu.yaml): onnxruntime-gpu on the CUDA + cuDNN runtime image.
# onnxruntime-gpu 1.31 is built for CUDA 13 and cuDNN 9, hence the base below; no TensorFlow.
# Build from the repository root: docker build -f docker/inference-gpu.Dockerfile .
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# --- build: Python 3.11 (a relocatable python-build-standalone, installed by uv) and the service's virtualenv -----
FROM ${CUDA_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_NO_CACHE=1
RUN uv python install 3.11 && uv venv --python 3.11 /opt/venv
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
COPY shared shared
COPY services/inference services/inference
RUN VIRTUAL_ENV=/opt/venv uv pip install --constraint requirements/constraints.txt ./shared './services/inference[gpu]' \
 && VIRTUAL_ENV=/opt/venv uv pip check

# --- runtime: the CUDA runtime base, the interpreter, the virtualenv, an unprivileged user ------------------------
FROM ${CUDA_IMAGE}
RUN groupadd --system --gid 10001 ecg && useradd --system --uid 10001 --gid ecg --create-home --home-dir /home/ecg ecg
COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv
COPY --chown=ecg:ecg models /app/models
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 ECG_MODELS_DIR=/app/models
WORKDIR /app
USER ecg
EXPOSE 8001
CMD ["python", "-m", "ecg_inference", "--host", "0.0.0.0", "--port", "8001"]
